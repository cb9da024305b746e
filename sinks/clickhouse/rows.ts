import { gunzipSync } from 'node:zlib';
import { INSERT_COLUMNS, type InsertTable } from './schema.js';

/**
 * Reads back the RowBinary the workers encode (workers/encode/rowbinary.ts), on the one path that
 * needs it: an insert ClickHouse rejected for its rows is split into rows (`splitRows`) and the
 * rows it refuses become readable dead letters (`renderRow`). Not a hot path; the types are the
 * ones Vigil's tables use, and a column of any other type fails when the reader is built.
 */
type Reader = (c: Cursor) => unknown;

class Cursor {
  pos = 0;
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  take(n: number): number {
    const at = this.pos;
    if (at + n > this.bytes.byteLength) throw new RangeError(`RowBinary ends at byte ${this.bytes.byteLength}, inside a value at ${at} (${n} bytes expected)`);
    this.pos += n;
    return at;
  }

  /** LEB128, as ClickHouse writes string lengths and array sizes. */
  varUInt(): number {
    let n = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const b = this.view.getUint8(this.take(1));
      n += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return n;
    }
    throw new RangeError(`a LEB128 number at byte ${this.pos} runs past 10 bytes`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A String column as text, or `{ base64 }` when it holds bytes that are not UTF-8 (detector state). */
function readString(c: Cursor): unknown {
  const n = c.varUInt();
  const bytes = c.bytes.subarray(c.take(n), c.pos);
  try {
    return utf8.decode(bytes);
  } catch {
    return { base64: Buffer.from(bytes).toString('base64') };
  }
}

const FIXED: Record<string, Reader> = {
  UInt8: (c) => c.view.getUint8(c.take(1)),
  UInt16: (c) => c.view.getUint16(c.take(2), true),
  UInt32: (c) => c.view.getUint32(c.take(4), true),
  UInt64: (c) => c.view.getBigUint64(c.take(8), true).toString(),
  Int8: (c) => c.view.getInt8(c.take(1)),
  Int16: (c) => c.view.getInt16(c.take(2), true),
  Int32: (c) => c.view.getInt32(c.take(4), true),
  Int64: (c) => c.view.getBigInt64(c.take(8), true).toString(),
  Float32: (c) => finite(c.view.getFloat32(c.take(4), true)),
  Float64: (c) => finite(c.view.getFloat64(c.take(8), true)),
  DateTime: (c) => new Date(c.view.getUint32(c.take(4), true) * 1000).toISOString(),
  Date: (c) => new Date(c.view.getUint16(c.take(2), true) * 86_400_000).toISOString().slice(0, 10),
  String: readString,
};

/** JSON has no NaN or Infinity: those are written as strings. */
const finite = (v: number): number | string => (Number.isFinite(v) ? v : String(v));

function readerOf(type: string): Reader {
  const fixed = FIXED[type];
  if (fixed) return fixed;
  const array = /^Array\((.+)\)$/.exec(type);
  if (array) {
    const item = readerOf(array[1] as string);
    return (c) => {
      const n = c.varUInt();
      const out: unknown[] = [];
      for (let i = 0; i < n; i++) out.push(item(c));
      return out;
    };
  }
  const enumeration = /^Enum(8|16)\((.*)\)$/.exec(type);
  if (enumeration) {
    const names = new Map<number, string>();
    for (const m of (enumeration[2] as string).matchAll(/'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)/g)) names.set(Number(m[2]), (m[1] as string).replace(/\\(.)/g, '$1'));
    const raw = enumeration[1] === '8' ? FIXED['Int8'] : FIXED['Int16'];
    return (c) => {
      const v = (raw as Reader)(c) as number;
      return names.get(v) ?? v;
    };
  }
  throw new Error(`no RowBinary reader for the column type ${type}`);
}

export interface RowCodec {
  /** Each row of a plain RowBinary body, in order (views into `body`). */
  split(body: Uint8Array): Uint8Array[];
  /** One row as an object of its columns; the Nested tags as one `tags` object. */
  render(row: Uint8Array): Record<string, unknown>;
}

function rowCodec(columns: readonly (readonly [string, string])[]): RowCodec {
  const readers = columns.map(([name, type]) => [name, readerOf(type)] as const);
  return {
    split(body) {
      const c = new Cursor(body);
      const rows: Uint8Array[] = [];
      while (c.pos < body.byteLength) {
        const start = c.pos;
        for (const [, read] of readers) read(c);
        rows.push(body.subarray(start, c.pos));
      }
      return rows;
    },
    render(row) {
      const c = new Cursor(row);
      const out: Record<string, unknown> = {};
      for (const [name, read] of readers) out[name] = read(c);
      const keys = out['tags.key'];
      const values = out['tags.value'];
      if (Array.isArray(keys) && Array.isArray(values)) {
        delete out['tags.key'];
        delete out['tags.value'];
        out['tags'] = Object.fromEntries(keys.map((k, i) => [k, values[i]]));
      }
      return out;
    },
  };
}

const CODECS = Object.fromEntries(Object.entries(INSERT_COLUMNS).map(([table, columns]) => [table, rowCodec(columns)])) as Record<InsertTable, RowCodec>;

/** The row codec of one of Vigil's insert tables. */
export const rowsOf = (table: InsertTable): RowCodec => CODECS[table];

/**
 * The rows of a worker-encoded insert body: gunzipped first when it was compressed (a body of
 * several tasks is several gzip members, which gunzip reads as one stream).
 */
export function splitRows(table: InsertTable, body: Uint8Array, gzip: boolean): Uint8Array[] {
  return CODECS[table].split(gzip ? new Uint8Array(gunzipSync(body)) : body);
}
