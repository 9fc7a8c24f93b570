import { describe, expect, it } from 'vitest';
import type { Effect, MessageEntry } from '../src/core/session';
import { Session } from '../src/core/session';
import { LIMITS, T0, ack, batch, frame, message, welcome } from './frames';

const ME = 'me0000000001';

/** Limits without a publish rate: sends are not paced (the pacing tests set one). */
const UNPACED = { ...LIMITS, publish_rate: null };

function connected(over: Record<string, unknown> = {}, joinHistory: number | null = null): Session {
  const s = new Session('t', joinHistory);
  s.opening();
  s.receive(welcome({ limits: UNPACED, ...over }), T0);
  return s;
}

function added(effects: Effect[]): MessageEntry[] {
  return effects.flatMap((e) => (e.type === 'added' && e.entry.kind === 'message' ? [e.entry] : []));
}

function markers(effects: Effect[]): string[] {
  return effects.flatMap((e) => (e.type === 'added' && e.entry.kind === 'marker' ? [e.entry.text] : []));
}

function publish(s: Session, text: string, now = T0): { id: string; entry: MessageEntry } {
  const r = s.enqueue(text, now);
  if (!r.ok) throw new Error(r.reason);
  const step = s.nextSend(now);
  if (step.type !== 'send') throw new Error(`not sent: ${step.type}`);
  return { id: (JSON.parse(step.frame) as { id: string }).id, entry: r.entry };
}

describe('Session: connecting', () => {
  it('is ready after the welcome and remembers what it said', () => {
    const s = new Session('t');
    expect(s.opening()).toBeNull();
    expect(s.ready).toBe(false);
    expect(s.receive(welcome(), T0)).toEqual([]);
    expect(s.ready).toBe(true);
    expect(s.clientId).toBe(ME);
    expect(s.metrics.connections).toBe(2);
    expect(s.limits?.maxMessageBytes).toBe(1000);
    expect(s.batch).toBe(true);
    expect(s.resume.point()).toEqual({ since: 10, epoch: 'ep1' });
  });

  it('counts time online across connections', () => {
    const s = connected();
    s.closed(1006, '', T0 + 5000, false, true);
    expect(s.onlineTotal(T0 + 9000)).toBe(5000);
    s.opening();
    s.receive(welcome(), T0 + 10_000);
    expect(s.onlineTotal(T0 + 12_000)).toBe(7000);
  });
});

describe('Session: messages from others', () => {
  it('adds them in order from a batch, with latency from the server timestamp', () => {
    const s = connected();
    const effects = s.receive(batch(message(11, 'one'), message(12, 'two')), T0 + 25);
    const entries = added(effects);
    expect(entries.map((e) => [e.text, e.seq, e.own, e.latencyMs])).toEqual([
      ['one', 11, false, 25],
      ['two', 12, false, 25],
    ]);
    expect(s.metrics).toMatchObject({ received: 2, events: 3, frames: 2, batches: 1, lastLatencyMs: 25, avgLatencyMs: 25 });
  });

  it('drops a message seen twice', () => {
    const s = connected();
    s.receive(frame(message(11, 'x')), T0);
    expect(s.receive(frame(message(11, 'x')), T0)).toEqual([]);
    expect(s.metrics.duplicates).toBe(1);
    expect(s.metrics.received).toBe(1);
  });

  it('averages latency over recent messages and never reports a negative one', () => {
    const s = connected();
    s.receive(frame(message(11, 'a')), T0 + 10);
    s.receive(frame(message(12, 'b')), T0 + 30);
    expect(s.metrics.avgLatencyMs).toBe(20);
    s.receive(frame(message(13, 'c')), T0 - 50); // client clock behind the server's
    expect(s.metrics.lastLatencyMs).toBe(0);
  });
});

