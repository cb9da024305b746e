/**
 * Reads the repartition topic's records (pipeline/repartition.ts): each is a run of `points` rows
 * in the RowBinary layout of workers/encode/points.ts (POINT_COLUMNS), written by the first stage
 * for one source partition and one repartition partition. Internal input: it was valid when it
 * was encoded, so a record that does not parse is a bug or a foreign producer, and throws.
 */
export interface ForwardedPoint {
  seriesId: bigint;
  metric: string;
  /** Sorted flat [k1, v1, ...]. */
  tags: string[];
  /** '' for the default tenant (and in records written before the column: `withTenant` false). */
  tenant: string;
  /** 0 gauge, 1 counter. */
  type: number;
  tsMs: number;
  value: number;
  sourceOffset: number;
  pointIndex: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Every point of the record `data[start, end)`, in order; `withTenant`: its rows have the tenant column. */
export function readForwarded(data: Uint8Array, start: number, end: number, withTenant = true): ForwardedPoint[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = start;
  const need = (n: number) => {
    if (pos + n > end) throw new RangeError(`repartition record ends at byte ${end - start}, inside a row at ${pos - start}`);
  };
  const varUInt = () => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      need(1);
      const b = data[pos++] as number;
      n += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return n;
      if (shift > 56) throw new RangeError('a LEB128 length runs past 9 bytes');
    }
  };
  const string = () => {
    const n = varUInt();
    need(n);
    const s = utf8.decode(data.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  const points: ForwardedPoint[] = [];
  while (pos < end) {
    const p: ForwardedPoint = { seriesId: 0n, metric: '', tags: [], tenant: '', type: 0, tsMs: 0, value: 0, sourceOffset: 0, pointIndex: 0 };
    need(8);
    p.seriesId = view.getBigUint64(pos, true);
    pos += 8;
    p.metric = string();
    const keys = varUInt();
    const tags: string[] = new Array<string>(keys * 2);
    for (let i = 0; i < keys; i++) tags[2 * i] = string();
    if (varUInt() !== keys) throw new RangeError('tag keys and values differ in number');
    for (let i = 0; i < keys; i++) tags[2 * i + 1] = string();
    p.tags = tags;
    if (withTenant) p.tenant = string();
    need(1 + 4 + 8 + 8);
    p.type = (data[pos] as number) - 1;
    pos += 1 + 4; // type, then ts (seconds; ts_ms follows)
    p.tsMs = Number(view.getBigInt64(pos, true));
    pos += 8;
    p.value = view.getFloat64(pos, true);
    pos += 8;
    string(); // source_topic: the record's headers name it
    need(4 + 8 + 4);
    pos += 4; // source_partition
    p.sourceOffset = Number(view.getBigUint64(pos, true));
    pos += 8;
    p.pointIndex = view.getUint32(pos, true);
    pos += 4;
    points.push(p);
  }
  return points;
}
