import { describe, expect, it } from 'vitest';
import { RATE_MARGIN, TokenBucket } from '../src/core/pacer';

describe('TokenBucket', () => {
  it('allows one token less than the server burst at once, then paces below the rate', () => {
    const b = new TokenBucket(10, 5);
    expect(b.capacity).toBe(4);
    const allowed = Array.from({ length: 6 }, () => b.take(0)).filter(Boolean).length;
    expect(allowed).toBe(4);
    expect(b.waitMs(0)).toBe(100);
    expect(b.take(99)).toBe(false);
    expect(b.take(100)).toBe(true);
  });

  it('never holds fewer than one token', () => {
    const b = new TokenBucket(1, 1);
    expect(b.capacity).toBe(1);
    expect(b.take(0)).toBe(true);
    expect(b.take(500)).toBe(false);
    expect(b.take(1000)).toBe(true);
  });

  it('is built from the advertised limits with a margin, or not at all without a rate', () => {
    const b = TokenBucket.forLimits(20, 40);
    expect(b?.rate).toBeCloseTo(20 * RATE_MARGIN);
    expect(b?.capacity).toBe(39);
    expect(TokenBucket.forLimits(null, 40)).toBeNull();
  });

  it('waits a whole token after a drain (the server refused one)', () => {
    const b = new TokenBucket(2, 10);
    b.drain(0);
    expect(b.waitMs(0)).toBe(500);
    expect(b.take(499)).toBe(false);
    expect(b.take(500)).toBe(true);
  });
});
