/**
 * The trio-broadcast wire protocol (v1), as the browser sees it: pure functions, no I/O.
 *
 * `decodeFrame` turns one text frame into zero or more events (a `batch` frame is unpacked in
 * order); `encodePublish` builds the only frame a client sends. Unknown fields are ignored and
 * unknown frame types come back as `{type: "unknown"}`, as docs/protocol.md asks of clients.
 */

/** What the server allows this connection (`null` means "no limit"). */
export interface Limits {
  readonly maxMessageBytes: number | null;
  readonly publishRate: number | null;
  readonly publishBurst: number | null;
  readonly historySize: number | null;
  readonly historyTtl: number | null;
}

/** Always the first frame of a connection. */
export interface Welcome {
  readonly type: 'welcome';
  readonly clientId: string;
  /** The newest broadcast's seq when this connection started (0 before the first). */
  readonly seq: number;
  /** Names the server's history; changes when that history is lost (a restart). */
  readonly epoch: string;
  /** Clients connected, this one included. */
  readonly connections: number | null;
  readonly server: string | null;
  readonly batch: boolean;
  readonly limits: Limits;
}

/** Another client's broadcast (or, during a resume, possibly one of ours from an older connection). */
export interface BroadcastMessage {
  readonly type: 'message';
  readonly seq: number;
  readonly message: string;
  /** The raw ISO 8601 timestamp from the server. */
  readonly timestamp: string;
  /** Server time as milliseconds since the Unix epoch, or null when it does not parse. */
  readonly time: number | null;
  readonly sender: string;
}

/** Our own message was broadcast under `seq`. */
export interface Ack {
  readonly type: 'ack';
  readonly seq: number;
  readonly timestamp: string;
  readonly time: number | null;
  /** The id we sent with the publish, when we sent one. */
  readonly id: string | null;
}

/** End of a resume: whether every broadcast after `since` was delivered. */
export interface Recovered {
  readonly type: 'recovered';
  readonly complete: boolean;
  /** `history_expired`, `epoch_mismatch`, or another reason a newer server may add. */
  readonly reason: string | null;
  readonly since: number | null;
  readonly firstSeq: number | null;
  readonly replayed: number;
  readonly seq: number | null;
}

/** Our last frame was refused; the connection stays open. */
export interface ServerError {
  readonly type: 'error';
  readonly code: string;
  readonly detail: string | null;
  /**
   * The refused publish's `id`, when it had one (so far for `rate_limited`): errors are sent at
   * once and can overtake the acks of earlier publishes.
   */
  readonly id: string | null;
}

/** A frame of a type this client does not know (ignored, but counted). */
export interface Unknown {
  readonly type: 'unknown';
  readonly rawType: string;
}

/** A frame that is not valid JSON or lacks required fields. */
export interface Invalid {
  readonly type: 'invalid';
  readonly problem: string;
}

export type ServerEvent =
  | Welcome
  | BroadcastMessage
  | Ack
  | Recovered
  | ServerError
  | Unknown
  | Invalid;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function int(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : null;
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function str(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * Parses the server's ISO 8601 timestamp (Python's `isoformat()`, microseconds included) into
 * milliseconds since the Unix epoch, keeping sub-millisecond precision. A missing offset means UTC.
 * Returns null for anything else.
 */
export function parseTimestamp(text: string): number | null {
  const m = TIMESTAMP.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const base = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  if (Number.isNaN(base)) return null;
  const fraction = frac ? Number(`0.${frac}`) * 1000 : 0;
  let offsetMinutes = 0;
  if (zone && zone.toUpperCase() !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4)));
  }
  return base + fraction - offsetMinutes * 60_000;
}

function decodeLimits(value: unknown): Limits {
  const o = isObject(value) ? value : {};
  return {
    maxMessageBytes: int(o['max_message_bytes']),
    publishRate: num(o['publish_rate']),
    publishBurst: num(o['publish_burst']),
    historySize: int(o['history_size']),
    historyTtl: num(o['history_ttl']),
  };
}

function invalid(problem: string): Invalid {
  return { type: 'invalid', problem };
}

/** Decodes one already-parsed event object (not a batch). */
export function decodeEvent(o: unknown): ServerEvent {
  if (!isObject(o)) return invalid('event is not a JSON object');
  const type = o['type'];
  switch (type) {
    case 'welcome': {
      const clientId = str(o['client_id']);
      const seq = int(o['seq']);
      const epoch = str(o['epoch']);
      if (clientId === null || seq === null || epoch === null) {
        return invalid('welcome without client_id, seq or epoch');
      }
      return {
        type,
        clientId,
        seq,
        epoch,
        connections: int(o['connections']),
        server: str(o['server']),
        batch: o['batch'] === true,
        limits: decodeLimits(o['limits']),
      };
    }
    case 'message': {
      const seq = int(o['seq']);
      const message = str(o['message']);
      const timestamp = str(o['timestamp']) ?? '';
      const sender = str(o['sender']) ?? '';
      if (seq === null || message === null) return invalid('message without seq or message');
      return { type, seq, message, timestamp, time: parseTimestamp(timestamp), sender };
    }
    case 'ack': {
      const seq = int(o['seq']);
      const timestamp = str(o['timestamp']) ?? '';
      if (seq === null) return invalid('ack without seq');
      return { type, seq, timestamp, time: parseTimestamp(timestamp), id: str(o['id']) };
    }
    case 'recovered':
      return {
        type,
        complete: o['complete'] === true,
        reason: str(o['reason']),
        since: int(o['since']),
        firstSeq: int(o['first_seq']),
        replayed: int(o['replayed']) ?? 0,
        seq: int(o['seq']),
      };
    case 'error':
      return { type, code: str(o['code']) ?? 'unknown_error', detail: str(o['detail']), id: str(o['id']) };
    default:
      return { type: 'unknown', rawType: typeof type === 'string' ? type : String(type) };
  }
}

