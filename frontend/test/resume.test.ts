import { describe, expect, it } from 'vitest';
import type { Recovered, Welcome } from '../src/core/protocol';
import { decodeFrame } from '../src/core/protocol';
import { ResumeTracker } from '../src/core/resume';
import { welcome } from './frames';

function w(over: Record<string, unknown> = {}): Welcome {
  const [event] = decodeFrame(welcome(over)).events;
  if (event?.type !== 'welcome') throw new Error('bad welcome');
  return event;
}

function rec(over: Partial<Recovered>): Recovered {
  return { type: 'recovered', complete: true, reason: null, since: null, firstSeq: null, replayed: 0, seq: null, ...over };
}

describe('ResumeTracker', () => {
  it('has nothing to resume before the first welcome', () => {
    expect(new ResumeTracker().point()).toBeNull();
  });

  it('starts from the welcome seq on a fresh connection', () => {
    const t = new ResumeTracker();
    t.begin(t.point());
    expect(t.welcome(w({ seq: 41, epoch: 'A' }))).toBe('fresh');
    expect(t.point()).toEqual({ since: 41, epoch: 'A' });
  });

  it('tracks the highest seq seen from messages and acks', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 0, epoch: 'A' }));
    expect(t.observe(1)).toBe(true);
    expect(t.observe(3)).toBe(true);
    expect(t.observe(2)).toBe(true); // out of order is fine, still new
    expect(t.point()).toEqual({ since: 3, epoch: 'A' });
  });

  it('reports a seq seen twice as a duplicate', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 0, epoch: 'A' }));
    expect(t.observe(5)).toBe(true);
    expect(t.observe(5)).toBe(false);
  });

  it('keeps its place across a resume in the same epoch', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 10, epoch: 'A' }));
    t.observe(11);
    const point = t.point();
    expect(point).toEqual({ since: 11, epoch: 'A' });
    t.begin(point);
    // The welcome's seq is already ahead (messages were missed); the replay fills the gap.
    expect(t.welcome(w({ seq: 15, epoch: 'A' }))).toBe('resuming');
    expect(t.highestSeq).toBe(11);
    for (const s of [12, 13, 14, 15]) expect(t.observe(s)).toBe(true);
    t.recovered(rec({ complete: true, since: 11, replayed: 4, seq: 15 }));
    expect(t.point()).toEqual({ since: 15, epoch: 'A' });
  });

  it('follows a new epoch when the server restarted', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 0, epoch: 'A' }));
    t.observe(1);
    t.observe(2);
    t.begin(t.point());
    expect(t.welcome(w({ seq: 0, epoch: 'B' }))).toBe('epoch-changed');
    expect(t.point()).toEqual({ since: 0, epoch: 'B' });
    // Numbering restarts: seq 1 of epoch B is new, not a duplicate of epoch A's.
    expect(t.observe(1)).toBe(true);
  });

  it('takes the server numbering when it refuses a since that is ahead', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 50, epoch: 'A' }));
    t.begin(t.point());
    t.welcome(w({ seq: 3, epoch: 'A' }));
    t.recovered(rec({ complete: false, reason: 'epoch_mismatch', since: 50, seq: 3 }));
    expect(t.point()).toEqual({ since: 3, epoch: 'A' });
    expect(t.observe(4)).toBe(true);
  });

  it('moves past a gap the server admitted to', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 3, epoch: 'A' }));
    t.begin(t.point());
    t.welcome(w({ seq: 42, epoch: 'A' }));
    for (let s = 12; s <= 42; s++) t.observe(s);
    t.recovered(rec({ complete: false, reason: 'history_expired', since: 3, firstSeq: 12, replayed: 31, seq: 42 }));
    expect(t.point()).toEqual({ since: 42, epoch: 'A' });
  });

  it('remembers a bounded window of seqs', () => {
    const t = new ResumeTracker();
    t.begin(null);
    t.welcome(w({ seq: 0, epoch: 'A' }));
    for (let s = 1; s <= 20_000; s++) t.observe(s);
    expect(t.observe(19_999)).toBe(false);
    expect(t.observe(1)).toBe(false); // far below the window: certainly old
    expect((t as unknown as { seen: Set<number> }).seen.size).toBeLessThanOrEqual(2 * 4096 + 1);
  });
});