describe('Session: own messages', () => {
  it('goes pending → delivered when the ack with its id arrives', () => {
    const s = connected();
    const { id, entry } = publish(s, 'hello');
    expect(entry).toMatchObject({ own: true, status: 'pending', seq: null, text: 'hello', sender: ME });
    const effects = s.receive(frame(ack(11, id)), T0 + 7);
    expect(effects).toEqual([{ type: 'updated', entry }]);
    expect(entry).toMatchObject({ status: 'delivered', seq: 11, serverTime: T0, latencyMs: 7 });
    expect(s.metrics).toMatchObject({ sent: 1, delivered: 1, received: 0 });
    expect(s.resume.point()).toEqual({ since: 11, epoch: 'ep1' });
  });

  it('matches acks by id even out of order', () => {
    const s = connected();
    const a = publish(s, 'a');
    const b = publish(s, 'b');
    s.receive(batch(ack(11, b.id), ack(12, a.id)), T0);
    expect([a.entry.seq, b.entry.seq]).toEqual([12, 11]);
  });

  it('marks the oldest pending message failed on an error frame and shows a notice', () => {
    const s = connected();
    const a = publish(s, 'a');
    const b = publish(s, 'b');
    const effects = s.receive('{"type":"error","code":"invalid_message"}', T0);
    expect(a.entry.status).toBe('failed');
    expect(a.entry.failure).toMatch(/must be a string/);
    expect(b.entry.status).toBe('pending');
    const notice = effects.find((e) => e.type === 'notice');
    expect(notice).toMatchObject({ type: 'notice', notice: { code: 'invalid_message', severity: 'error' } });
    expect(s.metrics.failed).toBe(1);
    expect(s.failures()).toEqual([a.entry]);
  });

  it('refuses to queue when not connected or when the frame is too large', () => {
    const s = new Session('t');
    expect(s.enqueue('x', T0)).toEqual({ ok: false, reason: 'Not connected.' });
    s.opening();
    s.receive(welcome(), T0);
    const big = s.enqueue('é'.repeat(600), T0); // 1200 bytes > 1000
    expect(big.ok).toBe(false);
    if (!big.ok) expect(big.reason).toMatch(/Too large: 1,2\d\d bytes; this server accepts at most 1,000/);
    expect(s.enqueue('x'.repeat(900), T0).ok).toBe(true);
    expect(s.nextSend(T0).type).toBe('send');
    expect(s.metrics.sent).toBe(1);
  });

  it('has no size limit when the server sets none', () => {
    const s = connected({ limits: { max_message_bytes: null } });
    expect(s.check('x'.repeat(100_000))).toBeNull();
  });

  it('fails the offending message when the server closes with 1009', () => {
    const s = connected();
    const small = publish(s, 'small');
    const big = publish(s, 'big '.repeat(100));
    const effects = s.closed(1009, 'message too big', T0, false, true);
    expect(big.entry.status).toBe('failed');
    expect(big.entry.failure).toMatch(/1009/);
    expect(small.entry.status).toBe('pending');
    expect(effects.some((e) => e.type === 'notice' && e.notice.code === 'close-1009')).toBe(true);
  });
});

describe('Session: closing', () => {
  it('shows a notice for a meaningful close', () => {
    const s = connected();
    const effects = s.closed(4008, '', T0, false, true);
    expect(effects).toEqual([
      { type: 'notice', notice: expect.objectContaining({ code: 'close-4008', title: 'Too slow to keep up' }) },
    ]);
    expect(s.ready).toBe(false);
  });

  it('stays quiet for a manual disconnect and for failed attempts', () => {
    const s = connected();
    expect(s.closed(1000, '', T0, true, true)).toEqual([]);
    s.opening();
    expect(s.closed(1006, '', T0, false, false)).toEqual([]); // server still down: the status says it
    s.opening();
    expect(s.closed(1013, '', T0, false, false)).toHaveLength(1); // but "full" is worth a notice
  });
});

