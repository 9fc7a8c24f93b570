import { describe, expect, it } from 'vitest';
import { PendingOutbox } from '../src/core/pending';
import { MAX_ID_LENGTH } from '../src/core/protocol';

describe('PendingOutbox', () => {
  it('hands out unique ids that fit the protocol', () => {
    const box = new PendingOutbox<string>();
    const ids = new Set(Array.from({ length: 1000 }, (_, i) => box.add(`m${i}`, 1, `v${i}`).id));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
  });

  it('resolves an ack by id, once', () => {
    const box = new PendingOutbox<string>('t');
    const a = box.add('a', 1, 'A');
    const b = box.add('b', 1, 'B');
    expect(box.ack(b.id)?.value).toBe('B');
    expect(box.ack(b.id)).toBeUndefined();
    expect(box.size).toBe(1);
    expect(box.ack(a.id)?.value).toBe('A');
    expect(box.ack('nope')).toBeUndefined();
  });

  it('answers an error with the oldest publish of the same connection', () => {
    const box = new PendingOutbox<string>('t');
    box.add('old', 1, 'old');
    box.add('x', 2, 'X');
    box.add('y', 2, 'Y');
    expect(box.oldest(2)?.value).toBe('X');
    expect(box.oldest(2)?.value).toBe('Y');
    expect(box.oldest(2)).toBeUndefined();
    expect(box.size).toBe(1);
  });

  it('finds the largest publish of a connection (the 1009 culprit)', () => {
    const box = new PendingOutbox<string>('t');
    box.add('short', 1, 'S');
    box.add('much much longer', 1, 'L');
    box.add('mid-size', 1, 'M');
    expect(box.largest(1)?.value).toBe('L');
    expect(box.largest(9)).toBeUndefined();
  });

  it('matches a replayed message to the oldest earlier publish with the same text', () => {
    const box = new PendingOutbox<string>('t');
    box.add('same', 1, 'first');
    box.add('same', 1, 'second');
    box.add('same', 2, 'current');
    expect(box.replayed('same', 2)?.value).toBe('first');
    expect(box.replayed('same', 2)?.value).toBe('second');
    expect(box.replayed('same', 2)).toBeUndefined(); // never the current connection's
    expect(box.replayed('other', 3)).toBeUndefined();
  });

  it('takes every publish from older connections, oldest first', () => {
    const box = new PendingOutbox<string>('t');
    box.add('a', 1, 'A');
    box.add('b', 2, 'B');
    box.add('c', 3, 'C');
    expect(box.takeOlderThan(3).map((p) => p.value)).toEqual(['A', 'B']);
    expect(box.size).toBe(1);
  });

  it('refuses a prefix that would make ids too long', () => {
    expect(() => new PendingOutbox('x'.repeat(60))).toThrow(RangeError);
  });
});
