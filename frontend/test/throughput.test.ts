import { describe, expect, it } from 'vitest';
import { CounterRate, RateMeter, sparkPoints } from '../src/core/throughput';

describe('RateMeter', () => {
  it('counts per second and slides its window', () => {
    const m = new RateMeter(4);
    m.add(1000);
    m.add(1500);
    m.add(2100);
    expect(m.series(2200)).toEqual([0, 0, 2, 1]);
    expect(m.series(4000)).toEqual([2, 1, 0, 0]);
    expect(m.series(60_000)).toEqual([0, 0, 0, 0]);
  });

  it('gives the mean of the last complete seconds', () => {
    const m = new RateMeter(10);
    for (let t = 0; t < 3000; t += 100) m.add(t); // 10 per second for 3 s
    expect(m.rate(3500, 3)).toBe(10);
  });
});

describe('CounterRate', () => {
  it('turns counter readings into a rate held over the seconds between them', () => {
    const r = new CounterRate(6);
    r.sample(1000, 100);
    expect(r.latest).toBeNull();
    r.sample(4000, 160);
    expect(r.latest).toBe(20);
    expect(r.series(4000)).toEqual([0, 0, 0, 20, 20, 20]);
  });

  it('starts over when the counter goes down (a restarted server)', () => {
    const r = new CounterRate();
    r.sample(0, 500);
    r.sample(1000, 3);
    expect(r.latest).toBeNull();
    r.sample(2000, 13);
    expect(r.latest).toBe(10);
  });
});

describe('sparkPoints', () => {
  it('scales values into the box, newest on the right, clamped to max', () => {
    expect(sparkPoints([0, 5, 10, 20], 30, 10, 10)).toBe('0,10 10,5 20,0 30,0');
    expect(sparkPoints([], 30, 10, 10)).toBe('');
    expect(sparkPoints([0, 0], 30, 10, 0)).toBe('0,10 30,10');
  });
});