describe('Session: resume', () => {
  function resumed(epoch = 'ep1', seq = 14): Session {
    const s = connected();
    s.receive(frame(message(11, 'before')), T0);
    s.closed(1006, '', T0, false, true);
    const point = s.opening();
    expect(point).toEqual({ since: 11, epoch: 'ep1' });
    s.receive(welcome({ client_id: 'me0000000002', seq, epoch }), T0 + 1000);
    return s;
  }

  it('shows replayed messages once and a caught-up marker', () => {
    const s = resumed();
    expect(s.recovering).toBe(true);
    const effects = s.receive(
      batch(
        message(12, 'missed 1'),
        message(13, 'missed 2'),
        message(14, 'missed 3'),
        { type: 'recovered', complete: true, since: 11, replayed: 3, seq: 14 },
      ),
      T0 + 1001,
    );
    const entries = added(effects);
    expect(entries.map((e) => e.text)).toEqual(['missed 1', 'missed 2', 'missed 3']);
    expect(entries.every((e) => e.replayed && e.latencyMs === null)).toBe(true);
    expect(markers(effects)).toEqual(['Reconnected: caught up on 3 missed messages.']);
    expect(s.recovering).toBe(false);
    expect(s.metrics).toMatchObject({ received: 4, replayed: 3 });
    // The replay does not skew the latency numbers.
    expect(s.metrics.lastLatencyMs).toBe(0);
    // Live messages after the replay count as live again.
    expect(added(s.receive(frame(message(15, 'live')), T0 + 2000))[0]?.replayed).toBe(false);
  });

  it('adds no marker when nothing was missed', () => {
    const s = resumed('ep1', 11);
    const effects = s.receive('{"type":"recovered","complete":true,"since":11,"replayed":0,"seq":11}', T0);
    expect(effects).toEqual([]);
  });

  it('confirms an own message that the replay brings back from the old connection', () => {
    const s = connected();
    const mine = publish(s, 'sent just before the drop');
    s.closed(1006, '', T0, false, true);
    s.opening();
    s.receive(welcome({ client_id: 'me0000000002', seq: 11 }), T0 + 1000);
    const effects = s.receive(
      batch(message(11, 'sent just before the drop', ME), {
        type: 'recovered', complete: true, since: 10, replayed: 1, seq: 11,
      }),
      T0 + 1000,
    );
    expect(effects[0]).toEqual({ type: 'updated', entry: mine.entry });
    expect(mine.entry).toMatchObject({ status: 'delivered', seq: 11, replayed: true });
    expect(s.metrics.received).toBe(0); // ours, not someone else's
  });

  it('fails own messages the server never got once the resume is complete', () => {
    const s = connected();
    const lost = publish(s, 'lost in transit');
    s.closed(1006, '', T0, false, true);
    s.opening();
    s.receive(welcome({ client_id: 'me0000000002' }), T0);
    s.receive('{"type":"recovered","complete":true,"since":10,"replayed":0,"seq":10}', T0);
    expect(lost.entry.status).toBe('failed');
    expect(lost.entry.failure).toMatch(/Not delivered/);
  });

  it('shows a restart marker when the epoch changed and follows the new history', () => {
    const s = connected();
    const unsure = publish(s, 'in flight during the restart');
    s.closed(1001, '', T0, false, true);
    s.opening();
    const atWelcome = s.receive(welcome({ client_id: 'new000000001', seq: 0, epoch: 'ep2' }), T0);
    expect(markers(atWelcome)).toEqual([expect.stringMatching(/server restarted/i)]);
    const atRecovered = s.receive(
      '{"type":"recovered","complete":false,"reason":"epoch_mismatch","since":10,"replayed":0,"seq":0}',
      T0,
    );
    expect(markers(atRecovered)).toEqual([]); // said once, not twice
    expect(unsure.entry.status).toBe('failed');
    expect(unsure.entry.failure).toMatch(/Unconfirmed/);
    expect(s.resume.point()).toEqual({ since: 0, epoch: 'ep2' });
    // seq 1 of the new epoch is new, and the old client id is no longer "us".
    const fresh = added(s.receive(frame(message(1, 'hello again', ME)), T0));
    expect(fresh[0]).toMatchObject({ seq: 1, own: false });
  });

  it('shows a gap marker when history expired', () => {
    const s = resumed('ep1', 42);
    const effects = s.receive(
      '{"type":"recovered","complete":false,"reason":"history_expired","since":11,"first_seq":20,"replayed":23,"seq":42}',
      T0,
    );
    expect(markers(effects)).toEqual([expect.stringContaining('8 messages (#12–#19) expired')]);
  });

  it('explains an epoch_mismatch in the same epoch', () => {
    const s = resumed('ep1', 3);
    const effects = s.receive('{"type":"recovered","complete":false,"reason":"epoch_mismatch","since":11,"replayed":0,"seq":3}', T0);
    expect(markers(effects)).toEqual([expect.stringMatching(/could not resume/)]);
    expect(s.resume.point()).toEqual({ since: 3, epoch: 'ep1' });
  });

  it('marks an unknown recovery failure honestly', () => {
    const s = resumed();
    const effects = s.receive('{"type":"recovered","complete":false,"reason":"disabled","since":11,"replayed":0,"seq":14}', T0);
    expect(markers(effects)).toEqual(['Some messages could not be recovered (disabled).']);
  });
});

