import { describe, expect, it } from 'vitest';
import { chunks, concat } from '../../../core/bytes.js';

describe('core/bytes', () => {
  it('concat joins parts in order and returns a single part itself', () => {
    const one = Uint8Array.of(1, 2);
    expect(concat([one])).toBe(one);
    expect([...concat([one, Uint8Array.of(), Uint8Array.of(3)])]).toEqual([1, 2, 3]);
  });

  it('chunks groups consecutive items up to the size limit, an oversized item alone', () => {
    const size = (n: number) => n;
    expect(chunks([3, 3, 4, 1, 9, 2], size, 10)).toEqual([[3, 3, 4], [1, 9], [2]]);
    expect(chunks([12, 1], size, 10)).toEqual([[12], [1]]);
    expect(chunks([5, 5], size, 10)).toEqual([[5, 5]]);
    expect(chunks([], size, 10)).toEqual([]);
  });
});
