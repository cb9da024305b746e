import { describe, it, expect } from 'vitest';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, parseTimestamp } from '../../../../workers/decode/index.js';
import type { DecodeContext } from '../../../../workers/decode/index.js';
import { CTX, NOW, decode, oneReject, onePoint } from './collect.js';

const T0 = Date.UTC(2024, 0, 15, 10, 30); // 1705314600000
/** A clock far enough ahead that only the fixed limits apply. */
const FAR: DecodeContext = { kafkaTimestampMs: NOW, nowMs: NOW, maxFutureMs: 1e15 };

function ms(value: unknown, ctx: DecodeContext = CTX): number {
  const r = parseTimestamp(value, ctx);
  if (typeof r === 'string') throw new Error(`expected a timestamp, got the reason: ${r}`);
  return r;
}

function reason(value: unknown, ctx: DecodeContext = CTX): string {
  const r = parseTimestamp(value, ctx);
  if (typeof r !== 'string') throw new Error(`expected a reason, got ${String(r)}`);
  return r;
}

describe('epoch numbers, unit by magnitude', () => {
  it('reads seconds, fractional seconds, milliseconds, microseconds and nanoseconds', () => {
    expect(ms(1705314600)).toBe(T0);
    expect(ms(1705314600.123)).toBe(T0 + 123);
    expect(ms(1705314600.5)).toBe(T0 + 500);
    expect(ms(1705314600123)).toBe(T0 + 123);
    expect(ms(1705314600123.9)).toBe(T0 + 123); // sub-ms floored
    expect(ms(1705314600123456)).toBe(T0 + 123);
    expect(ms(Number('1705314600123456789'))).toBe(T0 + 123); // as JSON.parse reads it
  });

  it('does not lose a millisecond to float noise in nanosecond numbers', () => {
    // 1705314600002000000 / 1e6 is 1705314600001.9998 in float64; flooring that gives ms ...001.
    expect(Math.floor(1705314600002000000 / 1e6)).toBe(T0 + 1);
    expect(ms(1705314600002000000)).toBe(T0 + 2);
  });
});

describe('epoch digit strings', () => {
  it('reads each unit from digit strings', () => {
    expect(ms('1705314600')).toBe(T0);
    expect(ms('1705314600.25')).toBe(T0 + 250);
    expect(ms('1705314600123')).toBe(T0 + 123);
    expect(ms('1705314600123456')).toBe(T0 + 123);
    expect(ms('1705314600123456789')).toBe(T0 + 123);
  });

  it('keeps the exact millisecond of a 19-digit nanosecond string', () => {
    // As a float64 this rounds up to ...124000000 ns; the digit string must still give ms 123.
    expect(Math.floor(Number('1705314600123999999') / 1e6)).toBe(T0 + 124);
    expect(ms('1705314600123999999')).toBe(T0 + 123);
  });
});

describe('RFC 3339 strings', () => {
  it('reads Z, offsets, and fractions of any length', () => {
    expect(ms('2024-01-15T10:30:00Z')).toBe(T0);
    expect(ms('2024-01-15T11:30:00+01:00')).toBe(T0);
    expect(ms('2024-01-15T05:00:00-05:30')).toBe(T0);
    expect(ms('2024-01-15T11:30:00+0100')).toBe(T0);
    expect(ms('2024-01-15T10:30:00.5Z')).toBe(T0 + 500);
    expect(ms('2024-01-15T10:30:00.123456Z')).toBe(T0 + 123);
    expect(ms('2024-01-15T10:30:00.123999999Z')).toBe(T0 + 123);
    expect(ms('2024-01-15T12:30:00.123456789+02:00')).toBe(T0 + 123);
  });

  it('agrees with Date.parse on the forms both accept', () => {
    for (const s of ['2024-01-15T10:30:00Z', '2024-01-15T10:30:00.123+05:45', '2024-02-29T23:59:59.999-08:00']) {
      expect(ms(s, FAR)).toBe(Date.parse(s));
    }
  });

  it('accepts lower-case t and z, a space separator, and no offset as UTC', () => {
    expect(ms('2024-01-15t10:30:00z')).toBe(T0);
    expect(ms('2024-01-15 10:30:00Z')).toBe(T0);
    expect(ms('2024-01-15T10:30:00')).toBe(T0);
  });

  it('rejects loose forms that Date.parse accepts and impossible dates', () => {
    for (const s of ['yesterday', '1/2/2024', 'Jan 15 2024', '2024-01-15', '2024-01-15T10:30Z', '2024-02-30T00:00:00Z', '2023-02-29T00:00:00Z', '2024-01-15T24:00:00Z', '2024-01-15T10:30:00+25:00', '2024-01-15T10:30:00.Z', '2024-01-15T10:30:00Z ']) {
      expect(reason(s), s).toContain('RFC 3339');
    }
    expect(Number.isNaN(Date.parse('1/2/2024'))).toBe(false);
  });

  it('rejects values that are neither numbers nor strings', () => {
    expect(reason(true)).toContain('the boolean true');
    expect(reason({})).toContain('an object');
    expect(reason(Number.NaN)).toContain('NaN');
  });
});