/** One decoded text frame. */
export interface Frame {
  /** True when the frame was a `batch`. */
  readonly batch: boolean;
  /** Its events, in order (exactly one unless it was a batch). */
  readonly events: ServerEvent[];
}

/**
 * Decodes one text frame into its events, in order: a `batch` frame yields each of its events,
 * any other frame yields exactly one. Never throws.
 */
export function decodeFrame(text: string): Frame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { batch: false, events: [invalid('frame is not valid JSON')] };
  }
  if (isObject(parsed) && parsed['type'] === 'batch') {
    const events = parsed['events'];
    if (!Array.isArray(events)) return { batch: true, events: [invalid('batch without an events array')] };
    // A batch holds ordinary frames; a nested batch is not part of v1.
    return {
      batch: true,
      events: events.map((e) =>
        isObject(e) && e['type'] === 'batch' ? invalid('nested batch') : decodeEvent(e),
      ),
    };
  }
  return { batch: false, events: [decodeEvent(parsed)] };
}

/** Builds the publish frame: `{"message": ..., "id": ...}`. */
export function encodePublish(message: string, id?: string): string {
  return JSON.stringify(id === undefined ? { message } : { message, id });
}

/** Size of a text frame on the wire, in bytes (UTF-8). */
export function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** The most characters an `id` may have (docs/protocol.md). */
export const MAX_ID_LENGTH = 64;

/** How the UI should treat a WebSocket close code. */
export interface CloseInfo {
  /** Short, human text for the status line and notices. */
  readonly title: string;
  /** What happened and what the UI does about it. */
  readonly detail: string;
  /** `error` for something the user should notice, `info` for routine events. */
  readonly severity: 'info' | 'warning' | 'error';
}

/** Explains a close code from docs/protocol.md (plus the browser's 1006 for a lost connection). */
export function describeClose(code: number, reason = ''): CloseInfo {
  const why = reason ? ` (${reason})` : '';
  switch (code) {
    case 1000:
      return {
        title: 'Closed by the server',
        detail: `The server closed the connection normally${why}. Reconnecting.`,
        severity: 'info',
      };
    case 1001:
      return {
        title: 'Server going away',
        detail: 'The server is shutting down or restarting. Reconnecting and resuming.',
        severity: 'warning',
      };
    case 1006:
      return {
        title: 'Connection lost',
        detail: 'The connection dropped without a close frame. Reconnecting and resuming.',
        severity: 'warning',
      };
    case 1008:
      return {
        title: 'Disconnected: publishing too fast',
        // The server's reason says the same thing ("publishing over the rate limit"): not repeated.
        detail: 'The server closed the connection for sustained publishing over its rate limit. Reconnecting.',
        severity: 'error',
      };
    case 1009:
      return {
        title: 'Message too large',
        detail: `The server refused a frame larger than its limit${why}. It will not be resent.`,
        severity: 'error',
      };
    case 1011:
      return {
        title: 'Server error',
        detail: `The server hit an internal error${why}. Reconnecting with backoff.`,
        severity: 'error',
      };
    case 1012:
      return {
        title: 'Server history lost',
        detail: `The server's shared history was lost and started afresh${why}. Reconnecting; messages sent meanwhile may be missing.`,
        severity: 'warning',
      };
    case 1013:
      return {
        title: 'Server full',
        detail: `The server is at its connection limit${why}. Retrying later with backoff.`,
        severity: 'warning',
      };
    case 4008:
      return {
        title: 'Too slow to keep up',
        detail: `This tab fell behind and the server dropped it (slow consumer)${why}. Reconnecting and resuming.`,
        severity: 'warning',
      };
    default:
      return {
        title: `Connection closed (${code})`,
        detail: `The connection closed with code ${code}${why}. Reconnecting.`,
        severity: 'warning',
      };
  }
}

/** Explains an `error` frame's code for a notice. */
export function describeError(code: string, detail: string | null, limits: Limits | null): string {
  switch (code) {
    case 'rate_limited': {
      const rate = limits?.publishRate;
      const burst = limits?.publishBurst;
      const allowance =
        rate != null ? ` The server allows ${rate} message${rate === 1 ? '' : 's'}/s` +
          (burst != null ? ` (bursts of ${burst}).` : '.') : '';
      return `Rate limited: that message was not broadcast.${allowance}`;
    }
    case 'invalid_json':
      return `The server could not parse the frame${detail ? `: ${detail}` : '.'}`;
    case 'not_an_object':
      return 'The server expected a JSON object.';
    case 'invalid_message':
      return 'The server refused the message: it must be a string.';
    case 'invalid_id':
      return 'The server refused the message id (a string of at most 64 characters).';
    case 'unknown_field':
      return `The server refused a field it does not know${detail ? `: ${detail}` : '.'}`;
    case 'binary_not_supported':
      return 'The server only understands text frames.';
    case 'backplane_unavailable':
      return 'The server could not reach its message store: that message was not confirmed. It may still appear once; sending it again may send it twice.';
    default:
      return `The server refused the last frame (${code})${detail ? `: ${detail}` : '.'}`;
  }
}
