import { describe, expect, it } from 'vitest';
import { encodeSeries, readSeries, RowBinaryWriter, StringInterner, writeSeries } from '../../../../workers/encode/rowbinary.js';
import { PointsEncoder } from '../../../../workers/encode/points.js';
import { decodeRowBinary } from '../../../helpers/rowbinary.js';

// Decoded by the reader written from ClickHouse's RowBinary reference, not by Vigil's writer.
const STRING: readonly (readonly [string, string])[] = [['s', 'String']];

describe('RowBinaryWriter', () => {
  it('grows from a one-byte buffer: numbers, strings, raw bytes and series columns all decode exactly, and length counts every byte', () => {
    const w = new RowBinaryWriter(1);
    const raw = Uint8Array.from({ length: 40 }, (_, i) => 200 + (i % 50));
    w.uint8(7);
    w.string('abcd');
    w.uint32(0xdeadbeef);
    w.bytes(raw);
    w.uint64(2 ** 40 + 7);
    w.int64(-1_700_000_000_123);
    w.float64(-12.5);
    writeSeries(w, 0xfedcba9876543210n, 'cpu', ['host', 'a', 'région', 'é'], 'acme');
    w.string('');
    // 1 + (1 + 4) + 4 + (1 + 40) + 8 + 8 + 8 + (8 + 4 + 1 + 5 + 8 + 1 + 2 + 3 + 5) + 1
    expect(w.length).toBe(113);
    const body = w.finish();
    expect(body.byteLength).toBe(113);
    const columns = [
      ['u8', 'UInt8'],
      ['short', 'String'],
      ['u32', 'UInt32'],
      ['raw', 'String'],
      ['u64', 'UInt64'],
      ['i64', 'Int64'],
      ['f64', 'Float64'],
      ['series_id', 'UInt64'],
      ['metric', 'String'],
      ['tags.key', 'Array(String)'],
      ['tags.value', 'Array(String)'],
      ['tenant', 'String'],
      ['empty', 'String'],
    ] as const;
    expect(decodeRowBinary(body, columns, { rawStrings: ['raw'] })).toEqual([
      {
        u8: 7,
        short: 'abcd',
        u32: 0xdeadbeef,
        raw,
        u64: BigInt(2 ** 40 + 7),
        i64: -1_700_000_000_123n,
        f64: -12.5,
        series_id: 0xfedcba9876543210n,
        metric: 'cpu',
        'tags.key': ['host', 'région'],
        'tags.value': ['a', 'é'],
        tenant: 'acme',
        empty: '',
      },
    ]);
  });

  it('a short string longer than the room left is written whole, not cut to that room', () => {
    // 4 bytes of room: "abcd" with its length byte needs 5.
    const w = new RowBinaryWriter(4);
    w.string('abcd');
    w.string('ünïcödé');
    expect(decodeRowBinary(w.finish(), STRING)).toEqual([{ s: 'abcd' }, { s: 'ünïcödé' }]);
  });

  it('raw bytes longer than the room left are written whole', () => {
    const w = new RowBinaryWriter(16);
    const raw = Uint8Array.from({ length: 20 }, (_, i) => i);
    w.bytes(raw);
    expect(decodeRowBinary(w.finish(), STRING, { rawStrings: ['s'] })).toEqual([{ s: raw }]);
  });

  it.each([
    [127, [127]],
    [128, [0x80, 0x01]],
    [300, [0xac, 0x02]],
    [16_383, [0xff, 0x7f]],
    [16_384, [0x80, 0x80, 0x01]],
  ])('a string of %i bytes gets the LEB128 length prefix %j', (n, prefix) => {
    const s = 'x'.repeat(n);
    const w = new RowBinaryWriter(16);
    w.string(s);
    const body = w.finish();
    expect([...body.subarray(0, prefix.length)]).toEqual(prefix);
    expect(body.byteLength).toBe(prefix.length + n);
    expect(decodeRowBinary(body, STRING)).toEqual([{ s }]);
  });

  it('a string of 43 to 127 characters whose UTF-8 is 128 bytes or more gets a two-byte length', () => {
    // 100 characters, 200 bytes: the single-byte length guess would be wrong.
    const s = 'é'.repeat(100);
    const w = new RowBinaryWriter(16);
    w.string(s);
    w.string('x'.repeat(200));
    const body = w.finish();
    expect([...body.subarray(0, 2)]).toEqual([0xc8, 0x01]); // 200 = 0x48 + 1 × 128
    expect(decodeRowBinary(body, STRING)).toEqual([{ s }, { s: 'x'.repeat(200) }]);
  });

  it('finish hands out exactly the bytes written and starts the next body empty', () => {
    const w = new RowBinaryWriter(64);
    w.string('first');
    expect(decodeRowBinary(w.finish(), STRING)).toEqual([{ s: 'first' }]);
    expect(w.length).toBe(0);
    w.string('second');
    expect(w.length).toBe(7);
    expect(decodeRowBinary(w.finish(), STRING)).toEqual([{ s: 'second' }]);
  });

  it('writes many values into a small writer (it grows only when the room runs out)', () => {
    const w = new RowBinaryWriter(8);
    for (let i = 0; i < 2_000; i++) w.uint32(i);
    const body = w.finish();
    const view = new DataView(body.buffer);
    expect(body.byteLength).toBe(8_000);
    expect(Array.from({ length: 2_000 }, (_, i) => view.getUint32(4 * i, true))).toEqual(Array.from({ length: 2_000 }, (_, i) => i));
  });
});

