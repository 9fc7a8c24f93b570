/**
 * The client's state across connections: what the lists show, which own messages are pending,
 * the resume point, the metrics. Pure and synchronous: every input is a call with the current time,
 * every output is a list of `Effect`s for the view. No DOM, no WebSocket, no timers.
 */
import { CappedList } from './capped';
import { TokenBucket } from './pacer';
import { PendingOutbox } from './pending';
import {
  type Ack,
  type BroadcastMessage,
  type Limits,
  type Recovered,
  type ServerError,
  type Welcome,
  decodeFrame,
  describeClose,
  describeError,
  encodePublish,
  utf8Length,
} from './protocol';
import { ResumeTracker } from './resume';
import { RateMeter } from './throughput';
import type { ResumePoint } from './url';

/** queued (paced, not sent yet) → pending (sent, no ack yet) → delivered, or failed. */
export type MessageStatus = 'queued' | 'pending' | 'delivered' | 'failed';

/** How many broadcasts a fresh connection asks for (`last`): about a screenful. */
export const JOIN_HISTORY = 50;
/** How often a publish the server refused for its rate is queued again before it counts as failed. */
const MAX_REQUEUES = 5;
/**
 * How long sending pauses after the server refused a publish for its rate (ms): its bucket is
 * emptier than ours thought. Refusals cost strikes that leak at one per second, so a pause of a
 * second per refusal can never add up to a 1008 close.
 */
export const REFUSAL_PAUSE_MS = 1_000;

/** One chat line: ours (right) or another client's (left, and in the broadcast list). */
export interface MessageEntry {
  readonly kind: 'message';
  /** Unique and stable for the page's lifetime: the view's key. */
  readonly key: string;
  readonly own: boolean;
  readonly text: string;
  /** The publisher's client id (ours at the time we sent it, for own messages). */
  readonly sender: string;
  seq: number | null;
  /** Server time the broadcast was accepted (ms since the Unix epoch); null while pending. */
  serverTime: number | null;
  /** When we sent it (own: queued, then sent) or it arrived (others), ms since the Unix epoch. */
  localTime: number;
  /** Others: arrival minus server time. Own: ack arrival minus send time. Null when unknown. */
  latencyMs: number | null;
  /** Delivered by a resume rather than live. */
  replayed: boolean;
  /** Sent before this tab joined: part of the history a fresh connection asked for (`last`). */
  readonly earlier: boolean;
  status: MessageStatus;
  /** Why a failed message failed, in words. */
  failure: string | null;
}

/** A line in the lists that is not a message: a resume result, a gap, a restart. */
export interface MarkerEntry {
  readonly kind: 'marker';
  readonly key: string;
  readonly level: 'info' | 'warning';
  readonly text: string;
  readonly time: number;
}

export type Entry = MessageEntry | MarkerEntry;

/** Something the user should read: an error frame, a meaningful close. */
export interface Notice {
  /** `rate_limited`, `close-1009`, …: notices with the same code replace each other. */
  readonly code: string;
  readonly severity: 'info' | 'warning' | 'error';
  readonly title: string;
  readonly detail: string;
  readonly time: number;
}

export type Effect =
  | { readonly type: 'added'; readonly entry: Entry }
  | { readonly type: 'updated'; readonly entry: MessageEntry }
  /** The entry leaves the lists (a failed message that was queued again as a new one). */
  | { readonly type: 'removed'; readonly entry: MessageEntry }
  | { readonly type: 'notice'; readonly notice: Notice };

export type PublishResult =
  | { readonly ok: true; readonly entry: MessageEntry; readonly effects: Effect[] }
  | { readonly ok: false; readonly reason: string };

/** What `nextSend` says: a frame to send now, how long to wait for the next, or nothing to do. */
export type SendStep =
  | { readonly type: 'send'; readonly frame: string; readonly effects: Effect[] }
  | { readonly type: 'wait'; readonly ms: number }
  | { readonly type: 'idle' };

/** A run of queued sends: "sending `sent` of `total`". */
export interface SendProgress {
  readonly sent: number;
  readonly total: number;
  readonly queued: number;
}

