/**
 * Where the page finds the server: both URLs are relative to the page's own directory, so the UI
 * works on any host and port and behind a proxy that mounts it under a path prefix.
 */

export interface ResumePoint {
  /** Highest seq seen (message or ack). */
  readonly since: number;
  /** The epoch `since` belongs to. */
  readonly epoch: string;
}

/**
 * The WebSocket URL for the page at `pageHref`: `ws/events` next to the page, `wss:` under
 * `https:`, with `batch=1` and, when resuming, `since` and `epoch`; `last` asks for that many of
 * the newest broadcasts (a fresh connection's screenful of history).
 */
export function socketUrl(pageHref: string, resume: ResumePoint | null = null, last: number | null = null): string {
  const url = new URL('ws/events', pageHref);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.search = '';
  if (resume) {
    url.searchParams.set('since', String(resume.since));
    url.searchParams.set('epoch', resume.epoch);
  }
  if (last !== null && Number.isSafeInteger(last) && last >= 0) url.searchParams.set('last', String(last));
  url.searchParams.set('batch', '1');
  return url.toString();
}

/** The status endpoint next to the page (`/api/status`: counters for the throughput sparkline). */
export function statusUrl(pageHref: string): string {
  const url = new URL('api/status', pageHref);
  url.hash = '';
  url.search = '';
  return url.toString();
}

/** Reads `messages_in` from a `GET api/status` body; null when it is not there. */
export function messagesInFromStatus(body: unknown): number | null {
  if (typeof body !== 'object' || body === null) return null;
  const n = (body as Record<string, unknown>)['messages_in'];
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : null;
}

/** The health endpoint next to the page. */
export function healthUrl(pageHref: string): string {
  const url = new URL('health', pageHref);
  url.hash = '';
  url.search = '';
  return url.toString();
}

/** Reads the connection count from a `GET health` body; null when it is not there. */
export function connectionsFromHealth(body: unknown): number | null {
  if (typeof body !== 'object' || body === null) return null;
  const n = (body as Record<string, unknown>)['connections'];
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : null;
}
