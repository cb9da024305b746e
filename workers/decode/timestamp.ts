/**
 * Point timestamps → integer epoch milliseconds.
 *
 * - RFC 3339 / ISO 8601 date-times: `YYYY-MM-DD(T|t| )hh:mm:ss[.fraction][Z|z|±hh:mm|±hhmm]`, any
 *   number of fraction digits (sub-ms floored). No offset means UTC (the pipeline never uses the
 *   host's zone). Parsed by hand: Date.parse also accepts "1/2/2024" and other loose forms.
 * - Epoch numbers or digit strings, unit by magnitude: < 1e11 seconds (fraction allowed), < 1e14
 *   milliseconds, < 1e17 microseconds, otherwise nanoseconds. Digit strings are cut at the ms digit
 *   before conversion, so 19-digit nanoseconds keep their exact millisecond.
 * - Missing (undefined or null): the Kafka record timestamp.
 * - Accepted range: 2000-01-01T00:00:00Z ≤ ts ≤ min(now + maxFuture, 2105-12-31T23:59:59.999Z).
 */
import type { DecodeContext } from './types.js';
import { describe, quote, skipDigits } from './text.js';

/** 2000-01-01T00:00:00Z. Earlier values are unit mistakes or zero defaults, not measurements. */
const GREGORIAN_CYCLE_MS = 146_097 * 86_400_000;

export const MIN_TIMESTAMP_MS = Date.UTC(2000, 0, 1);
/** 2105-12-31T23:59:59.999Z: ClickHouse DateTime ends in February 2106. */
export const MAX_TIMESTAMP_MS = Date.UTC(2106, 0, 1) - 1;

/** Returns integer epoch ms, or a reason (a string) when the value is unusable or out of range. */
export function parseTimestamp(value: unknown, ctx: DecodeContext): number | string {
  if (value === undefined || value === null) {
    const ms = Math.floor(ctx.kafkaTimestampMs);
    return inRange(ms, ctx) ? ms : checkTimestamp(ms, ctx, `Kafka record timestamp ${String(ctx.kafkaTimestampMs)}`);
  }
  if (typeof value === 'number') {
    const ms = epochNumberToMs(value);
    if (Number.isNaN(ms)) return `expected an epoch number or an RFC 3339 string, got ${describe(value)}`;
    return inRange(ms, ctx) ? ms : checkTimestamp(ms, ctx, `timestamp ${String(value)}`);
  }
  if (typeof value === 'string') {
    let ms = epochStringToMs(value, 0, value.length, true);
    if (Number.isNaN(ms)) ms = rfc3339ToMs(value);
    if (Number.isNaN(ms)) {
      return `expected an RFC 3339 date-time (like 2024-01-15T10:30:00Z) or epoch digits, got ${quote(value)}`;
    }
    return inRange(ms, ctx) ? ms : checkTimestamp(ms, ctx, `timestamp ${quote(value)}`);
  }
  return `expected an epoch number or an RFC 3339 string, got ${describe(value)}`;
}

/**
 * The accepted range, checked before any reason is built: callers make the `shown` text of
 * checkTimestamp only for a value out of it (built for every point, it was 2–3 % of a worker's
 * decoding). NaN is out of range.
 */
export function inRange(ms: number, ctx: DecodeContext): boolean {
  return ms >= MIN_TIMESTAMP_MS && ms <= MAX_TIMESTAMP_MS && ms <= ctx.nowMs + ctx.maxFutureMs;
}

/** Range check shared by every format; `shown` names the original value in the reason. */
export function checkTimestamp(ms: number, ctx: DecodeContext, shown: string): number | string {
  if (!(ms >= MIN_TIMESTAMP_MS)) return `${shown}${asIso(ms)} is before 2000-01-01T00:00:00Z`;
  if (ms > MAX_TIMESTAMP_MS) return `${shown}${asIso(ms)} is after 2105-12-31, the last day ClickHouse can store`;
  if (ms > ctx.nowMs + ctx.maxFutureMs) {
    return `${shown}${asIso(ms)} is more than ${String(ctx.maxFutureMs)} ms after now (${new Date(ctx.nowMs).toISOString()})`;
  }
  return ms;
}

function asIso(ms: number): string {
  // Date covers ±8.64e15 ms; beyond that toISOString would throw.
  return Math.abs(ms) <= 8.64e15 ? ` (${new Date(ms).toISOString()})` : '';
}

/** Epoch number in s/ms/µs/ns (by magnitude) → integer ms; NaN when not finite. */
export function epochNumberToMs(value: number): number {
  if (!Number.isFinite(value)) return NaN;
  // Round to whole microseconds first: float noise (1705314600.123 * 1e6 = ...122999.99) must not
  // cost a millisecond when flooring.
  let us: number;
  if (value < 1e11) us = Math.round(value * 1e6);
  else if (value < 1e14) us = Math.round(value * 1e3);
  else if (value < 1e17) us = Math.round(value);
  else us = Math.round(value / 1e3);
  return Math.floor(us / 1e3);
}