/** The numbers the metrics panel shows. */
export interface Metrics {
  /** Server events received (a batch counts each event it holds). */
  events: number;
  /** Text frames received (a batch is one frame). */
  frames: number;
  /** Batch frames received. */
  batches: number;
  /** Messages we published. */
  sent: number;
  /** Other clients' messages received (live and replayed). */
  received: number;
  /** Own messages the server confirmed. */
  delivered: number;
  /** Own messages refused or lost. */
  failed: number;
  /** Other clients' messages received during resumes. */
  replayed: number;
  /** Messages sent before this tab joined, shown on a fresh connection (`last`). */
  earlier: number;
  /** Frames dropped as already seen. */
  duplicates: number;
  /** Clients connected (from the welcome, then `GET health`). */
  connections: number | null;
  /** Latency of the newest live message from another client (ms). */
  lastLatencyMs: number | null;
  /** Mean latency of the last LATENCY_WINDOW live messages from other clients (ms). */
  avgLatencyMs: number | null;
  /** Connections made (welcomes received). */
  connects: number;
}

const LATENCY_WINDOW = 100;

/** How long a text may be (in bytes of its JSON frame) when the server did not say. */
export function frameBytes(text: string, id: string): number {
  return utf8Length(encodePublish(text, id));
}

export class Session {
  readonly resume = new ResumeTracker();
  readonly metrics: Metrics = {
    events: 0,
    frames: 0,
    batches: 0,
    sent: 0,
    received: 0,
    delivered: 0,
    failed: 0,
    replayed: 0,
    earlier: 0,
    duplicates: 0,
    connections: null,
    lastLatencyMs: null,
    avgLatencyMs: null,
    connects: 0,
  };
  /** The current connection's client id; null before its welcome. */
  clientId: string | null = null;
  /** The server's name and version from the latest welcome. */
  server: string | null = null;
  /** The limits from the latest welcome. */
  limits: Limits | null = null;
  /** Whether the server agreed to send batches on this connection. */
  batch = false;
  /** Counts connections; the current one's number. */
  connection = 0;
  /** True between the welcome and the close: publishing is possible. */
  ready = false;
  /** True between a resuming (or history-asking) welcome and its `recovered` frame. */
  recovering = false;
  /** The `last` the current connection asked for (null: none, it resumes or is not open). */
  askedLast: number | null = null;
  /** Broadcasts seen per second (live messages and acks), for the sparkline. */
  readonly seen = new RateMeter();
  /** When the current connection's welcome arrived (ms), null when not connected. */
  onlineSince: number | null = null;
  /** Time spent connected before the current connection (ms). */
  onlineBefore = 0;

  /** Every client id this page has had in the current epoch: replays of our messages use them. */
  private readonly ownIds = new Set<string>();
  private readonly pending: PendingOutbox<MessageEntry>;
  private readonly latencies = new CappedList<number>(LATENCY_WINDOW);
  private latencySum = 0;
  private keys = 0;
  /** The current connection's welcome already showed the "server restarted" marker. */
  private restartMarked = false;
  /** While a fresh connection receives its `last` history: the welcome's seq, else null. */
  private joinSeq: number | null = null;
  /** Own messages waiting for the pacer, oldest first. */
  private readonly queue: MessageEntry[] = [];
  private readonly requeues = new Map<string, number>();
  private bucket: TokenBucket | null = null;
  /** No sends before this time (ms): set after a refusal. */
  private holdUntil = 0;
  private run = { sent: 0, total: 0 };
  /** Failed own messages the user has not resent or dismissed, oldest first. */
  private failedList: MessageEntry[] = [];

  /**
   * `joinHistory` is the `last` a fresh connection asks for (null: none).
   */
  constructor(idPrefix?: string, readonly joinHistory: number | null = JOIN_HISTORY) {
    this.pending = new PendingOutbox<MessageEntry>(idPrefix);
  }

  /** Own messages still waiting for an ack. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Own messages waiting for the pacer. */
  get queuedCount(): number {
    return this.queue.length;
  }

  /** The current run of queued sends, or null when nothing is queued. */
  progress(): SendProgress | null {
    if (this.queue.length === 0) return null;
    return { sent: this.run.sent, total: this.run.total, queued: this.queue.length };
  }

  /** Failed own messages not yet resent or dismissed, oldest first. */
  failures(): readonly MessageEntry[] {
    return this.failedList;
  }

  /** Time connected, all connections together (ms). */
  onlineTotal(now: number): number {
    return this.onlineBefore + (this.onlineSince === null ? 0 : now - this.onlineSince);
  }

  /** Called when a new socket is about to open; returns where to resume from (null: nothing). */
  opening(): ResumePoint | null {
    this.connection += 1;
    this.ready = false;
    this.recovering = false;
    this.restartMarked = false;
    this.joinSeq = null;
    const point = this.resume.point();
    this.askedLast = point === null ? this.joinHistory : null;
    this.resume.begin(point);
    return point;
  }

