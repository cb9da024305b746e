import { describe, expect, it } from 'vitest';
import { decodeHistory } from '../../../models/train.js';

/** RowBinary rows of (UInt64, Array(Float64)) as ClickHouse writes them, after `pad` bytes. */
function body(rows: readonly [bigint, readonly number[]][], pad = 0): Uint8Array {
  const parts: number[] = new Array<number>(pad).fill(0xee);
  for (const [id, values] of rows) {
    const b = new DataView(new ArrayBuffer(8));
    b.setBigUint64(0, id, true);
    parts.push(...new Uint8Array(b.buffer));
    for (let n = values.length; ; n = Math.floor(n / 128)) {
      parts.push(n >= 128 ? (n & 0x7f) | 0x80 : n);
      if (n < 128) break;
    }
    for (const v of values) {
      const f = new DataView(new ArrayBuffer(8));
      f.setFloat64(0, v, true);
      parts.push(...new Uint8Array(f.buffer));
    }
  }
  return new Uint8Array(parts).subarray(pad);
}

describe('the history vigil train reads (RowBinary)', () => {
  const rows: [bigint, number[]][] = [
    [18_446_744_073_709_551_615n, [1.5, -2, Number.NaN]],
    [7n, Array.from({ length: 300 }, (_, i) => i / 3)],
    [0n, []],
  ];

  it('decodes series ids (all 64 bits) and their arrays, aligned in the buffer or not, lengths of one byte or more', () => {
    for (const pad of [0, 1, 3, 8]) {
      const history = decodeHistory(body(rows, pad));
      expect([...history.keys()]).toEqual(['18446744073709551615', '7', '0']);
      expect([...(history.get('18446744073709551615') as Float64Array)]).toEqual([1.5, -2, Number.NaN]);
      expect([...(history.get('7') as Float64Array)]).toEqual(rows[1]?.[1]);
      expect(history.get('0')).toHaveLength(0);
    }
  });

  it('refuses a truncated body with the byte offset and what was expected there', () => {
    const whole = body(rows);
    expect(() => decodeHistory(whole.subarray(0, 5))).toThrow(/truncated at byte 0 of 5: expected a series id/);
    expect(() => decodeHistory(whole.subarray(0, 8))).toThrow(/truncated at byte 8 of 8: expected an array length/);
    expect(() => decodeHistory(whole.subarray(0, 20))).toThrow(/truncated at byte 9 of 20: expected 3 Float64 values/);
    expect(decodeHistory(new Uint8Array(0)).size).toBe(0);
  });
});