describe('Session: robustness', () => {
  it('counts but ignores frames it does not understand', () => {
    const s = connected();
    expect(s.receive('not json', T0)).toEqual([]);
    expect(s.receive('{"type":"presence"}', T0)).toEqual([]);
    expect(s.metrics.events).toBe(3);
  });

  it('ignores an ack for a message it does not know', () => {
    const s = connected();
    expect(s.receive(frame(ack(11, 'someone-else')), T0)).toEqual([]);
  });

  it('handles a thousand messages with constant-size state', () => {
    const s = connected();
    const events = Array.from({ length: 1000 }, (_, i) => message(11 + i, `m${i}`));
    const effects = s.receive(batch(...events), T0);
    expect(added(effects)).toHaveLength(1000);
    expect(s.metrics.received).toBe(1000);
    expect(s.resume.point()).toEqual({ since: 1010, epoch: 'ep1' });
  });
});

describe('Session: pacing to the server rate', () => {
  /** The server allows 10/s in bursts of 5: the client sends 4 at once, then one per ~111 ms. */
  function paced(): Session {
    return connected({ limits: { ...LIMITS, publish_rate: 10, publish_burst: 5 } });
  }

  it('queues a burst and sends it as the rate allows, saying how far it got', () => {
    const s = paced();
    for (let i = 1; i <= 10; i++) expect(s.enqueue(`m${i}`, T0).ok).toBe(true);
    const sent: string[] = [];
    let step = s.nextSend(T0);
    while (step.type === 'send') {
      sent.push((JSON.parse(step.frame) as { message: string }).message);
      step = s.nextSend(T0);
    }
    expect(sent).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(step).toEqual({ type: 'wait', ms: 112 });
    expect(s.progress()).toEqual({ sent: 4, total: 10, queued: 6 });
    expect(s.metrics.sent).toBe(4);
    // 112 ms later one more may go, not two.
    expect(s.nextSend(T0 + 112).type).toBe('send');
    expect(s.nextSend(T0 + 112).type).toBe('wait');
    expect(s.progress()).toEqual({ sent: 5, total: 10, queued: 5 });
  });

  it('keeps the queue across a reconnect and sends nothing while offline', () => {
    const s = paced();
    for (let i = 1; i <= 6; i++) s.enqueue(`m${i}`, T0);
    while (s.nextSend(T0).type === 'send');
    s.closed(1006, '', T0, false, true);
    expect(s.nextSend(T0 + 10_000)).toEqual({ type: 'idle' });
    expect(s.queuedCount).toBe(2);
    s.opening();
    s.receive(welcome({ limits: { ...LIMITS, publish_rate: 10, publish_burst: 5 } }), T0 + 20_000);
    expect(s.nextSend(T0 + 20_000).type).toBe('send');
    expect(s.nextSend(T0 + 20_000).type).toBe('send');
    expect(s.nextSend(T0 + 20_000)).toEqual({ type: 'idle' });
    expect(s.progress()).toBeNull();
  });

  it('queues a message the server refused for its rate again instead of failing it', () => {
    const s = paced();
    const a = publish(s, 'a');
    const b = publish(s, 'b');
    const effects = s.receive('{"type":"error","code":"rate_limited","detail":"slow down"}', T0 + 1);
    expect(effects).toEqual([{ type: 'updated', entry: a.entry }]); // no notice, no failure
    expect(a.entry.status).toBe('queued');
    expect(b.entry.status).toBe('pending');
    expect(s.metrics).toMatchObject({ sent: 1, failed: 0 });
    // Sending pauses a second, then waits for a token (the bucket was emptied).
    expect(s.nextSend(T0 + 1)).toEqual({ type: 'wait', ms: 1000 });
    expect(s.nextSend(T0 + 1000).type).toBe('wait');
    expect(s.nextSend(T0 + 1001).type).toBe('send');
    expect(a.entry.status).toBe('pending');
  });

  it('matches a refusal to its publish by id, even when it overtakes earlier acks', () => {
    const s = paced();
    const a = publish(s, 'a');
    const b = publish(s, 'b');
    const c = publish(s, 'c');
    s.receive(batch({ type: 'error', code: 'rate_limited', id: b.id }, ack(11, a.id), ack(12, c.id)), T0 + 1);
    expect([a.entry.status, b.entry.status, c.entry.status]).toEqual(['delivered', 'queued', 'delivered']);
  });

  it('puts refused messages back in their original order', () => {
    const s = paced();
    const sent = ['a', 'b', 'c', 'd'].map((t) => publish(s, t));
    s.enqueue('e', T0);
    for (const p of sent.slice(1)) s.receive(frame({ type: 'error', code: 'rate_limited', id: p.id }), T0 + 1);
    const order: string[] = [];
    for (let t = T0 + 1001; order.length < 4; t += 200) {
      const step = s.nextSend(t);
      if (step.type === 'send') order.push((JSON.parse(step.frame) as { message: string }).message);
    }
    expect(order).toEqual(['b', 'c', 'd', 'e']);
  });

  it('counts a burst whose first messages went out at once as one run', () => {
    const s = paced();
    for (let i = 1; i <= 10; i++) {
      s.enqueue(`m${i}`, T0);
      while (s.nextSend(T0).type === 'send');
    }
    expect(s.progress()).toEqual({ sent: 4, total: 10, queued: 6 });
  });

  it('fails a message refused for its rate too many times, with a notice', () => {
    const s = connected();
    const a = publish(s, 'a');
    let effects: Effect[] = [];
    for (let i = 0; i < 6; i++) {
      const now = T0 + i * 1000;
      effects = s.receive('{"type":"error","code":"rate_limited"}', now);
      if (a.entry.status === 'queued') expect(s.nextSend(now + 1000).type).toBe('send');
    }
    expect(a.entry.status).toBe('failed');
    expect(a.entry.failure).toMatch(/Rate limited/);
    expect(effects.some((e) => e.type === 'notice' && e.notice.code === 'rate_limited')).toBe(true);
  });
});

