/**
 * Exponential backoff with full jitter ("sleep = random(0, min(cap, base * 2^attempt))").
 *
 * Pure: the random source is injected, so tests can pin it. The caller owns the timer.
 */

export interface BackoffOptions {
  /** First ceiling, in milliseconds. */
  readonly baseMs?: number;
  /** Largest ceiling, in milliseconds. */
  readonly capMs?: number;
  /** Smallest delay, in milliseconds, so a tight loop can never spin. */
  readonly floorMs?: number;
  /** Returns a number in [0, 1); `Math.random` by default. */
  readonly random?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly floorMs: number;
  private readonly random: () => number;
  /** Failed attempts since the last success; the next delay's exponent. */
  private failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500; // milliseconds
    this.capMs = options.capMs ?? 30_000; // milliseconds
    this.floorMs = options.floorMs ?? 100; // milliseconds
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs) || !(this.floorMs >= 0)) {
      throw new RangeError('backoff needs 0 < baseMs <= capMs and floorMs >= 0');
    }
  }

  /** How many delays were handed out since the last `reset()`. */
  get attempt(): number {
    return this.failures;
  }

  /** The ceiling for the next delay, in milliseconds (before jitter). */
  ceiling(): number {
    // 2 ** 31 overflows nothing in floating point, but cap the exponent to keep it tidy.
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures, 30));
  }

  /** Returns the next delay in milliseconds and counts one more attempt. */
  next(): number {
    const ceiling = this.ceiling();
    this.failures += 1;
    const r = Math.min(Math.max(this.random(), 0), 1);
    return Math.max(this.floorMs, Math.floor(r * ceiling));
  }

  /** Call after a successful connection: the next delay starts from `baseMs` again. */
  reset(): void {
    this.failures = 0;
  }
}