describe('RowBinaryWriter made with 0 bytes', () => {
  it('grows on its first write (0 doubled is 0: it looped forever)', () => {
    const w = new RowBinaryWriter(0);
    w.uint8(7);
    w.string('abc');
    expect([...w.finish()]).toEqual([7, 3, 97, 98, 99]);
  });
});

describe('RowBinaryWriter.string: the ASCII fast path', () => {
  /** What the library writes: a LEB128 length, then TextEncoder's UTF-8. */
  function reference(s: string): number[] {
    const bytes = new TextEncoder().encode(s);
    const out: number[] = [];
    let n = bytes.length;
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    out.push(n, ...bytes);
    return out;
  }

  it('writes exactly what TextEncoder writes: lengths 0 to 200, non-ASCII at the start, middle and end, lone surrogates, 2,000 random strings', () => {
    const strings = ['', 'a', 'cpu.usage', 'x'.repeat(42), 'x'.repeat(43), 'x'.repeat(127), 'x'.repeat(128), 'x'.repeat(200), '\u007f', '\u0080', 'é', 'caf\u00e9', '\u00e9tat', 'a'.repeat(126) + 'é', '日本', '\ud83d\ude00', '\ud800', 'a\udc00b', '\u0000'];
    let seed = 11;
    const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    // Mostly ASCII, some with one character from higher planes, as tags arrive.
    const alphabet = ['a', 'Z', '0', '.', '_', '-', ' ', '\u007f', 'ü', '€', '\ud83d\ude00', '\ud800'];
    for (let i = 0; i < 2000; i++) {
      const length = Math.floor(next() * 140);
      let s = '';
      for (let k = 0; k < length; k++) s += next() < 0.97 ? String.fromCharCode(32 + Math.floor(next() * 95)) : (alphabet[Math.floor(next() * alphabet.length)] as string);
      strings.push(s);
    }
    for (const s of strings) {
      // Small writers too: the fast path must grow the buffer like the slow one.
      for (const size of [1, 1 << 16]) {
        const w = new RowBinaryWriter(size);
        w.uint8(9);
        w.string(s);
        w.uint8(9);
        expect([...w.finish()], JSON.stringify(s)).toEqual([9, ...reference(s), 9]);
      }
    }
  });
});

