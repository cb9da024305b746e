import { describe, expect, it } from 'vitest';
import { MAX_REASONS, MAX_REJECTED_BYTES, RejectCollector } from '../../../workers/rejects.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

describe('RejectCollector: one folded reject per bad message', () => {
  it('folds the rejects of one message: first code and line, first reasons, count, the bad lines newline-joined', () => {
    const c = new RejectCollector();
    c.add(0, 'VIGIL_ERR_DECODE_VALUE', 'line 2: bad value', { bytes: bytes('m v=x'), line: 2 });
    c.add(0, 'VIGIL_ERR_DECODE_LINE_PROTOCOL', 'line 5: no fields', { bytes: bytes('m'), line: 5 });
    c.add(3, 'VIGIL_ERR_DECODE_JSON', 'message is not valid JSON', {});
    const [a, b, ...rest] = c.finish();
    expect(rest).toEqual([]);
    expect(a).toMatchObject({ message: 0, code: 'VIGIL_ERR_DECODE_VALUE', reason: 'line 2: bad value; line 5: no fields', count: 2, line: 2, items: 2 });
    expect(a?.element).toBeUndefined();
    expect(text(a?.bytes)).toBe('m v=x\nm');
    expect(b).toEqual({ message: 3, code: 'VIGIL_ERR_DECODE_JSON', reason: 'message is not valid JSON', count: 1 });
  });

  it(`names the first ${MAX_REASONS} reasons and counts the rest`, () => {
    const c = new RejectCollector();
    for (let i = 0; i < 12; i++) c.add(1, 'VIGIL_ERR_DECODE_SHAPE', `r${i}`, { bytes: bytes(String(i)), element: i });
    const [r] = c.finish();
    expect(r?.reason).toBe('r0; r1; r2; r3; r4; … and 7 more');
    expect(r).toMatchObject({ count: 12, element: 0, items: 12 });
    expect(text(r?.bytes)).toBe('0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11');
  });

  it('cuts a long reason (it quotes the input)', () => {
    const c = new RejectCollector();
    c.add(0, 'VIGIL_ERR_DECODE_NAME', 'x'.repeat(5000), {});
    expect(c.finish()[0]?.reason).toBe(`${'x'.repeat(512)}…`);
  });

  it(`carries bad items up to ${MAX_REJECTED_BYTES} bytes and says how many it carries`, () => {
    const c = new RejectCollector();
    const item = bytes('y'.repeat(100 * 1024 - 1));
    for (let i = 0; i < 8; i++) c.add(0, 'VIGIL_ERR_DECODE_LINE_PROTOCOL', 'bad', { bytes: item, line: i + 1 });
    const [r] = c.finish();
    // 5 items of 100 KiB - 1 plus 4 newlines = 500 KiB + 4 - 5 + 4 ≤ 512 KiB; a sixth does not fit.
    expect(r).toMatchObject({ count: 8, items: 5 });
    expect(r?.bytes?.length).toBe(5 * item.length + 4);
  });

  it('a whole-message reject among item rejects makes the letter the whole message', () => {
    const c = new RejectCollector();
    c.add(2, 'VIGIL_ERR_DECODE_SHAPE', 'element 0: bad', { bytes: bytes('1'), element: 0 });
    c.add(2, 'VIGIL_ERR_DECODE_SHAPE', 'element 1: too deep to show', { element: 1 });
    const [r] = c.finish();
    expect(r).toEqual({ message: 2, code: 'VIGIL_ERR_DECODE_SHAPE', reason: 'element 0: bad; element 1: too deep to show', count: 2, element: 0 });
  });

  it('a single bad item is its own bytes, not a copy', () => {
    const c = new RejectCollector();
    const b = bytes('only');
    c.add(0, 'VIGIL_ERR_DECODE_LINE_PROTOCOL', 'bad', { bytes: b, line: 1 });
    expect(c.finish()[0]?.bytes).toBe(b);
  });
});
