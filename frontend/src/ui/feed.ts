/**
 * A capped, batched list view: entries are appended to a queue and written to the DOM at most once
 * per animation frame, in one DocumentFragment, and only the newest `capacity` stay in the DOM.
 */
import type { Entry, MessageEntry } from '../core/session';
import { renderEntry, updateMessage } from './render';

export interface FeedOptions {
  readonly capacity: number;
  /** Newest entry at the top (true) or at the bottom with auto-scroll (false). */
  readonly newestFirst: boolean;
  readonly view: 'chat' | 'broadcast';
  /** Called after a flush with the number of entries added while the user was scrolled away. */
  readonly onUnseen?: (count: number) => void;
  /** Called after every flush with the number of entries shown. */
  readonly onCount?: (count: number) => void;
  /**
   * Shown while entries have been trimmed and the user reads older ones (scrolled away from the
   * newest): what they were reading may have gone.
   */
  readonly trimNote?: HTMLElement;
}

/** How close to the newest edge (px) still counts as "following" the list. */
const FOLLOW_SLACK = 96;

export class FeedView {
  private readonly nodes = new Map<string, HTMLLIElement>();
  private queue: Entry[] = [];
  private readonly dirty = new Map<string, MessageEntry>();
  private scheduled = false;
  private unseen = 0;
  private reveal = false;
  /** Entries removed to respect the capacity. */
  private trimmed = 0;
  /** Whether the user follows the newest entry (as of the last scroll or flush). */
  private pinned = true;

  constructor(
    private readonly list: HTMLOListElement,
    /** The element that scrolls (the list itself here). */
    private readonly scroller: HTMLElement,
    private readonly options: FeedOptions,
  ) {
    scroller.addEventListener('scroll', () => {
      if (this.following() && this.unseen > 0) {
        this.unseen = 0;
        this.options.onUnseen?.(0);
      }
      this.pinned = this.following();
      this.showTrimNote();
    }, { passive: true });
    // The list shrinks when the on-screen keyboard opens (or a notice appears): stay on the newest.
    if (typeof ResizeObserver !== 'undefined') {
      new ResizeObserver(() => {
        if (this.pinned) this.scrollToNewest();
      }).observe(scroller);
    }
  }

  get size(): number {
    return this.nodes.size;
  }

  /** Queues `entry`; `reveal` scrolls to it even if the user had scrolled away (own messages). */
  add(entry: Entry, reveal = false): void {
    if (reveal) this.reveal = true;
    this.queue.push(entry);
    // Never queue more than the list can show: the rest would be dropped at flush anyway (and
    // counts as trimmed, like entries the list drops once shown).
    if (this.queue.length > this.options.capacity * 2) {
      this.trimmed += this.queue.length - this.options.capacity;
      this.queue = this.queue.slice(-this.options.capacity);
    }
    this.schedule();
  }

  /** Takes `entry` out of the list (queued or shown). */
  remove(entry: MessageEntry): void {
    this.queue = this.queue.filter((e) => e.key !== entry.key);
    this.dirty.delete(entry.key);
    const node = this.nodes.get(entry.key);
    if (node) {
      node.remove();
      this.nodes.delete(entry.key);
      this.options.onCount?.(this.nodes.size);
    }
  }

  update(entry: MessageEntry): void {
    this.dirty.set(entry.key, entry);
    this.schedule();
  }

  private scrollToNewest(): void {
    this.scroller.scrollTop = this.options.newestFirst ? 0 : this.scroller.scrollHeight;
  }

  /** Scrolls to the newest entry. */
  jumpToNewest(): void {
    this.scrollToNewest();
    this.pinned = true;
    this.unseen = 0;
    this.options.onUnseen?.(0);
  }

  private following(): boolean {
    const s = this.scroller;
    return this.options.newestFirst
      ? s.scrollTop <= FOLLOW_SLACK
      : s.scrollHeight - s.scrollTop - s.clientHeight <= FOLLOW_SLACK;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // rAF pauses in background tabs; the timeout makes sure a hidden tab still catches up.
    let done = false;
    const run = (): void => {
      if (done) return;
      done = true;
      this.flush();
    };
    requestAnimationFrame(run);
    setTimeout(run, 100);
  }

  /** Writes queued work to the DOM now. */
  flush(): void {
    this.scheduled = false;
    const follow = this.reveal || this.following();
    this.reveal = false;
    const { capacity, newestFirst, view } = this.options;
    const added = this.queue.length > capacity ? this.queue.slice(-capacity) : this.queue;
    this.trimmed += this.queue.length - added.length; // a burst larger than the list: never shown
    this.queue = [];
    if (added.length > 0) {
      const fragment = document.createDocumentFragment();
      const ordered = newestFirst ? [...added].reverse() : added;
      for (const entry of ordered) {
        const node = renderEntry(entry, view);
        this.nodes.set(entry.key, node);
        fragment.append(node);
      }
      if (newestFirst) this.list.prepend(fragment);
      else this.list.append(fragment);
      // Trim the oldest beyond capacity.
      let excess = this.nodes.size - capacity;
      while (excess > 0) {
        const oldest = newestFirst ? this.list.lastElementChild : this.list.firstElementChild;
        if (!(oldest instanceof HTMLLIElement)) break;
        const key = oldest.dataset['key'];
        if (key !== undefined) this.nodes.delete(key);
        oldest.remove();
        this.trimmed += 1;
        excess -= 1;
      }
    }
    for (const [key, entry] of this.dirty) {
      const node = this.nodes.get(key);
      if (node) updateMessage(node, entry, view);
    }
    this.dirty.clear();
    if (added.length > 0) {
      if (follow) {
        this.scrollToNewest();
        this.pinned = true;
        if (this.unseen > 0) {
          this.unseen = 0;
          this.options.onUnseen?.(0);
        }
      } else {
        this.unseen += added.length;
        this.options.onUnseen?.(this.unseen);
      }
    }
    this.options.onCount?.(this.nodes.size);
    this.showTrimNote();
  }

  private showTrimNote(): void {
    const note = this.options.trimNote;
    if (note) note.hidden = this.trimmed === 0 || this.following();
  }
}
