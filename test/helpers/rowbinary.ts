/**
 * A RowBinary reader for tests, written from ClickHouse's format reference rather than from
 * Vigil's writer: decodes a body by its column list (name, ClickHouse type) into plain rows, so
 * encoder tests assert every value instead of a byte count.
 */
export type RowValue = string | number | bigint | Uint8Array | string[];

export function decodeRowBinary(body: Uint8Array, columns: readonly (readonly [string, string])[], options: { rawStrings?: readonly string[] } = {}): Record<string, RowValue>[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const text = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  const varUint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = view.getUint8(pos++);
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
      shift += 7;
    }
  };
  const bytes = (): Uint8Array => {
    const n = varUint();
    const out = body.subarray(pos, pos + n);
    if (out.length !== n) throw new Error(`string of ${n} bytes runs past the end at ${pos}`);
    pos += n;
    return out;
  };
  const read = (type: string, raw: boolean): RowValue => {
    if (type.startsWith('Enum8')) return view.getInt8(pos++);
    if (type.startsWith('Array(')) {
      const inner = type.slice(6, -1);
      return Array.from({ length: varUint() }, () => read(inner, false) as string);
    }
    let v: RowValue;
    switch (type) {
      case 'String':
        return raw ? bytes() : text.decode(bytes());
      case 'UInt8':
        return view.getUint8(pos++);
      case 'UInt32':
      case 'DateTime':
        v = view.getUint32(pos, true);
        pos += 4;
        return v;
      case 'UInt64':
        v = view.getBigUint64(pos, true);
        pos += 8;
        return v;
      case 'Int64':
        v = view.getBigInt64(pos, true);
        pos += 8;
        return v;
      case 'Float64':
        v = view.getFloat64(pos, true);
        pos += 8;
        return v;
      default:
        throw new Error(`no reader for ${type}`);
    }
  };
  const rows: Record<string, RowValue>[] = [];
  while (pos < body.length) {
    const row: Record<string, RowValue> = {};
    for (const [name, type] of columns) row[name] = read(type, options.rawStrings?.includes(name) ?? false);
    rows.push(row);
  }
  return rows;
}
