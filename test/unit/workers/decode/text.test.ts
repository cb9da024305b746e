import { describe, it, expect } from 'vitest';
import {
  describe as describeValue,
  errorMessage,
  invalidUtf8Offset,
  isBlankCode,
  isBlankRange,
  parseDecimal,
  quote,
  skipDigits,
} from '../../../../workers/decode/text.js';

describe('isBlankCode / isBlankRange', () => {
  it('counts space, tab, LF and CR as blank, and nothing else', () => {
    expect([' ', '\t', '\n', '\r'].map((c) => isBlankCode(c.charCodeAt(0)))).toEqual([true, true, true, true]);
    expect(['\v', '\f', '\u00a0', '\ufeff', 'x'].map((c) => isBlankCode(c.charCodeAt(0)))).toEqual([false, false, false, false, false]);
  });

  it('looks only at text[start, end)', () => {
    expect(isBlankRange(' \t\r\n', 0, 4)).toBe(true);
    expect(isBlankRange('x  y', 1, 3)).toBe(true);
    expect(isBlankRange('x  y', 1, 4)).toBe(false);
    expect(isBlankRange('x  y', 0, 3)).toBe(false);
    expect(isBlankRange('  x', 0, 3)).toBe(false); // the non-blank character is the last one
    expect(isBlankRange('abc', 1, 1)).toBe(true); // an empty range
  });
});

describe('invalidUtf8Offset', () => {
  const offset = (bytes: number[], start = 0, end = bytes.length): number => invalidUtf8Offset(Uint8Array.from(bytes), start, end);

  it('returns -1 for valid UTF-8 at every sequence length and at the edges of each lead range', () => {
    const valid: [string, number[]][] = [
      ['ASCII', [0x00, 0x41, 0x7f]],
      ['lowest 2-byte lead', [0xc2, 0x80]],
      ['highest 2-byte lead', [0xdf, 0xbf]],
      ['E0 with its lowest second byte', [0xe0, 0xa0, 0x80]],
      ['€', [0xe2, 0x82, 0xac]],
      ['ED just below the surrogates', [0xed, 0x9f, 0xbf]],
      ['highest 3-byte lead', [0xef, 0xbf, 0xbf]],
      ['F0 with its lowest second byte', [0xf0, 0x90, 0x80, 0x80]],
      ['an emoji', [0xf0, 0x9f, 0x98, 0x80]],
      ['F1', [0xf1, 0x80, 0x80, 0x80]],
      ['F3 with a second byte above 8F (only F4 stops there)', [0xf3, 0xbf, 0xbf, 0xbf]],
      ['U+10FFFF', [0xf4, 0x8f, 0xbf, 0xbf]],
    ];
    for (const [what, bytes] of valid) expect(offset(bytes), what).toBe(-1);
  });

  it('returns the offset of the lead byte of the first bad sequence', () => {
    const invalid: [string, number[], number][] = [
      ['a continuation byte as lead', [0x41, 0x80], 1],
      ['0xFF', [0x41, 0x42, 0xff], 2],
      ['overlong 2-byte lead C1', [0xc1, 0xbf], 0],
      ['a continuation byte as lead, followed by three more', [0x80, 0x80, 0x80, 0x80], 0],
      ['overlong lead C0, followed by continuation bytes', [0xc0, 0x80, 0x80, 0x80], 0],
      ['2-byte lead then ASCII', [0xc3, 0x28], 0],
      ['2-byte lead then a byte above BF', [0xc3, 0xc0], 0],
      ['overlong E0', [0xe0, 0x9f, 0xbf], 0],
      ['a surrogate', [0x41, 0xed, 0xa0, 0x80], 1],
      ['3-byte sequence with a bad third byte', [0xe2, 0x82, 0x28], 0],
      ['3-byte sequence with a third byte above BF', [0xe2, 0x82, 0xc0], 0],
      ['overlong F0', [0xf0, 0x8f, 0xbf, 0xbf], 0],
      ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80], 0],
      ['lead F5', [0xf5, 0x80, 0x80, 0x80], 0],
      ['4-byte sequence with a bad fourth byte', [0xf0, 0x9f, 0x98, 0x28], 0],
      ['truncated 3-byte sequence', [0x41, 0xe2, 0x82], 1],
      ['bad byte after valid 2-, 3- and 4-byte sequences', [0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xff], 9],
    ];
    for (const [what, bytes, want] of invalid) expect(offset(bytes), what).toBe(want);
  });

  it('counts from start and stops at end, whatever lies outside the range', () => {
    // 2 bytes of junk before; the offset is relative to start.
    expect(offset([0xff, 0xff, 0x41, 0xc3, 0x28], 2)).toBe(1);
    expect(offset([0xff, 0xff, 0x41, 0xe2, 0x82], 2)).toBe(1); // truncated
    // A sequence cut by end is truncated, even when the buffer continues it.
    expect(offset([0x41, 0xe2, 0x82, 0xac], 0, 3)).toBe(1);
    // A bad byte just past end is not part of the range.
    expect(offset([0x41, 0xff], 0, 1)).toBe(-1);
  });
});

