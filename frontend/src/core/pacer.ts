/**
 * Client-side pacing of publishes: a token bucket like the server's (docs/protocol.md, "Limits"),
 * a little stricter, so a burst the user typed or pasted is queued here instead of being refused
 * (or the connection closed with 1008) there.
 *
 * Pure and clock-free: every call takes `now` in milliseconds.
 */

/** How much slower than the advertised rate the client sends (network jitter can bunch frames). */
export const RATE_MARGIN = 0.9;

export class TokenBucket {
  private tokens: number;
  private updated: number | null = null;

  /**
   * `rate` tokens per second refill a bucket of `burst` tokens. The client keeps one token in
   * reserve below the server's burst (never less than one).
   */
  constructor(
    readonly rate: number,
    burst: number,
  ) {
    if (!(rate > 0)) throw new RangeError('rate must be positive');
    this.capacity = Math.max(1, Math.floor(burst) - 1);
    this.tokens = this.capacity;
  }

  /** Tokens the bucket holds when full. */
  readonly capacity: number;

  /** Builds the bucket for a server's advertised limits; null when the server sets no rate. */
  static forLimits(rate: number | null, burst: number | null): TokenBucket | null {
    if (rate === null || !(rate > 0)) return null;
    return new TokenBucket(rate * RATE_MARGIN, burst ?? 1);
  }

  private refill(now: number): void {
    if (this.updated !== null) {
      const elapsed = Math.max(0, now - this.updated) / 1000;
      this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.rate);
    }
    this.updated = now;
  }

  /** Spends a token if there is one; returns whether it did. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Milliseconds until a token is available (0 when one is). */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }

  /** Empties the bucket: the server refused a publish, so its bucket is emptier than ours. */
  drain(now: number): void {
    this.refill(now);
    this.tokens = 0;
  }
}