  /** Applies one text frame from the server. */
  receive(text: string, now: number): Effect[] {
    const frame = decodeFrame(text);
    this.metrics.frames += 1;
    if (frame.batch) this.metrics.batches += 1;
    const effects: Effect[] = [];
    for (const event of frame.events) {
      this.metrics.events += 1;
      switch (event.type) {
        case 'welcome':
          this.onWelcome(event, now, effects);
          break;
        case 'message':
          this.onMessage(event, now, effects);
          break;
        case 'ack':
          this.onAck(event, now, effects);
          break;
        case 'recovered':
          this.onRecovered(event, now, effects);
          break;
        case 'error':
          this.onError(event, now, effects);
          break;
        case 'unknown':
        case 'invalid':
          break; // ignored, as the protocol asks; counted in `events`
      }
    }
    return effects;
  }

  /**
   * Checks that `text` can be published now. Returns null when it can, or the reason it cannot.
   */
  check(text: string): string | null {
    if (!this.ready) return 'Not connected.';
    const max = this.limits?.maxMessageBytes;
    if (max != null) {
      const size = frameBytes(text, 'p000000-000000');
      if (size > max) {
        return `Too large: ${size.toLocaleString('en')} bytes; this server accepts at most ${max.toLocaleString('en')} per message.`;
      }
    }
    return null;
  }

  /**
   * Queues an own message for sending; `nextSend` hands out its frame when the pacer allows.
   * Refused (nothing queued) when not connected or too large.
   */
  enqueue(text: string, now: number): PublishResult {
    const problem = this.check(text);
    if (problem !== null) return { ok: false, reason: problem };
    const entry: MessageEntry = {
      kind: 'message',
      key: this.key(),
      own: true,
      text,
      sender: this.clientId ?? '',
      seq: null,
      serverTime: null,
      localTime: now,
      latencyMs: null,
      replayed: false,
      earlier: false,
      status: 'queued',
      failure: null,
    };
    this.push(entry);
    return { ok: true, entry, effects: [{ type: 'added', entry }] };
  }

  /**
   * The next queued message to send now (its frame; the caller sends it on the current socket),
   * or how long to wait before asking again, or `idle` when nothing can be sent (empty queue,
   * or not connected).
   */
  nextSend(now: number): SendStep {
    const entry = this.queue[0];
    if (entry === undefined || !this.ready) return { type: 'idle' };
    if (now < this.holdUntil) return { type: 'wait', ms: Math.ceil(this.holdUntil - now) };
    if (this.bucket !== null && !this.bucket.take(now)) {
      return { type: 'wait', ms: Math.max(1, this.bucket.waitMs(now)) };
    }
    this.queue.shift();
    this.run.sent += 1;
    const pending = this.pending.add(entry.text, this.connection, entry);
    entry.status = 'pending';
    entry.localTime = now;
    this.metrics.sent += 1;
    return { type: 'send', frame: encodePublish(entry.text, pending.id), effects: [{ type: 'updated', entry }] };
  }

  /**
   * Queues every failed message again, as new entries at the end of the chat (the failed ones
   * leave it). Returns the effects; nothing happens when not connected.
   */
  resendFailed(now: number): Effect[] {
    if (!this.ready) return [];
    const effects: Effect[] = [];
    const failed = this.failedList;
    this.failedList = [];
    for (const old of failed) {
      effects.push({ type: 'removed', entry: old });
      const result = this.enqueue(old.text, now);
      if (result.ok) effects.push(...result.effects);
      else this.failedList.push(old); // too large for this server: stays failed
    }
    return effects;
  }

  /** Forgets the failed messages (they stay in the chat, marked). */
  dismissFailures(): void {
    this.failedList = [];
  }

  /** Forgets one failed message (the user took its text back into the message box). */
  forgetFailure(key: string): void {
    this.failedList = this.failedList.filter((e) => e.key !== key);
  }

  private push(entry: MessageEntry): void {
    // A run lasts until everything in it was answered: a burst whose first messages went out at
    // once is still one run ("sending 12 of 100").
    if (this.queue.length === 0 && this.pending.size === 0) this.run = { sent: 0, total: 0 };
    this.queue.push(entry);
    this.run.total += 1;
  }

  /**
   * Applies the end of the current connection.
   *
   * `manual` is true when the user disconnected; `opened` is true when the socket had opened.
   */
  closed(code: number, reason: string, now: number, manual: boolean, opened: boolean): Effect[] {
    const effects: Effect[] = [];
    if (this.onlineSince !== null) {
      this.onlineBefore += now - this.onlineSince;
      this.onlineSince = null;
    }
    const wasReady = this.ready;
    this.ready = false;
    this.recovering = false;
    if (code === 1009) {
      const culprit = this.pending.largest(this.connection);
      if (culprit) this.fail(culprit.value, 'Too large: the server refused it (1009).', effects);
    }
    if (!manual && (opened || wasReady || code !== 1006)) {
      const info = describeClose(code, reason);
      effects.push({
        type: 'notice',
        notice: { code: `close-${code}`, severity: info.severity, title: info.title, detail: info.detail, time: now },
      });
    }
    return effects;
  }

