import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/core/backoff';
import type { Effect } from '../src/core/session';
import { Session } from '../src/core/session';
import { Connection, type SocketLike } from '../src/net/connection';
import { T0, ack, frame, message, welcome } from './frames';

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: string[] = [];
  closedWith: [number | undefined, string | undefined] | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = [code, reason];
    this.readyState = 2;
  }

  // --- the server side of the fake ---
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  deliver(text: string): void {
    this.onmessage?.({ data: text });
  }

  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }
}

/** A manual clock with timers, so reconnect schedules are exact. */
class Clock {
  now = T0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;

  set = (fn: () => void, ms: number): unknown => {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  };

  clear = (id: unknown): void => {
    this.timers.delete(id as number);
  };

  pending(): number[] {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }

  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}

function setup(random = 0.5) {
  const clock = new Clock();
  const sockets: FakeSocket[] = [];
  const effects: Effect[] = [];
  let changes = 0;
  const session = new Session('t');
  const conn = new Connection({
    session,
    pageHref: 'https://example.org/chat/',
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    backoff: new Backoff({ baseMs: 1000, capMs: 8000, floorMs: 0, random: () => random }),
    now: () => clock.now,
    setTimer: clock.set,
    clearTimer: clock.clear,
    connectTimeoutMs: 10_000,
    onEffects: (e) => effects.push(...e),
    onChange: () => {
      changes += 1;
    },
  });
  const last = (): FakeSocket => {
    const s = sockets[sockets.length - 1];
    if (!s) throw new Error('no socket');
    return s;
  };
  const accept = (over: Record<string, unknown> = {}): FakeSocket => {
    const s = last();
    s.open();
    s.deliver(welcome(over));
    return s;
  };
  return { clock, sockets, effects, session, conn, last, accept, changes: () => changes };
}