/**
 * s[start, end) as epoch digits (`-`? digits, and `.digits` when allowFraction) → integer ms, unit
 * by magnitude; NaN when it is not epoch digits. Works on the digit string so that the millisecond
 * of a 19-digit nanosecond value is exact.
 */
export function epochStringToMs(s: string, start: number, end: number, allowFraction: boolean): number {
  let i = start;
  const negative = i < end && s.charCodeAt(i) === 0x2d;
  if (negative) i++;
  const digitsStart = i;
  while (i < end && s.charCodeAt(i) === 0x30) i++; // leading zeros do not change the magnitude
  const sigStart = i;
  const intEnd = skipDigits(s, i, end);
  if (intEnd === digitsStart) return NaN;
  let fracStart = intEnd;
  let fracEnd = intEnd;
  if (intEnd < end) {
    if (!allowFraction || s.charCodeAt(intEnd) !== 0x2e) return NaN;
    fracStart = intEnd + 1;
    fracEnd = skipDigits(s, fracStart, end);
    if (fracEnd === fracStart || fracEnd !== end) return NaN;
  }
  const n = intEnd - sigStart;
  let ms: number;
  if (n <= 11) {
    const seconds = n === 0 ? 0 : Number(s.slice(sigStart, intEnd));
    const millis = fracEnd > fracStart ? Number(s.slice(fracStart, Math.min(fracEnd, fracStart + 3)).padEnd(3, '0')) : 0;
    ms = seconds * 1000 + millis;
  } else if (n <= 14) ms = Number(s.slice(sigStart, intEnd));
  else if (n <= 17) ms = Number(s.slice(sigStart, intEnd - 3));
  else ms = Number(s.slice(sigStart, intEnd - 6));
  return negative ? -ms : ms;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Two or four ASCII digits at s[i] as a number, or -1. */
function digitsAt(s: string, i: number, count: 2 | 4): number {
  let v = 0;
  for (let k = 0; k < count; k++) {
    const d = s.charCodeAt(i + k) - 0x30;
    if (!(d >= 0 && d <= 9)) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** `YYYY-MM-DD(T|t| )hh:mm:ss[.f+][Z|z|±hh:mm|±hhmm]` → integer ms (UTC when no offset); NaN otherwise. */
export function rfc3339ToMs(s: string): number {
  const len = s.length;
  if (len < 19) return NaN;
  const year = digitsAt(s, 0, 4);
  const month = digitsAt(s, 5, 2);
  const day = digitsAt(s, 8, 2);
  const hour = digitsAt(s, 11, 2);
  const minute = digitsAt(s, 14, 2);
  const second = digitsAt(s, 17, 2);
  const sep = s.charCodeAt(10);
  if (
    year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
    second < 0 || second > 60 || // 60: a leap second, which rolls into the next minute
    s.charCodeAt(4) !== 0x2d || s.charCodeAt(7) !== 0x2d || s.charCodeAt(13) !== 0x3a || s.charCodeAt(16) !== 0x3a ||
    (sep !== 0x54 && sep !== 0x74 && sep !== 0x20)
  ) {
    return NaN;
  }
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0))) return NaN;

  let i = 19;
  let millis = 0;
  if (i < len && s.charCodeAt(i) === 0x2e) {
    const fracEnd = skipDigits(s, i + 1, len);
    if (fracEnd === i + 1) return NaN;
    millis = Number(s.slice(i + 1, Math.min(fracEnd, i + 4)).padEnd(3, '0'));
    i = fracEnd;
  }
  let offsetMinutes = 0;
  if (i < len) {
    const c = s.charCodeAt(i);
    if (c === 0x5a || c === 0x7a) i++;
    else if (c === 0x2b || c === 0x2d) {
      const oh = digitsAt(s, i + 1, 2);
      const colon = s.charCodeAt(i + 3) === 0x3a ? 1 : 0;
      const om = digitsAt(s, i + 3 + colon, 2);
      if (oh < 0 || oh > 23 || om < 0 || om > 59) return NaN;
      offsetMinutes = (c === 0x2d ? -1 : 1) * (oh * 60 + om);
      i += 5 + colon;
    } else return NaN;
  }
  if (i !== len) return NaN;
  // Date.UTC maps years 0-99 to 1900-1999 (a reason would show that wrong date): those are
  // computed 400 years on, one whole Gregorian cycle of 146,097 days, and taken back.
  const utc = year < 100 ? Date.UTC(year + 400, month - 1, day, hour, minute, second) - GREGORIAN_CYCLE_MS : Date.UTC(year, month - 1, day, hour, minute, second);
  return utc + millis - offsetMinutes * 60_000;
}
