import type { DecodeLimits } from './types.js';
/** Shared text helpers for the decoders: one codec pair per thread, strict number syntax, reason text. */

// ignoreBOM keeps a leading U+FEFF in the string, so re-encoding a line gives back its exact bytes.
export const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
export const utf8Encoder = new TextEncoder();

export const BOM = 0xfeff;

/** Space, tab, LF, CR: the whitespace JSON allows, and what counts as blank in every format. */
export function isBlankCode(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** True when text[start, end) holds only blank characters. */
export function isBlankRange(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (!isBlankCode(text.charCodeAt(i))) return false;
  return true;
}

/**
 * Offset (from `start`) of the first byte that starts an invalid UTF-8 sequence, or -1. Only called
 * after TextDecoder has already refused the bytes, so it may be slow and simple.
 */
export function invalidUtf8Offset(bytes: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const lead = bytes[i] ?? 0;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let trail: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) trail = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      trail = 2;
      if (lead === 0xe0) lo = 0xa0; // overlong
      else if (lead === 0xed) hi = 0x9f; // UTF-16 surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      trail = 3;
      if (lead === 0xf0) lo = 0x90; // overlong
      else if (lead === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i - start;
    for (let k = 1; k <= trail; k++) {
      if (i + k >= end) return i - start;
      const b = bytes[i + k] ?? 0;
      if (b < (k === 1 ? lo : 0x80) || b > (k === 1 ? hi : 0xbf)) return i - start;
    }
    i += trail + 1;
  }
  return -1;
}

function isDigitCode(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** End of the run of ASCII digits starting at `i`. */
export function skipDigits(s: string, i: number, end: number): number {
  while (i < end && isDigitCode(s.charCodeAt(i))) i++;
  return i;
}

/**
 * Parses s[start, end) as a plain decimal number: `[+-]` digits `[.digits]` `[e[+-]digits]` (also
 * `1.` and `.5`). Returns NaN for anything else, so Number()'s extras ("", " 1", "0x10", "Infinity",
 * "1_0") never pass. May return ±Infinity for an overflowing exponent; callers check finiteness.
 */
export function parseDecimal(s: string, start: number, end: number): number {
  let i = start;
  const sign = s.charCodeAt(i);
  if (sign === 0x2b || sign === 0x2d) i++;
  const intEnd = skipDigits(s, i, end);
  let mantissaDigits = intEnd - i;
  i = intEnd;
  if (i < end && s.charCodeAt(i) === 0x2e) {
    const fracEnd = skipDigits(s, i + 1, end);
    mantissaDigits += fracEnd - i - 1;
    i = fracEnd;
  }
  if (mantissaDigits === 0) return NaN;
  if (i < end && (s.charCodeAt(i) | 0x20) === 0x65) {
    i++;
    const expSign = s.charCodeAt(i);
    if (expSign === 0x2b || expSign === 0x2d) i++;
    const expEnd = skipDigits(s, i, end);
    if (expEnd === i) return NaN;
    i = expEnd;
  }
  if (i !== end) return NaN;
  return Number(start === 0 && end === s.length ? s : s.slice(start, end));
}

const MAX_SHOWN = 64;

/** A string quoted for a reason, cut to a readable length. */
export function quote(s: string): string {
  return JSON.stringify(s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}…` : s);
}

/** What a JSON value is, for reasons: `the string "abc"`, `the number 5`, `an array`, `null`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return `the string ${quote(value)}`;
    case 'number':
      return `the number ${String(value)}`;
    case 'boolean':
      return `the boolean ${String(value)}`;
    case 'object':
      return 'an object';
    case 'undefined':
      return 'nothing';
    default:
      return typeof value;
  }
}

/** The message of whatever JSON.parse threw. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Why one more tag (key, value) would pass a limit, given `held` tags so far; empty when it does not.
 * Shared by both decoders so a limit reads the same whatever the format.
 */
export function tagLimit(limits: DecodeLimits, held: number, key: string, value: string): string {
  if (held >= limits.maxTagsPerPoint) return `more than limits.maxTagsPerPoint = ${String(limits.maxTagsPerPoint)} tags`;
  if (key.length > limits.maxTagKeyLength) return `tag key ${quote(key)} is ${String(key.length)} characters, over limits.maxTagKeyLength = ${String(limits.maxTagKeyLength)}`;
  if (value.length > limits.maxTagValueLength) return `the value of tag ${quote(key)} is ${String(value.length)} characters, over limits.maxTagValueLength = ${String(limits.maxTagValueLength)}`;
  return '';
}
