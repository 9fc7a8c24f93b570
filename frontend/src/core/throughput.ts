/**
 * Throughput for the sparkline: messages per second seen by this client (counted per second) and
 * the server's (from two readings of `/api/status` `messages_in`). Pure: every call takes `now`
 * in milliseconds.
 */

/** Counts events per whole second over the last `seconds` seconds. */
export class RateMeter {
  private readonly counts: number[];
  /** The second (ms / 1000, floored) that `counts[last]` holds. */
  private current: number | null = null;

  constructor(readonly seconds = 60) {
    this.counts = new Array<number>(seconds).fill(0);
  }

  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (this.current === null) {
      this.current = second;
      return;
    }
    const steps = Math.min(this.seconds, second - this.current);
    for (let i = 0; i < steps; i++) {
      this.counts.shift();
      this.counts.push(0);
    }
    if (steps > 0) this.current = second;
  }

  /** Counts `n` events at `now` (a time in a second already shown counts in that second). */
  add(now: number, n = 1): void {
    this.advance(now);
    const index = this.counts.length - 1 - ((this.current ?? 0) - Math.floor(now / 1000));
    if (index >= 0 && index < this.counts.length) this.counts[index] = (this.counts[index] ?? 0) + n;
  }

  /** Per-second counts, oldest first, the last entry being the second in progress. */
  series(now: number): number[] {
    this.advance(now);
    return this.counts.slice();
  }

  /** Messages per second over the last complete seconds (`window` of them). */
  rate(now: number, window = 3): number {
    const s = this.series(now);
    const done = s.slice(-1 - window, -1);
    return done.length === 0 ? 0 : done.reduce((a, b) => a + b, 0) / done.length;
  }
}

/** The server's rate from successive counter readings, held per second for the sparkline. */
export class CounterRate {
  private previous: { time: number; value: number } | null = null;
  private readonly meter: RateMeter;
  /** The latest rate (per second), null before two readings. */
  latest: number | null = null;

  constructor(seconds = 60) {
    this.meter = new RateMeter(seconds);
  }

  /** Records a reading of a monotonic counter; a counter that went down (a restart) starts over. */
  sample(now: number, value: number): void {
    const prev = this.previous;
    this.previous = { time: now, value };
    if (prev === null || value < prev.value || now <= prev.time) {
      this.latest = null;
      return;
    }
    const rate = ((value - prev.value) * 1000) / (now - prev.time);
    this.latest = rate;
    // Spread the interval's rate over the seconds it covered.
    const from = Math.floor(prev.time / 1000) + 1;
    const to = Math.floor(now / 1000);
    for (let s = from; s <= to; s++) this.meter.add(s * 1000, rate);
  }

  /** Forgets the last reading (the connection dropped; the next reading starts a new interval). */
  reset(): void {
    this.previous = null;
    this.latest = null;
  }

  series(now: number): number[] {
    return this.meter.series(now);
  }
}

/**
 * SVG polyline points for `values` in a `width`×`height` box, scaled to `max` (at least 1), with
 * the newest value at the right edge.
 */
export function sparkPoints(values: readonly number[], width: number, height: number, max: number): string {
  if (values.length === 0) return '';
  const top = Math.max(1, max);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  return values
    .map((v, i) => {
      const x = values.length > 1 ? i * step : width;
      const y = height - (Math.max(0, Math.min(v, top)) / top) * height;
      return `${round(x)},${round(y)}`;
    })
    .join(' ');
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
