import { describe, expect, it } from 'vitest';
import {
  decodeEvent,
  decodeFrame,
  describeClose,
  describeError,
  encodePublish,
  parseTimestamp,
  utf8Length,
} from '../src/core/protocol';
import { T0, ack, batch, frame, message, welcome } from './frames';

describe('decodeFrame', () => {
  it('decodes a welcome with its limits', () => {
    const { batch: isBatch, events } = decodeFrame(welcome());
    expect(isBatch).toBe(false);
    expect(events).toEqual([
      {
        type: 'welcome',
        clientId: 'me0000000001',
        seq: 10,
        epoch: 'ep1',
        connections: 2,
        server: 'trio-broadcast/0.1.0',
        batch: true,
        limits: { maxMessageBytes: 1000, publishRate: 1, publishBurst: 1, historySize: 1000, historyTtl: 300 },
      },
    ]);
  });

  it('reads null limits as "no limit"', () => {
    const [event] = decodeFrame(welcome({ limits: { max_message_bytes: null, publish_rate: null } })).events;
    expect(event).toMatchObject({ type: 'welcome', limits: { maxMessageBytes: null, publishRate: null } });
  });

  it('decodes a message with its server time', () => {
    const [event] = decodeFrame(frame(message(42, 'hello', 'abc', '2026-11-25T10:00:00.123456+00:00'))).events;
    expect(event).toEqual({
      type: 'message',
      seq: 42,
      message: 'hello',
      timestamp: '2026-11-25T10:00:00.123456+00:00',
      time: T0 + 123.456,
      sender: 'abc',
    });
  });

  it('decodes an ack with and without an id', () => {
    expect(decodeFrame(frame(ack(7, 'c-1'))).events[0]).toMatchObject({ type: 'ack', seq: 7, id: 'c-1', time: T0 });
    expect(decodeFrame(frame(ack(8, null))).events[0]).toMatchObject({ type: 'ack', seq: 8, id: null });
  });

  it('decodes complete and incomplete recovered frames', () => {
    expect(decodeFrame('{"type":"recovered","complete":true,"since":37,"replayed":5,"seq":42}').events[0]).toEqual({
      type: 'recovered', complete: true, reason: null, since: 37, firstSeq: null, replayed: 5, seq: 42,
    });
    const [gap] = decodeFrame(
      '{"type":"recovered","complete":false,"reason":"history_expired","since":3,"first_seq":12,"replayed":31,"seq":42}',
    ).events;
    expect(gap).toEqual({
      type: 'recovered', complete: false, reason: 'history_expired', since: 3, firstSeq: 12, replayed: 31, seq: 42,
    });
  });

  it('decodes error frames', () => {
    expect(decodeFrame('{"type":"error","code":"rate_limited","detail":"slow down","id":"c-3"}').events[0]).toEqual({
      type: 'error', code: 'rate_limited', detail: 'slow down', id: 'c-3',
    });
    expect(decodeFrame('{"type":"error"}').events[0]).toEqual({ type: 'error', code: 'unknown_error', detail: null, id: null });
  });

  it('unpacks a batch in order', () => {
    const decoded = decodeFrame(batch(message(1, 'a'), ack(2, 'x'), message(3, 'c')));
    expect(decoded.batch).toBe(true);
    expect(decoded.events.map((e) => [e.type, 'seq' in e ? e.seq : null])).toEqual([
      ['message', 1],
      ['ack', 2],
      ['message', 3],
    ]);
  });

  it('accepts an empty batch and refuses a nested one', () => {
    expect(decodeFrame(batch()).events).toEqual([]);
    expect(decodeFrame(batch({ type: 'batch', events: [] })).events[0]).toMatchObject({ type: 'invalid' });
    expect(decodeFrame('{"type":"batch"}').events[0]).toMatchObject({ type: 'invalid' });
  });

  it('ignores unknown fields and reports unknown types', () => {
    const [m] = decodeFrame(frame({ ...message(5, 'x'), shiny: true })).events;
    expect(m).toMatchObject({ type: 'message', seq: 5 });
    expect(decodeFrame('{"type":"presence","who":1}').events[0]).toEqual({ type: 'unknown', rawType: 'presence' });
  });

  it('never throws on garbage', () => {
    for (const text of ['', 'nope', '[]', '42', 'null', '{"type":"message"}', '{"type":"welcome","seq":"1"}']) {
      const { events } = decodeFrame(text);
      expect(events).toHaveLength(1);
      expect(['invalid', 'unknown']).toContain(events[0]?.type);
    }
  });

  it('rejects non-integer sequence numbers', () => {
    expect(decodeEvent({ type: 'ack', seq: 1.5 })).toMatchObject({ type: 'invalid' });
  });
});

