/**
 * Own messages between "sent" and "the server said so": each publish carries an `id`, and the
 * `ack` with that id confirms it. Errors carry no id; they answer the oldest unanswered publish.
 *
 * Pure and synchronous; generic over what the caller keeps with each message.
 */
import { MAX_ID_LENGTH } from './protocol';

export interface Pending<T> {
  /** The id sent with the publish (echoed in the ack). */
  readonly id: string;
  readonly text: string;
  /** Which connection (a counter the caller keeps) the publish went out on. */
  readonly connection: number;
  readonly value: T;
}

export class PendingOutbox<T> {
  private counter = 0;
  /** Unanswered publishes by id; Map iteration order is send order. */
  private readonly byId = new Map<string, Pending<T>>();

  /** `prefix` makes ids unique per page, so two tabs never confuse each other's acks in logs. */
  constructor(private readonly prefix: string = randomPrefix()) {
    if (prefix.length > MAX_ID_LENGTH - 12) throw new RangeError('id prefix too long');
  }

  get size(): number {
    return this.byId.size;
  }

  /** Registers a publish and returns it, with a fresh id to send. */
  add(text: string, connection: number, value: T): Pending<T> {
    this.counter += 1;
    const entry = { id: `${this.prefix}-${this.counter}`, text, connection, value };
    this.byId.set(entry.id, entry);
    return entry;
  }

  /** Resolves the publish an ack names; undefined when the id is unknown (or already resolved). */
  ack(id: string): Pending<T> | undefined {
    const entry = this.byId.get(id);
    if (entry) this.byId.delete(id);
    return entry;
  }

  /** Resolves the oldest unanswered publish sent on `connection` (what an error frame refers to). */
  oldest(connection: number): Pending<T> | undefined {
    for (const entry of this.byId.values()) {
      if (entry.connection === connection) {
        this.byId.delete(entry.id);
        return entry;
      }
    }
    return undefined;
  }

  /** Resolves the largest unanswered publish sent on `connection` (the likely cause of a 1009). */
  largest(connection: number): Pending<T> | undefined {
    let found: Pending<T> | undefined;
    for (const entry of this.byId.values()) {
      if (entry.connection === connection && (!found || entry.text.length > found.text.length)) {
        found = entry;
      }
    }
    if (found) this.byId.delete(found.id);
    return found;
  }

  /**
   * Resolves the oldest publish from a connection before `connection` whose text is `text`: a
   * message of ours that a resume replayed (replays carry no id).
   */
  replayed(text: string, connection: number): Pending<T> | undefined {
    for (const entry of this.byId.values()) {
      if (entry.connection < connection && entry.text === text) {
        this.byId.delete(entry.id);
        return entry;
      }
    }
    return undefined;
  }

  /** Resolves and returns every publish sent on a connection before `connection`, oldest first. */
  takeOlderThan(connection: number): Pending<T>[] {
    const out: Pending<T>[] = [];
    for (const entry of this.byId.values()) {
      if (entry.connection < connection) out.push(entry);
    }
    for (const entry of out) this.byId.delete(entry.id);
    return out;
  }
}

function randomPrefix(): string {
  return `p${Math.floor(Math.random() * 36 ** 6).toString(36).padStart(6, '0')}`;
}