describe('Session: failed messages, together', () => {
  function withFailures(): { s: Session; lost: MessageEntry[] } {
    const s = connected();
    const lost = ['one', 'two', 'three'].map((t) => publish(s, t).entry);
    s.closed(1006, '', T0, false, true);
    s.opening();
    s.receive(welcome({ client_id: 'me0000000002' }), T0);
    s.receive('{"type":"recovered","complete":true,"since":10,"replayed":0,"seq":10}', T0);
    return { s, lost };
  }

  it('lists failures in order until resent or dismissed', () => {
    const { s, lost } = withFailures();
    expect(s.failures()).toEqual(lost);
    s.forgetFailure(lost[1]?.key ?? '');
    expect(s.failures().map((e) => e.text)).toEqual(['one', 'three']);
    s.dismissFailures();
    expect(s.failures()).toEqual([]);
    expect(lost.every((e) => e.status === 'failed')).toBe(true);
  });

  it('resends all as new queued entries at the end, removing the failed ones', () => {
    const { s, lost } = withFailures();
    const effects = s.resendFailed(T0 + 5);
    expect(effects.filter((e) => e.type === 'removed').map((e) => e.entry)).toEqual(lost);
    const again = added(effects);
    expect(again.map((e) => [e.text, e.status])).toEqual([
      ['one', 'queued'],
      ['two', 'queued'],
      ['three', 'queued'],
    ]);
    expect(s.failures()).toEqual([]);
    expect(s.progress()).toEqual({ sent: 0, total: 3, queued: 3 });
  });

  it('resends nothing while offline', () => {
    const { s } = withFailures();
    s.closed(1006, '', T0, false, true);
    expect(s.resendFailed(T0)).toEqual([]);
    expect(s.failures()).toHaveLength(3);
  });
});