  /** Updates the connection count (from `GET health`). */
  setConnections(n: number): void {
    this.metrics.connections = n;
  }

  private key(): string {
    this.keys += 1;
    return `e${this.keys}`;
  }


  private marker(level: MarkerEntry['level'], text: string, now: number, effects: Effect[]): void {
    effects.push({ type: 'added', entry: { kind: 'marker', key: this.key(), level, text, time: now } });
  }

  private fail(entry: MessageEntry, why: string, effects: Effect[]): void {
    entry.status = 'failed';
    entry.failure = why;
    this.metrics.failed += 1;
    this.failedList.push(entry);
    effects.push({ type: 'updated', entry });
  }

  private onWelcome(w: Welcome, now: number, effects: Effect[]): void {
    const kind = this.resume.welcome(w);
    if (kind === 'epoch-changed') this.ownIds.clear();
    this.clientId = w.clientId;
    this.ownIds.add(w.clientId);
    this.server = w.server;
    this.limits = w.limits;
    // The server's bucket is per connection and starts full: so does ours.
    this.bucket = TokenBucket.forLimits(w.limits.publishRate, w.limits.publishBurst);
    this.holdUntil = 0;
    this.batch = w.batch;
    if (w.connections !== null) this.metrics.connections = w.connections;
    this.metrics.connects += 1;
    this.ready = true;
    this.onlineSince = now;
    const joining = kind === 'fresh' && this.askedLast !== null && this.askedLast > 0;
    this.joinSeq = joining ? w.seq : null;
    this.recovering = kind !== 'fresh' || joining;
    this.restartMarked = kind === 'epoch-changed';
    if (kind === 'epoch-changed') {
      this.marker(
        'warning',
        'The server restarted and its history was lost: messages sent before the restart that this tab missed cannot be recovered. Numbering (#seq) starts again below; what was sent since the restart follows.',
        now,
        effects,
      );
    }
  }

  private onMessage(m: BroadcastMessage, now: number, effects: Effect[]): void {
    if (!this.resume.observe(m.seq)) {
      this.metrics.duplicates += 1;
      return;
    }
    const earlier = this.joinSeq !== null && m.seq <= this.joinSeq;
    const replayed = this.recovering && !earlier;
    if (!this.recovering) this.seen.add(now);
    if (this.ownIds.has(m.sender)) {
      // One of ours from an earlier connection, replayed by a resume (it carries no id).
      const match = this.pending.replayed(m.message, this.connection);
      if (match) {
        const entry = match.value;
        entry.status = 'delivered';
        entry.seq = m.seq;
        entry.serverTime = m.time;
        entry.replayed = true;
        this.metrics.delivered += 1;
        effects.push({ type: 'updated', entry });
        return;
      }
      effects.push({
        type: 'added',
        entry: {
          kind: 'message',
          key: this.key(),
          own: true,
          text: m.message,
          sender: m.sender,
          seq: m.seq,
          serverTime: m.time,
          localTime: now,
          latencyMs: null,
          replayed,
          earlier,
          status: 'delivered',
          failure: null,
        },
      });
      return;
    }
    if (earlier) this.metrics.earlier += 1;
    else this.metrics.received += 1;
    if (replayed) this.metrics.replayed += 1;
    let latencyMs: number | null = null;
    if (m.time !== null) {
      latencyMs = Math.max(0, now - m.time);
      if (!replayed && !earlier) this.recordLatency(latencyMs);
    }
    effects.push({
      type: 'added',
      entry: {
        kind: 'message',
        key: this.key(),
        own: false,
        text: m.message,
        sender: m.sender,
        seq: m.seq,
        serverTime: m.time,
        localTime: now,
        latencyMs: replayed || earlier ? null : latencyMs,
        replayed,
        earlier,
        status: 'delivered',
        failure: null,
      },
    });
  }