describe('Connection', () => {
  it('connects to ws/events next to the page with batch=1 and is open after the welcome', () => {
    const t = setup();
    t.conn.connect();
    expect(t.conn.state).toBe('connecting');
    // A fresh connection asks for a screenful of history (`last`); a resume does not.
    expect(t.last().url).toBe('wss://example.org/chat/ws/events?last=50&batch=1');
    t.accept();
    expect(t.conn.state).toBe('open');
    expect(t.changes()).toBeGreaterThan(0);
  });

  it('sends publishes as JSON frames with an id, and refuses when not open', () => {
    const t = setup();
    expect(t.conn.send('too early')).toEqual({ ok: false, reason: 'Not connected.' });
    t.conn.connect();
    const s = t.accept();
    const result = t.conn.send('hi');
    expect(result.ok).toBe(true);
    expect(s.sent).toHaveLength(1);
    const sent = JSON.parse(s.sent[0] ?? '') as { message: string; id: string };
    expect(sent.message).toBe('hi');
    s.deliver(frame(ack(11, sent.id)));
    expect(t.effects.at(-1)).toMatchObject({ type: 'updated', entry: { status: 'delivered', seq: 11 } });
  });

  it('reconnects with backoff after a loss and resumes with since and epoch', () => {
    const t = setup(0.5);
    t.conn.connect();
    const first = t.accept({ seq: 10, epoch: 'ep1' });
    first.deliver(frame(message(11, 'x')));
    first.drop(1001, 'shutting down');
    expect(t.conn.state).toBe('waiting');
    expect(t.conn.reconnectAt).toBe(t.clock.now + 500); // 0.5 * 1000
    expect(t.effects.some((e) => e.type === 'notice' && e.notice.code === 'close-1001')).toBe(true);
    t.clock.advance(499);
    expect(t.sockets).toHaveLength(1);
    t.clock.advance(1);
    expect(t.sockets).toHaveLength(2);
    const url = new URL(t.last().url);
    expect(url.searchParams.get('since')).toBe('11');
    expect(url.searchParams.get('epoch')).toBe('ep1');
    expect(url.searchParams.get('batch')).toBe('1');
    expect(url.searchParams.get('last')).toBe('500'); // bounds the replay after a restart
  });

  it('backs off exponentially while the server stays down, and starts over after a welcome', () => {
    const t = setup(0.5);
    t.conn.connect();
    t.accept();
    t.last().drop();
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      delays.push((t.conn.reconnectAt ?? 0) - t.clock.now);
      t.clock.advance(delays[i] ?? 0);
      t.last().drop(); // refused: never opened
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 4000]);
    expect(t.conn.attempt).toBe(6);
    t.clock.advance((t.conn.reconnectAt ?? 0) - t.clock.now);
    t.accept();
    expect(t.conn.attempt).toBe(0);
  });

  it('reconnects at once when asked to, without waiting for the countdown', () => {
    const t = setup();
    t.conn.connect();
    t.accept();
    t.last().drop();
    expect(t.conn.state).toBe('waiting');
    t.conn.reconnectNow();
    expect(t.conn.state).toBe('connecting');
    expect(t.sockets).toHaveLength(2);
    expect(t.clock.pending()).toEqual([10_000]); // only the connect timeout remains
  });

  it('stays disconnected after a manual disconnect until connect()', () => {
    const t = setup();
    t.conn.connect();
    const s = t.accept();
    t.conn.disconnect();
    expect(s.closedWith).toEqual([1000, 'user disconnected']);
    expect(t.conn.state).toBe('disconnected');
    expect(t.clock.pending()).toEqual([]);
    s.drop(1000); // the late close event changes nothing
    t.clock.advance(60_000);
    expect(t.sockets).toHaveLength(1);
    expect(t.effects.filter((e) => e.type === 'notice')).toEqual([]);
    t.conn.connect();
    expect(t.sockets).toHaveLength(2);
    expect(new URL(t.last().url).searchParams.get('since')).toBe('10');
  });

  it('cancels a scheduled reconnect on manual disconnect', () => {
    const t = setup();
    t.conn.connect();
    t.accept();
    t.last().drop();
    t.conn.disconnect();
    t.clock.advance(60_000);
    expect(t.sockets).toHaveLength(1);
    expect(t.conn.state).toBe('disconnected');
  });

  it('gives up on a socket that never delivers its welcome', () => {
    const t = setup();
    t.conn.connect();
    const stuck = t.last();
    stuck.open();
    t.clock.advance(10_000);
    expect(stuck.closedWith?.[0]).toBe(4000);
    expect(t.conn.state).toBe('waiting');
  });

  it('ignores binary frames', () => {
    const t = setup();
    t.conn.connect();
    const s = t.accept();
    s.onmessage?.({ data: new ArrayBuffer(4) });
    expect(t.session.metrics.frames).toBe(1);
  });

  it('treats a socket constructor that throws as a failed attempt', () => {
    const clock = new Clock();
    const conn = new Connection({
      session: new Session('t'),
      pageHref: 'http://h/',
      createSocket: () => {
        throw new SyntaxError('bad url');
      },
      now: () => clock.now,
      setTimer: clock.set,
      clearTimer: clock.clear,
    });
    conn.connect();
    expect(conn.state).toBe('waiting');
  });
});

describe('Connection: pacing', () => {
  const texts = (s: FakeSocket): string[] => s.sent.map((f) => (JSON.parse(f) as { message: string }).message);

  it('sends a burst as the server rate allows, waking itself for the rest', () => {
    const t = setup();
    t.conn.connect();
    // 10/s in bursts of 3: two at once (one token in reserve), then one per 1/9 s.
    const s = t.accept({ limits: { publish_rate: 10, publish_burst: 3 } });
    for (const text of ['a', 'b', 'c', 'd', 'e']) expect(t.conn.send(text).ok).toBe(true);
    expect(texts(s)).toEqual(['a', 'b']);
    expect(t.clock.pending()).toContain(112);
    t.clock.advance(112);
    expect(texts(s)).toEqual(['a', 'b', 'c']);
    t.clock.advance(112);
    expect(texts(s)).toEqual(['a', 'b', 'c', 'd']);
    t.clock.advance(112);
    expect(texts(s)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(t.session.progress()).toBeNull();
  });

  it('keeps what is queued through a reconnect and sends it after the welcome', () => {
    const t = setup(0);
    t.conn.connect();
    const first = t.accept({ limits: { publish_rate: 1, publish_burst: 1 } });
    t.conn.send('first');
    t.conn.send('second');
    expect(texts(first)).toEqual(['first']);
    first.drop(1006);
    t.clock.advance(2000); // the pacer's wake-up went with the socket; the reconnect fires
    expect(first.sent).toHaveLength(1);
    const second = t.accept({ limits: { publish_rate: 1, publish_burst: 1 } });
    expect(texts(second)).toEqual(['second']);
  });
});
