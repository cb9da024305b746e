import { describe, it, expect } from 'vitest';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, parseTimestamp } from '../../../../workers/decode/index.js';
import type { DecodeContext } from '../../../../workers/decode/index.js';
import { checkTimestamp, epochNumberToMs, epochStringToMs, rfc3339ToMs } from '../../../../workers/decode/timestamp.js';
import { CTX, DEFAULT_LIMITS, NOW, decode, oneReject, onePoint } from './collect.js';

const T0 = Date.UTC(2024, 0, 15, 10, 30); // 1705314600000
/** A clock far enough ahead that only the fixed limits apply. */
const FAR: DecodeContext = { kafkaTimestampMs: NOW, nowMs: NOW, maxFutureMs: 1e15, limits: DEFAULT_LIMITS };

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

  it('switches unit exactly at 1e11 (ms), 1e14 (µs) and 1e17 (ns)', () => {
    expect(epochNumberToMs(99_999_999_999)).toBe(99_999_999_999_000);
    expect(epochNumberToMs(1e11)).toBe(1e11);
    expect(epochNumberToMs(1e14 - 1)).toBe(1e14 - 1);
    expect(epochNumberToMs(1e14)).toBe(1e11);
    expect(epochNumberToMs(1e17 - 16)).toBe(99_999_999_999_999); // the float64 just below 1e17
    expect(epochNumberToMs(1e17)).toBe(1e11);
  });

  it('gives NaN for NaN and infinities, and floors negative seconds', () => {
    expect(epochNumberToMs(Number.NaN)).toBeNaN();
    expect(epochNumberToMs(Infinity)).toBeNaN();
    expect(epochNumberToMs(-Infinity)).toBeNaN();
    expect(epochNumberToMs(-1.5)).toBe(-1500);
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

  it('switches unit by digit count exactly where numbers switch by magnitude', () => {
    const cases: [string, number][] = [
      ['99999999999', 99_999_999_999_000], // 11 digits: seconds
      ['100000000000', 1e11], // 12: milliseconds
      ['99999999999999', 99_999_999_999_999], // 14: milliseconds
      ['100000000000000', 1e11], // 15: microseconds
      ['100000000000000000', 1e11], // 18: nanoseconds
    ];
    for (const [s, want] of cases) {
      expect(epochStringToMs(s, 0, s.length, false), s).toBe(want);
      expect(epochNumberToMs(Number(s)), s).toBe(want);
    }
    // 17 digits: microseconds (as a float64 this string would round up to 1e17, nanoseconds).
    expect(epochStringToMs('99999999999999999', 0, 17, false)).toBe(99_999_999_999_999);
  });

  it('ignores leading zeros when choosing the unit', () => {
    expect(epochStringToMs('0001705314600', 0, 13, false)).toBe(T0);
    expect(epochStringToMs('-0001', 0, 5, false)).toBe(-1000);
    expect(epochStringToMs('000', 0, 3, false)).toBe(0);
  });

  it('reads up to three fraction digits when allowed, and only s[start, end)', () => {
    expect(epochStringToMs('1705314600.123456', 0, 17, true)).toBe(T0 + 123);
    expect(epochStringToMs('1705314600.5', 0, 12, true)).toBe(T0 + 500);
    expect(epochStringToMs('1705314600.5', 0, 12, false)).toBeNaN();
    expect(epochStringToMs('m v=1 1705314600 ', 6, 16, false)).toBe(T0);
  });

  it('gives NaN for anything but epoch digits', () => {
    for (const s of ['', '-', '.5', '-.5', '1705314600.', '1705314600.5x', '1705314600,5', '17053146OO', '+1705314600', '1e9']) {
      expect(epochStringToMs(s, 0, s.length, true), s).toBeNaN();
    }
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

  it('accepts the largest value of each field, 29 February in leap years and a leap second', () => {
    expect(rfc3339ToMs('2024-12-31T23:59:59Z')).toBe(Date.UTC(2024, 11, 31, 23, 59, 59));
    expect(rfc3339ToMs('2024-01-31T00:00:00Z')).toBe(Date.UTC(2024, 0, 31));
    expect(rfc3339ToMs('2024-02-29T00:00:00Z')).toBe(Date.UTC(2024, 1, 29));
    expect(rfc3339ToMs('2000-02-29T00:00:00Z')).toBe(Date.UTC(2000, 1, 29)); // divisible by 400
    expect(rfc3339ToMs('2016-12-31T23:59:60Z')).toBe(Date.UTC(2017, 0, 1)); // rolls into the next minute
  });

  it('reads offsets from -23:59 to +23:59, including +00:00', () => {
    expect(rfc3339ToMs('2024-01-15T10:30:00+00:00')).toBe(T0);
    expect(rfc3339ToMs('2024-01-15T10:30:00-00:00')).toBe(T0);
    expect(rfc3339ToMs('2024-01-16T10:29:00+23:59')).toBe(T0);
    expect(rfc3339ToMs('2024-01-14T10:31:00-23:59')).toBe(T0);
    expect(rfc3339ToMs('2024-01-14T10:31:00-2359')).toBe(T0);
  });

  it('gives NaN for a non-digit, an out-of-range value or a wrong separator in any field', () => {
    const bad = [
      'x024-01-15T10:30:00Z', // year
      '2O24-01-15T10:30:00Z',
      '2024-00-15T10:30:00Z', // month
      '2024-13-15T10:30:00Z',
      '2024-1x-15T10:30:00Z',
      '2024-01-00T10:30:00Z', // day
      '2024-01-32T10:30:00Z',
      '2024-04-31T10:30:00Z',
      '2100-02-29T00:00:00Z', // divisible by 100, not by 400
      '2024-01-x5T10:30:00Z',
      '2024-01-15T1/:30:00Z', // hour, with the characters either side of 0-9
      '2024-01-15T0A:30:00Z',
      '2024-01-15T1::30:00Z',
      '2024-01-15T24:30:00Z',
      '2024-01-15T10:x0:00Z', // minute
      '2024-01-15T10:60:00Z',
      '2024-01-15T10:30:x0Z', // second
      '2024-01-15T10:30:0xZ',
      '2024-01-15T10:30:61Z',
      '2024/01-15T10:30:00Z', // separators
      '2024-01/15T10:30:00Z',
      '2024-01-15X10:30:00Z',
      '2024-01-15T10-30:00Z',
      '2024-01-15T10:30-00Z',
      '2024-01-15T10:30:00X01:00', // offset
      '2024-01-15T10:30:00+x1:00',
      '2024-01-15T10:30:00+24:00',
      '2024-01-15T10:30:00+01:x0',
      '2024-01-15T10:30:00+01:60',
      '2024-01-15T10:30:00+01',
      '2024-01-15T10:30:00Zx', // trailing
      '2024-01-15T10:30:00.5x',
      '2024-01-15T10:30:0', // too short
    ];
    for (const s of bad) expect(rfc3339ToMs(s), s).toBeNaN();
  });

  it('rejects values that are neither numbers nor strings, and NaN and infinities', () => {
    expect(reason(true)).toBe('expected an epoch number or an RFC 3339 string, got the boolean true');
    expect(reason({})).toBe('expected an epoch number or an RFC 3339 string, got an object');
    expect(reason(Number.NaN)).toBe('expected an epoch number or an RFC 3339 string, got the number NaN');
    expect(reason(Infinity)).toBe('expected an epoch number or an RFC 3339 string, got the number Infinity');
  });

  it('rejects strings that are neither epoch digits nor RFC 3339, quoting them', () => {
    for (const s of ['', '-', '.5', '1705314600.', '1705314600,5', '2024-01-15T10:30:0xZ']) {
      expect(reason(s), s).toBe(`expected an RFC 3339 date-time (like 2024-01-15T10:30:00Z) or epoch digits, got ${JSON.stringify(s)}`);
    }
  });
});

describe('accepted range', () => {
  it('rejects 1970 (a unit mistake or a zero default)', () => {
    expect(reason(0)).toBe('timestamp 0 (1970-01-01T00:00:00.000Z) is before 2000-01-01T00:00:00Z');
    expect(reason('1970-01-01T00:00:00Z')).toBe('timestamp "1970-01-01T00:00:00Z" (1970-01-01T00:00:00.000Z) is before 2000-01-01T00:00:00Z');
    expect(reason(86_400)).toBe('timestamp 86400 (1970-01-02T00:00:00.000Z) is before 2000-01-01T00:00:00Z');
  });

  it('reads year 0000 as a well-formed date and rejects it for its range, not its form', () => {
    expect(reason('0000-01-01T00:00:00Z')).toBe('timestamp "0000-01-01T00:00:00Z" (0000-01-01T00:00:00.000Z) is before 2000-01-01T00:00:00Z');
    expect(reason('0099-12-31T23:59:59Z')).toBe('timestamp "0099-12-31T23:59:59Z" (0099-12-31T23:59:59.000Z) is before 2000-01-01T00:00:00Z');
  });

  it('names the date while Date can show it (±8.64e15 ms), and only the value beyond', () => {
    const after = 'is after 2105-12-31, the last day ClickHouse can store';
    expect(checkTimestamp(8.64e15, FAR, 'x')).toBe(`x (+275760-09-13T00:00:00.000Z) ${after}`);
    expect(checkTimestamp(8.64e15 + 1, FAR, 'x')).toBe(`x ${after}`);
    expect(checkTimestamp(-8.64e15, FAR, 'x')).toBe('x (-271821-04-20T00:00:00.000Z) is before 2000-01-01T00:00:00Z');
    expect(checkTimestamp(-8.64e15 - 1, FAR, 'x')).toBe('x is before 2000-01-01T00:00:00Z');
    expect(checkTimestamp(Number.NaN, FAR, 'x')).toBe('x is before 2000-01-01T00:00:00Z');
    expect(reason(1e25, FAR)).toBe(`timestamp 1e+25 ${after}`);
    expect(reason('99999999999999999999999', FAR)).toBe(`timestamp "99999999999999999999999" ${after}`);
  });

  it('accepts 2000-01-01T00:00:00Z exactly and rejects the millisecond before', () => {
    expect(ms('2000-01-01T00:00:00Z')).toBe(MIN_TIMESTAMP_MS);
    expect(reason('1999-12-31T23:59:59.999Z')).toContain('before 2000');
  });

  it('rejects year 3000 and anything after 2105-12-31 even when the clock allows it', () => {
    expect(reason('3000-01-01T00:00:00Z')).toBe(
      'timestamp "3000-01-01T00:00:00Z" (3000-01-01T00:00:00.000Z) is after 2105-12-31, the last day ClickHouse can store',
    );
    expect(reason('3000-01-01T00:00:00Z', FAR)).toContain('after 2105-12-31');
    expect(ms('2105-12-31T23:59:59.999Z', FAR)).toBe(MAX_TIMESTAMP_MS);
    expect(reason('2106-01-01T00:00:00Z', FAR)).toBe(
      'timestamp "2106-01-01T00:00:00Z" (2106-01-01T00:00:00.000Z) is after 2105-12-31, the last day ClickHouse can store',
    );
  });

  it('rejects points more than maxFutureMs after now, and accepts exactly maxFutureMs', () => {
    expect(ms(NOW + CTX.maxFutureMs)).toBe(NOW + CTX.maxFutureMs);
    expect(reason(NOW + CTX.maxFutureMs + 1)).toBe(
      'timestamp 1705315200001 (2024-01-15T10:40:00.001Z) is more than 600000 ms after now (2024-01-15T10:30:00.000Z)',
    );
  });

  it('uses the Kafka record timestamp when there is none, and range-checks it too', () => {
    expect(ms(undefined)).toBe(CTX.kafkaTimestampMs);
    expect(ms(null)).toBe(CTX.kafkaTimestampMs);
    expect(reason(undefined, { ...CTX, kafkaTimestampMs: -1 })).toBe(
      'Kafka record timestamp -1 (1969-12-31T23:59:59.999Z) is before 2000-01-01T00:00:00Z',
    );
    expect(ms(undefined, { ...CTX, kafkaTimestampMs: T0 + 0.75 })).toBe(T0); // floored to an integer ms
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