describe('skipDigits', () => {
  it('returns the end of the run of ASCII digits, never past end', () => {
    expect(skipDigits('12a', 0, 3)).toBe(2);
    expect(skipDigits('x0123456789y', 1, 12)).toBe(11);
    expect(skipDigits('123', 0, 2)).toBe(2);
    expect(skipDigits('12a', 2, 3)).toBe(2);
    expect(skipDigits('/:', 0, 2)).toBe(0); // the characters either side of 0-9
  });
});

describe('parseDecimal', () => {
  it('reads signs, fractions and exponents', () => {
    const cases: [string, number][] = [
      ['0', 0],
      ['42', 42],
      ['+1.5', 1.5],
      ['-1.5', -1.5],
      ['1.', 1],
      ['.5', 0.5],
      ['1e3', 1000],
      ['1E+3', 1000],
      ['1.5e-3', 0.0015],
      ['-2.5E-1', -0.25],
    ];
    for (const [s, want] of cases) expect(parseDecimal(s, 0, s.length), s).toBe(want);
  });

  it("returns NaN for everything else, including Number()'s extras", () => {
    for (const s of ['', ' ', ' 1', '1 ', '.', '+', '-.', 'e5', '1e', '1e+', '0x10', '1_0', 'Infinity', 'NaN', '1.2.3', '1e5.5']) {
      expect(parseDecimal(s, 0, s.length), JSON.stringify(s)).toBeNaN();
    }
  });

  it('returns Infinity for an overflowing exponent, for the caller to reject', () => {
    expect(parseDecimal('1e999', 0, 5)).toBe(Infinity);
    expect(parseDecimal('-1e999', 0, 6)).toBe(-Infinity);
  });

  it('reads only s[start, end)', () => {
    expect(parseDecimal('v=1.5,w', 2, 5)).toBe(1.5);
    expect(parseDecimal('1.5,x', 0, 3)).toBe(1.5); // from 0 but not to the end
    expect(parseDecimal('1.5', 0, 1)).toBe(1); // the "." after end is not a fraction
    expect(parseDecimal('1e5', 0, 1)).toBe(1); // nor the "e" an exponent
    expect(parseDecimal('m v=', 4, 4)).toBeNaN(); // an empty range is no number (Number("") is 0)
  });
});

describe('quote', () => {
  it('JSON-quotes a string of up to 64 characters as it is', () => {
    expect(quote('a "b"')).toBe('"a \\"b\\""');
    expect(quote('x'.repeat(64))).toBe(`"${'x'.repeat(64)}"`);
  });

  it('cuts a longer string to 64 characters and an ellipsis', () => {
    expect(quote(`${'x'.repeat(64)}yz`)).toBe(`"${'x'.repeat(64)}…"`);
    expect(quote('x'.repeat(65))).toBe(`"${'x'.repeat(64)}…"`);
  });
});

describe('describe (a JSON value for reasons)', () => {
  it('names each kind of value', () => {
    expect(describeValue(null)).toBe('null');
    expect(describeValue([1])).toBe('an array');
    expect(describeValue('abc')).toBe('the string "abc"');
    expect(describeValue('x'.repeat(70))).toBe(`the string "${'x'.repeat(64)}…"`);
    expect(describeValue(-1.5)).toBe('the number -1.5');
    expect(describeValue(false)).toBe('the boolean false');
    expect(describeValue({ a: 1 })).toBe('an object');
    expect(describeValue(undefined)).toBe('nothing');
    expect(describeValue(1n)).toBe('bigint'); // not JSON, named by its type
  });
});

describe('errorMessage', () => {
  it('gives an Error its message and anything else its string form', () => {
    expect(errorMessage(new SyntaxError('Unexpected end of JSON input'))).toBe('Unexpected end of JSON input');
    expect(errorMessage('boom')).toBe('boom');
  });
});
