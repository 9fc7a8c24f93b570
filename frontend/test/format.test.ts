import { describe, expect, it } from 'vitest';
import * as fmt from '../src/core/format';

describe('format', () => {
  it('formats durations', () => {
    expect(fmt.duration(0)).toBe('0s');
    expect(fmt.duration(42_900)).toBe('42s');
    expect(fmt.duration(185_000)).toBe('3m 05s');
    expect(fmt.duration(3_720_000)).toBe('1h 02m');
    expect(fmt.duration(-5)).toBe('0s');
  });

  it('formats latencies', () => {
    expect(fmt.latency(0.4)).toBe('<1 ms');
    expect(fmt.latency(3.25)).toBe('3.3 ms');
    expect(fmt.latency(12.4)).toBe('12 ms');
    expect(fmt.latency(1340)).toBe('1.3 s');
    expect(fmt.latency(Number.NaN)).toBe('—');
  });

  it('formats countdowns and counts', () => {
    expect(fmt.countdown(3210)).toBe('3.2 s');
    expect(fmt.countdown(12_100)).toBe('13 s');
    expect(fmt.countdown(-1)).toBe('0.0 s');
    expect(fmt.count(1234567)).toBe('1,234,567');
    expect(fmt.count(12)).toBe('12');
  });

  it('formats local clock times', () => {
    const d = new Date(2026, 0, 2, 3, 4, 5);
    expect(fmt.clockTime(d.getTime())).toBe('03:04:05');
  });

  it('shortens ids and gives each a stable hue', () => {
    expect(fmt.shortId('3f9a0c1d2b4e')).toBe('3f9a0c');
    expect(fmt.shortId('')).toBe('?');
    expect(fmt.hue('abc')).toBe(fmt.hue('abc'));
    expect(fmt.hue('abc')).toBeGreaterThanOrEqual(0);
    expect(fmt.hue('abc')).toBeLessThan(360);
  });
});

describe('plural and rate', () => {
  it('says 1 frame but 2 frames, with separators', () => {
    expect(fmt.plural(1, 'frame')).toBe('1 frame');
    expect(fmt.plural(0, 'frame')).toBe('0 frames');
    expect(fmt.plural(1200, 'message')).toBe('1,200 messages');
    expect(fmt.plural(2, 'batch', 'batches')).toBe('2 batches');
  });

  it('shows rates with one decimal below 10', () => {
    expect(fmt.rate(0)).toBe('0/s');
    expect(fmt.rate(0.33)).toBe('0.3/s');
    expect(fmt.rate(12.4)).toBe('12/s');
    expect(fmt.rate(1250)).toBe('1,250/s');
  });
});
