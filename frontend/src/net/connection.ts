/**
 * The WebSocket adapter: owns one socket at a time and the reconnect timer, and feeds the pure
 * `Session` with what happens. Everything it touches from the outside world (the socket factory,
 * the clock, timers) is injected, so Vitest drives it with fakes.
 */
import { Backoff } from '../core/backoff';
import type { Effect, PublishResult, Session } from '../core/session';
import { socketUrl } from '../core/url';

/** The part of the browser's WebSocket this module uses. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type ConnectionState =
  /** The user disconnected (or has not connected yet): no socket, no timer. */
  | 'disconnected'
  /** A socket is opening, or open and waiting for its welcome. */
  | 'connecting'
  /** Welcome received: messages flow. */
  | 'open'
  /** The connection was lost; a reconnect is scheduled at `reconnectAt`. */
  | 'waiting';

export interface ConnectionDeps {
  readonly session: Session;
  /** The page's URL: the socket URL is derived from it. */
  readonly pageHref: string;
  readonly createSocket: (url: string) => SocketLike;
  readonly backoff?: Backoff;
  readonly now?: () => number;
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
  /** How long a socket may take to deliver its welcome before it is abandoned (ms). */
  readonly connectTimeoutMs?: number;
  /** Receives the view effects of every event, in order. */
  readonly onEffects?: (effects: Effect[]) => void;
  /** Called after every state change (status, countdown, metrics). */
  readonly onChange?: () => void;
}

/**
 * A resume asks for at most this many broadcasts of a new epoch (the server replays what a
 * restarted server kept; the lists show 500 at most anyway).
 */
export const RESUME_REPLAY_LIMIT = 500;
const OPEN = 1;
const CONNECTING = 0;

export class Connection {
  state: ConnectionState = 'disconnected';
  /** When the scheduled reconnect fires (ms), while `state` is `waiting`. */
  reconnectAt: number | null = null;
  /** The URL of the newest socket (for display and tests). */
  url: string | null = null;
  /** The last close, for the status line. */
  lastClose: { code: number; reason: string; opened: boolean } | null = null;

  readonly backoff: Backoff;
  private readonly deps: ConnectionDeps;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private socket: SocketLike | null = null;
  private opened = false;
  private timer: unknown = null;
  private connectTimer: unknown = null;
  /** Wakes the pacer when the next queued message may go. */
  private pumpTimer: unknown = null;

  constructor(deps: ConnectionDeps) {
    this.deps = deps;
    this.backoff = deps.backoff ?? new Backoff();
    this.now = deps.now ?? (() => Date.now());
    this.setTimer = deps.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = deps.clearTimer ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  }

  /** Reconnect attempts since the last welcome. */
  get attempt(): number {
    return this.backoff.attempt;
  }

  /** Connects now (the user asked, or the page just loaded). No-op when already connecting/open. */
  connect(): void {
    if (this.state === 'connecting' || this.state === 'open') return;
    this.cancelTimer();
    this.open();
  }

  /** Skips the rest of the backoff delay. No-op unless a reconnect is scheduled. */
  reconnectNow(): void {
    if (this.state !== 'waiting') return;
    this.cancelTimer();
    this.open();
  }

  /** The user disconnects: closes the socket and stops reconnecting until `connect()`. */
  disconnect(): void {
    this.cancelTimer();
    this.backoff.reset();
    const socket = this.socket;
    if (socket) {
      this.detach(socket);
      if (socket.readyState === OPEN || socket.readyState === CONNECTING) {
        socket.close(1000, 'user disconnected');
      }
      this.emit(this.deps.session.closed(1000, 'user disconnected', this.now(), true, this.opened));
    }
    this.state = 'disconnected';
    this.reconnectAt = null;
    this.changed();
  }

  /**
   * Queues `text` for publishing and sends what the pacer allows now (see `Session.enqueue` for
   * what can refuse it). The rest goes out as the server's rate allows.
   */
  send(text: string): PublishResult {
    const socket = this.socket;
    if (this.state !== 'open' || socket === null || socket.readyState !== OPEN) {
      return { ok: false, reason: 'Not connected.' };
    }
    const result = this.deps.session.enqueue(text, this.now());
    if (result.ok) {
      this.emit(result.effects);
      this.pump();
      this.changed();
    }
    return result;
  }

