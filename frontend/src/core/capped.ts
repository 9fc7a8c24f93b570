/**
 * A list that keeps only its newest `capacity` items: what the UI keeps in memory and in the DOM,
 * so a thousand messages cost the same as five hundred.
 */
export class CappedList<T> {
  private items: T[] = [];
  /** Items ever dropped from the front to respect the capacity. */
  dropped = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError('capacity must be a positive integer');
    }
  }

  get length(): number {
    return this.items.length;
  }

  /** Appends `item` and returns the items that fell off the front (oldest first). */
  push(item: T): T[] {
    this.items.push(item);
    const excess = this.items.length - this.capacity;
    if (excess <= 0) return [];
    this.dropped += excess;
    // Splice in chunks would be cheaper for huge caps; at a few hundred this is negligible.
    return this.items.splice(0, excess);
  }

  /** The items, oldest first (a copy). */
  toArray(): T[] {
    return this.items.slice();
  }

  /** The newest item, if any. */
  last(): T | undefined {
    return this.items[this.items.length - 1];
  }

  clear(): void {
    this.items = [];
  }
}