describe('accepted range', () => {
  it('rejects 1970 (a unit mistake or a zero default)', () => {
    expect(reason(0)).toMatch(/timestamp 0 \(1970-01-01T00:00:00.000Z\) is before 2000-01-01/);
    expect(reason('1970-01-01T00:00:00Z')).toContain('before 2000');
    expect(reason(86_400)).toContain('before 2000');
  });

  it('accepts 2000-01-01T00:00:00Z exactly and rejects the millisecond before', () => {
    expect(ms('2000-01-01T00:00:00Z')).toBe(MIN_TIMESTAMP_MS);
    expect(reason('1999-12-31T23:59:59.999Z')).toContain('before 2000');
  });

  it('rejects year 3000 and anything after 2105-12-31 even when the clock allows it', () => {
    expect(reason('3000-01-01T00:00:00Z')).toContain('"3000-01-01T00:00:00Z"');
    expect(reason('3000-01-01T00:00:00Z', FAR)).toContain('after 2105-12-31');
    expect(ms('2105-12-31T23:59:59.999Z', FAR)).toBe(MAX_TIMESTAMP_MS);
    expect(reason('2106-01-01T00:00:00Z', FAR)).toContain('after 2105-12-31');
  });

  it('rejects points more than maxFutureMs after now, and accepts exactly maxFutureMs', () => {
    expect(ms(NOW + CTX.maxFutureMs)).toBe(NOW + CTX.maxFutureMs);
    const r = reason(NOW + CTX.maxFutureMs + 1);
    expect(r).toContain(`${String(CTX.maxFutureMs)} ms after now`);
    expect(r).toContain(String(NOW + CTX.maxFutureMs + 1));
  });

  it('uses the Kafka record timestamp when there is none, and range-checks it too', () => {
    expect(ms(undefined)).toBe(CTX.kafkaTimestampMs);
    expect(ms(null)).toBe(CTX.kafkaTimestampMs);
    expect(reason(undefined, { ...CTX, kafkaTimestampMs: -1 })).toContain('Kafka record timestamp -1');
  });
});

describe('timestamps through decodeMessage', () => {
  it('decodes each unit in a JSON point', () => {
    const cases: [string, number][] = [
      ['1705314600', T0],
      ['1705314600.123', T0 + 123],
      ['1705314600123', T0 + 123],
      ['1705314600123456', T0 + 123],
      ['"1705314600123456789"', T0 + 123],
      ['"2024-01-15T12:30:00.123456+02:00"', T0 + 123],
      ['"2024-01-15T10:30:00.123456789Z"', T0 + 123],
    ];
    for (const [ts, want] of cases) expect(onePoint(`{"name": "m", "value": 1, "timestamp": ${ts}}`).tsMs, ts).toBe(want);
  });

  it('rejects an out-of-range JSON timestamp with the value in the reason', () => {
    const r = oneReject('{"name": "m", "value": 1, "timestamp": "3000-01-01T00:00:00Z"}');
    expect(r.code).toBe('VIGIL_ERR_DECODE_TIMESTAMP');
    expect(r.reason).toContain('3000-01-01T00:00:00Z');
  });

  it('rejects a point without a timestamp when the Kafka timestamp is unusable', () => {
    const { rejects } = decode('{"name": "m", "value": 1}', 'auto', { ...CTX, kafkaTimestampMs: 0 });
    expect(rejects).toEqual([expect.objectContaining({ code: 'VIGIL_ERR_DECODE_TIMESTAMP' })]);
    expect(rejects[0]?.reason).toContain('no "timestamp"');
  });
});
