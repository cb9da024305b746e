/**
 * A growable RowBinary writer (https://clickhouse.com/docs/en/interfaces/formats#rowbinary):
 * little-endian fixed-width numbers, strings as LEB128 length + UTF-8 bytes, arrays as LEB128
 * count + elements. RowBinary is the cheapest insert format ClickHouse 18.16 accepts (INFRA.md:
 * ~0.5 s per 1M narrow rows versus ~0.75 s for JSONEachRow).
 */
export class RowBinaryWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  private readonly encoder = new TextEncoder();

  constructor(initialBytes = 1 << 20) {
    this.buf = new Uint8Array(initialBytes);
    this.view = new DataView(this.buf.buffer);
  }

  get length(): number {
    return this.pos;
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    // At least 1 before doubling: a writer made with 0 bytes would otherwise double 0 forever.
    let size = Math.max(1, this.buf.length) * 2;
    while (size < this.pos + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Room for `extra` more bytes without growing (one allocation instead of several doublings). */
  reserve(extra: number): void {
    this.ensure(extra);
  }

  uint8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  uint32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  /** A non-negative integer below 2^53 as UInt64/Int64. */
  uint64(v: number): void {
    this.ensure(8);
    this.view.setUint32(this.pos, v % 0x100000000, true);
    this.view.setUint32(this.pos + 4, Math.floor(v / 0x100000000), true);
    this.pos += 8;
  }

  /** Any Int64 value given as a safe integer (negative allowed): two's complement halves, no BigInt. */
  int64(v: number): void {
    this.ensure(8);
    const high = Math.floor(v / 0x100000000);
    this.view.setUint32(this.pos, v - high * 0x100000000, true);
    this.view.setInt32(this.pos + 4, high, true);
    this.pos += 8;
  }

  /** Bytes already in RowBinary (a cached prefix of a row), copied as they are. */
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  bigUint64(v: bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.pos, v, true);
    this.pos += 8;
  }

  float64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  varUint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  string(s: string): void {
    const n = s.length;
    // Short ASCII (metric names, tag keys and values, topics): copied char by char after its
    // one-byte length, without TextEncoder's call and the subarray it needs (an object per
    // string: a tenth of the shard threads' time went to the rollup rows' strings). Any other
    // character falls back to TextEncoder from the string's start, so the bytes are always its.
    if (n < 128) {
      this.ensure(n + 1);
      const buf = this.buf;
      const start = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + 1 + i] = c;
      }
      if (i === n) {
        buf[start] = n;
        this.pos = start + 1 + n;
        return;
      }
    }
    // Reserve the worst case, write the bytes after a 1-byte length guess, fix up if longer.
    const max = n * 3;
    this.ensure(max + 10);
    if (max < 128) {
      const { written } = this.encoder.encodeInto(s, this.buf.subarray(this.pos + 1));
      this.buf[this.pos] = written;
      this.pos += 1 + written;
      return;
    }
    this.bytes(this.encoder.encode(s));
  }

  /** A String column of raw bytes (length-prefixed, not re-encoded). */
  bytes(b: Uint8Array): void {
    this.varUint(b.length);
    this.raw(b);
  }

  /** The written bytes in a fresh ArrayBuffer of exactly that size (transferable). */
  finish(): Uint8Array {
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}

/**
 * The series columns every Vigil table starts with: series_id UInt64, metric String,
 * tags.key Array(String), tags.value Array(String), from a flat [k1, v1, ...] tag array, and
 * tenant String ('' for the default tenant; issue 18).
 */
export function writeSeries(w: RowBinaryWriter, seriesId: bigint, metric: string, tags: readonly string[], tenant = ''): void {
  w.bigUint64(seriesId);
  w.string(metric);
  const n = tags.length / 2;
  w.varUint(n);
  for (let i = 0; i < tags.length; i += 2) w.string(tags[i] as string);
  w.varUint(n);
  for (let i = 1; i < tags.length; i += 2) w.string(tags[i] as string);
  w.string(tenant);
}

/** The series columns of writeSeries, as the column lists of every table's encoder start. */
export const SERIES_COLUMNS = [
  ['series_id', 'UInt64'],
  ['metric', 'String'],
  ['tags.key', 'Array(String)'],
  ['tags.value', 'Array(String)'],
  ['tenant', 'String'],
] as const;

const utf8 = new TextDecoder();

/**
 * One string object for equal strings (metric names, tag keys, most tag values: a shard's series
 * share them): a direct-mapped cache of `slots` strings by a hash of their UTF-16 units, so its
 * memory is fixed whatever the cardinality. A string unique to its series (a host name) only takes
 * a slot from another until that one is seen again. About 120 bytes per series of a typical tag
 * set; a Map of every string seen cost more than it saved at one unique tag value per series.
 */
export class StringInterner {
  private readonly table: (string | undefined)[];
  private readonly mask: number;

  constructor(slots = 4096) {
    const size = 2 ** Math.ceil(Math.log2(Math.max(2, slots)));
    this.table = new Array<string | undefined>(size).fill(undefined);
    this.mask = size - 1;
  }

  intern(s: string): string {
    // FNV-1a over the UTF-16 units (a string is interned once per series new to the shard).
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    const slot = (h >>> 0) & this.mask;
    const known = this.table[slot];
    if (known === s) return known;
    this.table[slot] = s;
    return s;
  }
}

/** writeSeries's bytes read back: the id, metric, tags as a flat [k1, v1, ...] array and tenant; strings through `interner` when given. */
export function readSeries(bytes: Uint8Array, interner?: StringInterner): { id: bigint; metric: string; tags: string[]; tenant: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  const varUint = (): number => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[pos++];
      if (b === undefined) throw new RangeError(`series columns end at byte ${bytes.length}, inside a length`);
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
  };
  const string = (): string => {
    const n = varUint();
    if (pos + n > bytes.length) throw new RangeError(`series columns end at byte ${bytes.length}, inside a string of ${n} bytes at ${pos}`);
    const text = utf8.decode(bytes.subarray(pos, pos + n));
    pos += n;
    return interner ? interner.intern(text) : text;
  };
  const id = view.getBigUint64(0, true);
  const metric = string();
  const n = varUint();
  const tags = new Array<string>(2 * n);
  for (let i = 0; i < n; i++) tags[2 * i] = string();
  if (varUint() !== n) throw new RangeError('series columns with unequal tag keys and values');
  for (let i = 0; i < n; i++) tags[2 * i + 1] = string();
  const tenant = string();
  return { id, metric, tags, tenant };
}

/** writeSeries's bytes on their own, for a row prefix written once per series and copied after. */
export function encodeSeries(seriesId: bigint, metric: string, tags: readonly string[], tenant = ''): Uint8Array {
  const w = new RowBinaryWriter(64);
  writeSeries(w, seriesId, metric, tags, tenant);
  return w.finish();
}