describe('Session: history on join (last)', () => {
  it('asks for a screenful on a fresh connection only', () => {
    const s = new Session('t', 50);
    expect(s.opening()).toBeNull();
    expect(s.askedLast).toBe(50);
    s.receive(welcome(), T0);
    s.closed(1006, '', T0, false, true);
    expect(s.opening()).not.toBeNull();
    expect(s.askedLast).toBeNull();
  });

  it('marks the history as earlier messages, with a divider, then goes live', () => {
    const s = connected({ seq: 12 }, 50);
    expect(s.recovering).toBe(true);
    const effects = s.receive(
      batch(
        message(11, 'before I came'),
        message(12, 'just before'),
        { type: 'recovered', complete: true, since: 10, replayed: 2, seq: 12 },
      ),
      T0 + 10,
    );
    const entries = added(effects);
    expect(entries.map((e) => [e.text, e.earlier, e.replayed, e.latencyMs])).toEqual([
      ['before I came', true, false, null],
      ['just before', true, false, null],
    ]);
    expect(markers(effects)).toEqual(['2 earlier messages above, sent before you joined.']);
    expect(s.recovering).toBe(false);
    expect(s.metrics).toMatchObject({ earlier: 2, received: 0, replayed: 0, lastLatencyMs: null });
    const live = added(s.receive(frame(message(13, 'live')), T0 + 20));
    expect(live[0]).toMatchObject({ earlier: false, replayed: false });
    expect(s.metrics.received).toBe(1);
  });

  it('adds no divider when there was no history', () => {
    const s = connected({ seq: 0 }, 50);
    const effects = s.receive('{"type":"recovered","complete":true,"since":0,"replayed":0,"seq":0}', T0);
    expect(effects).toEqual([]);
  });
});

describe('Session: nothing missed after a restart', () => {
  it('shows the gap marker, then the new history the server replays, then the count', () => {
    const s = connected();
    s.receive(frame(message(11, 'old epoch')), T0);
    s.closed(1001, '', T0, false, true);
    s.opening();
    const atWelcome = s.receive(welcome({ client_id: 'new000000001', seq: 2, epoch: 'ep2' }), T0 + 1000);
    expect(markers(atWelcome)).toEqual([expect.stringMatching(/server restarted/i)]);
    const effects = s.receive(
      batch(
        message(1, 'sent in new epoch', 'other0000002'),
        message(2, 'and another', 'other0000002'),
        { type: 'recovered', complete: false, reason: 'epoch_mismatch', since: 0, first_seq: 1, replayed: 2, seq: 2 },
      ),
      T0 + 1001,
    );
    expect(added(effects).map((e) => [e.text, e.seq, e.replayed])).toEqual([
      ['sent in new epoch', 1, true],
      ['and another', 2, true],
    ]);
    expect(markers(effects)).toEqual(['Caught up on 2 messages sent since the restart.']);
    expect(s.resume.point()).toEqual({ since: 2, epoch: 'ep2' });
    // Seq 3 is live and new; a duplicate of seq 2 is dropped.
    expect(added(s.receive(batch(message(2, 'and another'), message(3, 'live')), T0 + 2000)).map((e) => e.text)).toEqual(['live']);
  });
});

describe('Session: counts', () => {
  it('does not count an own message replayed by a resume as received via resume', () => {
    const s = connected();
    s.closed(1006, '', T0, false, true);
    s.opening();
    s.receive(welcome({ client_id: 'me0000000002', seq: 11 }), T0);
    s.receive(batch(message(11, 'mine, from before', ME), { type: 'recovered', complete: true, since: 10, replayed: 1, seq: 11 }), T0);
    expect(s.metrics).toMatchObject({ received: 0, replayed: 0 });
  });

  it('counts live broadcasts (messages and acks) per second for the sparkline', () => {
    const s = connected();
    publish(s, 'mine');
    s.receive(batch(message(11, 'a'), ack(12, 't-1')), T0 + 100);
    expect(s.seen.series(T0 + 200).at(-1)).toBe(2);
  });
});
