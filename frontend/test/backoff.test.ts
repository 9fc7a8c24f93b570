import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/core/backoff';

describe('Backoff', () => {
  it('doubles its ceiling per attempt up to the cap', () => {
    const b = new Backoff({ baseMs: 500, capMs: 4000, floorMs: 0, random: () => 0.999999 });
    const delays = Array.from({ length: 6 }, () => b.next());
    expect(delays).toEqual([499, 999, 1999, 3999, 3999, 3999]);
    expect(b.attempt).toBe(6);
  });

  it('uses full jitter: anywhere between the floor and the ceiling', () => {
    let r = 0;
    const b = new Backoff({ baseMs: 1000, capMs: 1000, floorMs: 100, random: () => r });
    r = 0;
    expect(b.next()).toBe(100); // never zero: the floor keeps a tight loop from spinning
    r = 0.5;
    expect(b.next()).toBe(500);
    r = 0.25;
    expect(b.next()).toBe(250);
  });

  it('stays within bounds with Math.random', () => {
    const b = new Backoff({ baseMs: 200, capMs: 10_000 });
    for (let i = 0; i < 200; i++) {
      const ceiling = b.ceiling();
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(b.floorMs);
      expect(d).toBeLessThanOrEqual(Math.max(ceiling, b.floorMs));
    }
  });

  it('starts over after reset', () => {
    const b = new Backoff({ baseMs: 100, capMs: 10_000, floorMs: 0, random: () => 0.999 });
    b.next();
    b.next();
    b.next();
    expect(b.ceiling()).toBe(800);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.ceiling()).toBe(100);
  });

  it('does not overflow after many attempts', () => {
    const b = new Backoff({ baseMs: 500, capMs: 30_000, random: () => 0.5 });
    for (let i = 0; i < 5000; i++) b.next();
    expect(b.next()).toBe(15_000);
  });

  it('refuses nonsense options', () => {
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 1000, capMs: 10 })).toThrow(RangeError);
    expect(() => new Backoff({ floorMs: -1 })).toThrow(RangeError);
  });
});