describe('parseTimestamp', () => {
  it.each([
    ['2026-11-25T10:00:00.123456+00:00', T0 + 123.456],
    ['2026-11-25T10:00:00+00:00', T0],
    ['2026-11-25T10:00:00Z', T0],
    ['2026-11-25T10:00:00.5z', T0 + 500],
    ['2026-11-25T12:30:00.000+02:30', T0],
    ['2026-11-25T08:00:00-0200', T0],
    ['2026-11-25T10:00:00', T0],
  ])('%s', (text, expected) => {
    expect(parseTimestamp(text)).toBeCloseTo(expected, 6);
  });

  it('returns null for what is not a timestamp', () => {
    expect(parseTimestamp('')).toBeNull();
    expect(parseTimestamp('yesterday')).toBeNull();
    expect(parseTimestamp('2026-11-25')).toBeNull();
  });
});

describe('encodePublish', () => {
  it('builds the only client frame', () => {
    expect(JSON.parse(encodePublish('hi', 'c-1'))).toEqual({ message: 'hi', id: 'c-1' });
    expect(JSON.parse(encodePublish(''))).toEqual({ message: '' });
  });

  it('escapes what JSON must escape', () => {
    const text = 'quote " backslash \\ newline \n emoji 🎉';
    expect(JSON.parse(encodePublish(text, 'x'))).toEqual({ message: text, id: 'x' });
  });

  it('measures frames in UTF-8 bytes', () => {
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('🎉')).toBe(4);
  });
});

describe('describeClose and describeError', () => {
  it.each([
    [1001, 'warning', /restarting/],
    [1006, 'warning', /dropped/],
    [1008, 'error', /rate limit/],
    [1009, 'error', /not be resent/],
    [1011, 'error', /internal/],
    [1012, 'warning', /history was lost/],
    [1013, 'warning', /connection limit/],
    [4008, 'warning', /slow consumer/],
    [4999, 'warning', /4999/],
  ] as const)('close %i', (code, severity, detail) => {
    const info = describeClose(code);
    expect(info.severity).toBe(severity);
    expect(info.detail).toMatch(detail);
  });

  it('does not repeat the rate-limit close reason, which says the same thing', () => {
    const detail = describeClose(1008, 'publishing over the rate limit').detail;
    expect(detail.match(/rate limit/g)).toHaveLength(1);
  });

  it('includes the close reason when there is one', () => {
    expect(describeClose(1013, 'max_connections').detail).toContain('(max_connections)');
  });

  it('explains rate limiting with the connection limits', () => {
    const text = describeError('rate_limited', null, {
      maxMessageBytes: null, publishRate: 1, publishBurst: 1, historySize: null, historyTtl: null,
    });
    expect(text).toMatch(/not broadcast/);
    expect(text).toMatch(/1 message\/s \(bursts of 1\)/);
    expect(describeError('rate_limited', null, null)).toBe('Rate limited: that message was not broadcast.');
  });

  it('says a publish the backplane did not confirm may still appear', () => {
    expect(describeError('backplane_unavailable', null, null)).toMatch(/not confirmed/);
  });

  it('explains every documented error code', () => {
    for (const code of ['invalid_json', 'not_an_object', 'invalid_message', 'invalid_id', 'unknown_field', 'binary_not_supported', 'backplane_unavailable', 'new_code']) {
      expect(describeError(code, 'd', null)).not.toBe('');
    }
  });
});