describe('RowBinaryWriter.int64 without BigInt', () => {
  it('writes the bytes DataView.setBigInt64 writes, for negative, boundary and random safe integers', () => {
    const values = [0, 1, -1, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, -(2 ** 32), -(2 ** 32) - 1, 1_700_000_000_123, -1_700_000_000_123, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
    let seed = 7;
    for (let i = 0; i < 1000; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const magnitude = 2 ** Math.floor((seed / 2 ** 32) * 53);
      values.push(Math.round((seed / 2 ** 32 - 0.5) * 2 * magnitude));
    }
    for (const v of values) {
      const w = new RowBinaryWriter(8);
      w.int64(v);
      const want = new Uint8Array(8);
      new DataView(want.buffer).setBigInt64(0, BigInt(v), true);
      expect([...w.finish()], String(v)).toEqual([...want]);
    }
  });
});

describe('points rows with the series columns cached', () => {
  it('addEncoded(encodeSeries(…)) writes exactly the bytes add writes, across series, topics and long or non-ASCII strings', () => {
    const series: [bigint, string, string[]][] = [
      [1n, 'cpu', ['host', 'a', 'region', 'eu']],
      [2n ** 64n - 1n, 'm', []],
      [42n, 'ключ.метрика', ['tag', '値'.repeat(60), 'x'.repeat(200), 'y']],
    ];
    const plain = new PointsEncoder(16);
    const cached = new PointsEncoder(16);
    const encoded = series.map(([id, metric, tags]) => encodeSeries(id, metric, tags));
    let k = 0;
    for (const topic of ['metrics', 'metrics', 'другой', '']) {
      for (const [i, [id, metric, tags]] of series.entries()) {
        const ts = 1_700_000_000_000 + k * 1001;
        plain.add(id, metric, tags, k % 2, ts, k / 3, topic, k % 5, 1000 + k, k % 4);
        cached.addEncoded(encoded[i] as Uint8Array, k % 2, ts, k / 3, topic, k % 5, 1000 + k, k % 4);
        k++;
      }
    }
    expect(cached.count).toBe(plain.count);
    expect(Buffer.from(cached.rows.finish()).equals(Buffer.from(plain.rows.finish()))).toBe(true);
  });
});

describe('readSeries', () => {
  it('reads back what writeSeries wrote: ids to 2^64 - 1, no tags, long and non-ASCII strings, empty strings', () => {
    const long = 'x'.repeat(300);
    const cases: [bigint, string, string[], string][] = [
      [0n, 'm', [], ''],
      [2n ** 64n - 1n, 'cpu', ['host', 'a', 'region', 'eu-west-1'], 'acme'],
      [12345678901234567n, `température.${long}`, ['', '', 'clé', 'värde ✓', long, '😀'], 'team_b-2'],
    ];
    for (const [id, metric, tags, tenant] of cases) expect(readSeries(encodeSeries(id, metric, tags, tenant))).toEqual({ id, metric, tags, tenant });
  });

  it('fails with the byte where truncated columns end instead of reading past them', () => {
    const bytes = encodeSeries(1n, 'metric', ['k', 'value']);
    for (const cut of [9, 12, bytes.length - 1]) expect(() => readSeries(bytes.subarray(0, cut))).toThrow(RangeError);
  });
  it('reads the same strings through a string interner, however full its slots and whatever collides', () => {
    // Two slots: nearly every string collides with another, and each replaces the other in turn.
    const interner = new StringInterner(2);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 200; i++) {
        const tags = ['host', `host-${i}`, 'region', i % 2 ? 'eu-west-1' : 'us-east-1'];
        expect(readSeries(encodeSeries(BigInt(i), `m${i % 7}`, tags), interner)).toEqual({ id: BigInt(i), metric: `m${i % 7}`, tags, tenant: '' });
      }
    }
    for (const s of ['', 'a', 'é', '😀', 'x'.repeat(500)]) expect(interner.intern(`${s}`)).toBe(s);
  });
});