  /**
   * Puts a message the server refused for its rate back at the front of the queue, empties the
   * bucket and pauses sending for REFUSAL_PAUSE_MS. False when it was retried enough.
   */
  private requeue(entry: MessageEntry, now: number, effects: Effect[]): boolean {
    const tries = (this.requeues.get(entry.key) ?? 0) + 1;
    if (tries > MAX_REQUEUES) {
      this.requeues.delete(entry.key);
      return false;
    }
    this.requeues.set(entry.key, tries);
    this.bucket?.drain(now);
    this.holdUntil = now + REFUSAL_PAUSE_MS;
    entry.status = 'queued';
    this.metrics.sent -= 1;
    this.run.sent = Math.max(0, this.run.sent - 1);
    // Back in its original place: refusals arrive oldest first, after others already requeued.
    const order = keyOrder(entry.key);
    const at = this.queue.findIndex((e) => keyOrder(e.key) > order);
    this.queue.splice(at === -1 ? this.queue.length : at, 0, entry);
    effects.push({ type: 'updated', entry });
    return true;
  }

  private recordLatency(ms: number): void {
    this.metrics.lastLatencyMs = ms;
    this.latencySum += ms;
    for (const old of this.latencies.push(ms)) this.latencySum -= old;
    this.metrics.avgLatencyMs = this.latencySum / this.latencies.length;
  }

  private onAck(a: Ack, now: number, effects: Effect[]): void {
    if (!this.resume.observe(a.seq)) {
      this.metrics.duplicates += 1;
      return;
    }
    this.seen.add(now);
    const match = a.id !== null ? this.pending.ack(a.id) : this.pending.oldest(this.connection);
    if (!match) return;
    const entry = match.value;
    this.requeues.delete(entry.key);
    entry.status = 'delivered';
    entry.failure = null;
    entry.seq = a.seq;
    entry.serverTime = a.time;
    entry.latencyMs = Math.max(0, now - entry.localTime);
    this.metrics.delivered += 1;
    effects.push({ type: 'updated', entry });
  }

  private onRecovered(r: Recovered, now: number, effects: Effect[]): void {
    const alreadyMarked = this.restartMarked;
    this.restartMarked = false;
    this.resume.recovered(r);
    this.recovering = false;
    if (this.joinSeq !== null) {
      // The end of the history a fresh connection asked for: a divider under it.
      this.joinSeq = null;
      const n = this.metrics.earlier;
      if (n > 0) {
        this.marker('info', `${n} earlier message${n === 1 ? '' : 's'} above, sent before you joined.`, now, effects);
      }
      return;
    }
    const leftovers = this.pending.takeOlderThan(this.connection);
    if (r.complete) {
      for (const p of leftovers) {
        this.fail(p.value, 'Not delivered: the connection dropped before the server got it.', effects);
      }
      if (r.replayed > 0) {
        const n = r.replayed;
        this.marker('info', `Reconnected: caught up on ${n} missed message${n === 1 ? '' : 's'}.`, now, effects);
      }
      return;
    }
    for (const p of leftovers) {
      this.fail(p.value, 'Unconfirmed: the connection dropped and the server could not say whether it went out.', effects);
    }
    if (r.reason === 'history_expired') {
      const from = (r.since ?? 0) + 1;
      const to = (r.firstSeq ?? from) - 1;
      const lost = to - from + 1;
      const range = lost > 1 ? `#${from}–#${to}` : `#${from}`;
      this.marker(
        'warning',
        `Gap: ${lost > 0 ? lost : 'some'} message${lost === 1 ? '' : 's'} (${range}) expired from the server's history and could not be recovered.`,
        now,
        effects,
      );
    } else if (r.reason === 'epoch_mismatch') {
      if (!alreadyMarked) {
        this.marker(
          'warning',
          'The server could not resume this tab (its history changed): messages sent while it was disconnected may be missing.',
          now,
          effects,
        );
      }
      if (r.replayed > 0) {
        const n = r.replayed;
        this.marker('info', `Caught up on ${n} message${n === 1 ? '' : 's'} sent since the restart.`, now, effects);
      }
    } else {
      this.marker('warning', `Some messages could not be recovered (${r.reason ?? 'unknown reason'}).`, now, effects);
    }
  }

  private onError(e: ServerError, now: number, effects: Effect[]): void {
    const text = describeError(e.code, e.detail, this.limits);
    // The error names the publish it refuses when it had an id; otherwise it is the oldest one.
    const victim = (e.id !== null ? this.pending.ack(e.id) : undefined) ?? this.pending.oldest(this.connection);
    if (victim && e.code === 'rate_limited' && this.requeue(victim.value, now, effects)) return;
    if (victim) this.fail(victim.value, text, effects);
    effects.push({
      type: 'notice',
      notice: {
        code: e.code,
        severity: 'error',
        title: e.code === 'rate_limited' ? 'Slow down' : 'Message refused',
        detail: text,
        time: now,
      },
    });
  }
}

/** The creation order of an entry from its key (`e17` → 17). */
function keyOrder(key: string): number {
  return Number(key.slice(1));
}
