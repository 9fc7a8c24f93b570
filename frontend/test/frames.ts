/** Builders for server frames, as the wire carries them (snake_case JSON text). */

export const LIMITS = {
  max_message_bytes: 1000,
  publish_rate: 1.0,
  publish_burst: 1,
  outbox_messages: 256,
  outbox_bytes: 1048576,
  history_size: 1000,
  history_ttl: 300.0,
  ping_interval: 20.0,
  idle_timeout: 60.0,
};

export function welcome(over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    type: 'welcome',
    client_id: 'me0000000001',
    seq: 10,
    epoch: 'ep1',
    connections: 2,
    server: 'trio-broadcast/0.1.0',
    batch: true,
    limits: LIMITS,
    ...over,
  });
}

export function message(seq: number, text: string, sender = 'other0000001', ts = '2026-11-25T10:00:00.000000+00:00'): Record<string, unknown> {
  return { type: 'message', seq, message: text, timestamp: ts, sender };
}

export function ack(seq: number, id: string | null, ts = '2026-11-25T10:00:00.000000+00:00'): Record<string, unknown> {
  return id === null ? { type: 'ack', seq, timestamp: ts } : { type: 'ack', seq, timestamp: ts, id };
}

export function frame(event: Record<string, unknown>): string {
  return JSON.stringify(event);
}

export function batch(...events: Record<string, unknown>[]): string {
  return JSON.stringify({ type: 'batch', events });
}

/** 2026-11-25T10:00:00Z in ms. */
export const T0 = Date.UTC(2026, 10, 25, 10, 0, 0);