  /** Queues every failed message again (the "Resend all" button). */
  resendFailed(): void {
    if (this.state !== 'open') return;
    this.emit(this.deps.session.resendFailed(this.now()));
    this.pump();
    this.changed();
  }

  /** Sends queued messages while the pacer allows, then sleeps until the next may go. */
  private pump(): void {
    if (this.pumpTimer !== null) return; // a wake-up is already scheduled
    const socket = this.socket;
    if (this.state !== 'open' || socket === null || socket.readyState !== OPEN) return;
    const session = this.deps.session;
    for (;;) {
      const step = session.nextSend(this.now());
      if (step.type === 'send') {
        socket.send(step.frame);
        this.emit(step.effects);
        continue;
      }
      if (step.type === 'wait') {
        this.pumpTimer = this.setTimer(() => {
          this.pumpTimer = null;
          this.pump();
          this.changed();
        }, step.ms);
      }
      return;
    }
  }

  private open(): void {
    const session = this.deps.session;
    const point = session.opening();
    const url = socketUrl(this.deps.pageHref, point, point === null ? session.askedLast : RESUME_REPLAY_LIMIT);
    this.url = url;
    this.state = 'connecting';
    this.reconnectAt = null;
    this.opened = false;
    let socket: SocketLike;
    try {
      socket = this.deps.createSocket(url);
    } catch {
      // A malformed URL or a refused scheme: treat it like a failed attempt.
      this.socket = null;
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.opened = true;
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return; // the protocol is text-only
      const wasReady = session.ready;
      const effects = session.receive(ev.data, this.now());
      if (!wasReady && session.ready) {
        this.state = 'open';
        this.backoff.reset();
        this.cancelConnectTimer();
      }
      this.emit(effects);
      if (session.ready) this.pump();
      this.changed();
    };
    socket.onclose = (ev) => {
      this.detach(socket);
      this.lastClose = { code: ev.code, reason: ev.reason, opened: this.opened };
      this.emit(session.closed(ev.code, ev.reason, this.now(), false, this.opened));
      this.scheduleReconnect();
    };
    socket.onerror = () => {
      // Always followed by a close event, which does the work.
    };
    const timeout = this.deps.connectTimeoutMs ?? 15_000;
    this.connectTimer = this.setTimer(() => {
      this.connectTimer = null;
      if (this.socket === socket && this.state === 'connecting') {
        this.detach(socket);
        socket.close(4000, 'connect timeout');
        this.lastClose = { code: 1006, reason: 'connect timeout', opened: this.opened };
        this.emit(session.closed(1006, 'connect timeout', this.now(), false, this.opened));
        this.scheduleReconnect();
      }
    }, timeout);
    this.changed();
  }

  private scheduleReconnect(): void {
    this.cancelTimer();
    const delay = this.backoff.next();
    this.state = 'waiting';
    this.reconnectAt = this.now() + delay;
    this.timer = this.setTimer(() => {
      this.timer = null;
      if (this.state === 'waiting') this.open();
    }, delay);
    this.changed();
  }

  private detach(socket: SocketLike): void {
    if (this.pumpTimer !== null) {
      this.clearTimer(this.pumpTimer);
      this.pumpTimer = null;
    }
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
    if (this.socket === socket) this.socket = null;
    this.cancelConnectTimer();
  }

  private cancelTimer(): void {
    if (this.timer !== null) {
      this.clearTimer(this.timer);
      this.timer = null;
    }
    this.cancelConnectTimer();
  }

  private cancelConnectTimer(): void {
    if (this.connectTimer !== null) {
      this.clearTimer(this.connectTimer);
      this.connectTimer = null;
    }
  }

  private emit(effects: Effect[]): void {
    if (effects.length > 0) this.deps.onEffects?.(effects);
  }

  private changed(): void {
    this.deps.onChange?.();
  }
}
