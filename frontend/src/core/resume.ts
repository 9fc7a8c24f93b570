/**
 * Resume bookkeeping: which server history (`epoch`) this client follows and the highest `seq` it
 * has seen in it, so a reconnect can ask for exactly what it missed (`since`/`epoch`).
 *
 * Pure and synchronous; the connection code feeds it frames in arrival order.
 */
import type { Recovered, Welcome } from './protocol';
import type { ResumePoint } from './url';

/** What a welcome means for this client's history. */
export type WelcomeKind =
  /** No resume was asked for: live messages start after `welcome.seq`. */
  | 'fresh'
  /** A resume in the same epoch: replayed messages, then `recovered`, follow. */
  | 'resuming'
  /** A resume was asked for, but the server's history is a new one (it restarted). */
  | 'epoch-changed';

/** How many seqs the duplicate filter remembers below the highest one. */
const SEEN_WINDOW = 4096;

export class ResumeTracker {
  /** The server history `highestSeq` belongs to; null before the first welcome. */
  epoch: string | null = null;
  /** The highest seq seen (message or ack) in `epoch`. */
  highestSeq = 0;
  /** Seqs seen recently in `epoch`, to drop a frame delivered twice. */
  private readonly seen = new Set<number>();
  /** The resume point the current connection asked with (null: none). */
  private requested: ResumePoint | null = null;

  /** The resume point for the next connection, or null when there is nothing to resume yet. */
  point(): ResumePoint | null {
    return this.epoch === null ? null : { since: this.highestSeq, epoch: this.epoch };
  }

  /** Records that a new connection starts, asking with `point` (what `point()` returned). */
  begin(point: ResumePoint | null): void {
    this.requested = point;
  }

  /** Applies a welcome frame; says whether the connection resumes, starts fresh or lost history. */
  welcome(w: Welcome): WelcomeKind {
    const asked = this.requested;
    if (asked !== null && w.epoch === asked.epoch) return 'resuming';
    const changed = this.epoch !== null && this.epoch !== w.epoch;
    if (changed || this.epoch === null) {
      this.seen.clear();
      this.epoch = w.epoch;
      this.highestSeq = w.seq;
    } else {
      this.highestSeq = Math.max(this.highestSeq, w.seq);
    }
    return asked !== null ? 'epoch-changed' : 'fresh';
  }

  /**
   * Records a broadcast's seq (from a message or an ack). Returns false when it was already seen
   * (a duplicate the caller should drop), true otherwise.
   */
  observe(seq: number): boolean {
    if (this.seen.has(seq)) return false;
    if (seq <= this.highestSeq - SEEN_WINDOW) return false; // long gone: certainly shown already
    this.seen.add(seq);
    if (seq > this.highestSeq) this.highestSeq = seq;
    if (this.seen.size > 2 * SEEN_WINDOW) {
      const floor = this.highestSeq - SEEN_WINDOW;
      for (const s of this.seen) if (s <= floor) this.seen.delete(s);
    }
    return true;
  }

  /** Applies the `recovered` frame that ends a resume. */
  recovered(r: Recovered): void {
    const asked = this.requested;
    this.requested = null;
    if (!r.complete && r.reason === 'epoch_mismatch') {
      // Our `since` means nothing to this history: follow the server's numbering from now on.
      // In the same epoch (our since was ahead of the server's seq) what we saw is void; after a
      // new epoch's welcome, the seqs seen since are the replay of the new history: keep them.
      if (asked !== null && asked.epoch === this.epoch) this.seen.clear();
      if (r.seq !== null) this.highestSeq = r.seq;
      return;
    }
    // Complete, or a gap the server admitted to: either way everything up to r.seq is settled.
    if (r.seq !== null) this.highestSeq = Math.max(this.highestSeq, r.seq);
  }
}
