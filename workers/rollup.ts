import type { ShardBatch, HeldOffset, RollupSettings } from './shard-task.js';
import type { Aggregate, RollupRow } from './encode/rollups.js';

/**
 * Event-time buckets of one shard (DESIGN.md §4), kept per (series, source partition, width,
 * bucket). Every rule below depends only on the partition's message sequence, so a replay from
 * a committed offset rebuilds exactly the rows the crashed run wrote, and ClickHouse collapses them:
 *
 * - Watermark of a partition = highest event time of its messages so far − allowed lateness. A
 *   point is judged by the watermark before its own message.
 * - A bucket closes when the watermark passes its end: its row is emitted and it is handed to the
 *   closed-bucket stages, once. The row's version is its point count: a later version of the same
 *   bucket only adds points, and a replay can only rebuild the same set or a subset of it (the
 *   points after the commit offset), so the highest version is always the complete row.
 * - A closed bucket is retained until the watermark passes end + retention. A late point in that
 *   time joins it and re-emits the whole row with a higher version (the correction); the
 *   ReplacingMergeTree keeps the latest. After that a late point gets a correction row of its own.
 * - An idle partition's wall-clock watermark closes buckets (emission only) but never decides
 *   whether a point is late: a point arriving later simply re-versions the bucket, which is what
 *   a replay without the idle gap produces too.
 * - Counters are aggregated as per-second rates between successive points of the series in the
 *   partition, a decrease counting as a reset to zero (as Prometheus' rate()); a point older than
 *   the previous one gives no rate, and neither does a gap above COUNTER_STALENESS_MS.
 *
 * Offsets must not be committed past a bucket that is still held (open or retained): `held()`
 * gives, per partition, the lowest offset a replay must start from to rebuild every held bucket
 * exactly, and the watermark base there. For a gauge bucket that is its first point; for a counter
 * bucket it is the point before (the one its first rate is computed from), so a replay re-reads
 * the rate's base too. Points re-read before a held bucket only rebuild partial copies of buckets
 * already stored complete (a lower version) or the same correction rows, which the views collapse.
 */
export const COUNTER_STALENESS_MS = 5 * 60_000;

export interface Bucket extends Aggregate {
  seriesId: bigint;
  series: SeriesInfo;
  widthMs: number;
  startMs: number;
  /** Where a replay must start to rebuild the bucket (its first point; counters: the point before it), and the watermark base there. */
  baseOffset: number;
  baseMaxBeforeMs: number;
  closed: boolean;
  evicted: boolean;
  /** Its source partition. */
  topic: string;
  partition: number;
  /** The map that holds it (its series' in its partition, of its width), keyed by startMs / widthMs: eviction deletes it there without looking the series up. */
  home: Map<number, Bucket>;
}

export interface SeriesInfo {
  metric: string;
  tags: string[];
  type: number;
}

/**
 * A closed bucket as the stages (detectors, alert rules) receive it: the bucket itself, read-only,
 * valid while the task that closed it runs (a late point in a later task re-versions it).
 */
export type ClosedBucket = Readonly<Omit<Bucket, 'home'>>;
export type ClosedBucketStage = (bucket: ClosedBucket) => void;

interface PartSeries {
  /** Per width: bucket index (start / width, a small integer: V8 hashes it fastest) → bucket. */
  buckets: Map<number, Bucket>[];
  prevTs: number;
  prevValue: number;
  /** Counters: the previous point's offset and the partition's highest event time before it. */
  prevOffset: number;
  prevMaxBeforeMs: number;
}

interface Partition {
  topic: string;
  partition: number;
  /** Per series of this shard. */
  series: Map<bigint, PartSeries>;
  /** Open buckets by end time. */
  open: Map<number, Bucket[]>;
  /** Closed, retained buckets by eviction time (end + retention). */
  retained: Map<number, Bucket[]>;
  /** Held buckets by base offset (a min-heap; evicted ones leave lazily): the top is the held minimum. */
  heap: Bucket[];
  /** Highest source offset applied: shares must arrive in offset order. */
  lastOffset: number;
}

export interface RollupOutput {
  rows: RollupRow[];
  closed: number;
  late: number;
  counterOutOfOrder: number;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

export class RollupState {
  private readonly parts = new Map<string, Partition>();
  private readonly info = new Map<bigint, SeriesInfo>();
  readonly stages: ClosedBucketStage[] = [];

  constructor(private readonly settings: RollupSettings) {}

  private part(topic: string, partition: number): Partition {
    const key = `${topic}\u0000${partition}`;
    let p = this.parts.get(key);
    if (!p) {
      p = { topic, partition, series: new Map(), open: new Map(), retained: new Map(), heap: [], lastOffset: -1 };
      this.parts.set(key, p);
    }
    return p;
  }

  get bucketCount(): number {
    let n = 0;
    for (const p of this.parts.values()) for (const list of p.open.values()) n += list.length;
    for (const p of this.parts.values()) for (const list of p.retained.values()) n += list.length;
    return n;
  }

  /** Applies one task's share of a partition, then closes and evicts by the watermark after it. */
  apply(topic: string, partition: number, batch: ShardBatch, maxBeforeTaskMs: number, maxAfterTaskMs: number): RollupOutput {
    const p = this.part(topic, partition);
    if (batch.count > 0) {
      const first = batch.offsets[0] as number;
      // Everything here (watermarks, held offsets, versions) assumes offset order; out of
      // order it would silently lose points, so it fails loudly instead.
      if (first <= p.lastOffset) throw new Error(`shard share of ${topic}/${partition} starts at offset ${first}, at or before ${p.lastOffset} already applied`);
      p.lastOffset = batch.offsets[batch.count - 1] as number;
    }
    const out: RollupOutput = { rows: [], closed: 0, late: 0, counterOutOfOrder: 0 };
    for (let d = 0; d < batch.dictIds.length; d++) {
      const id = batch.dictIds[d] as bigint;
      if (!this.info.has(id)) this.info.set(id, { metric: batch.dictMetrics[d] as string, tags: batch.dictTags[d] as string[], type: 0 });
    }
    const dirty = new Set<Bucket>();
    const { latenessMs, retentionMs, widthsMs } = this.settings;
    for (let i = 0; i < batch.count; i++) {
      const id = batch.seriesIds[i] as bigint;
      const ts = batch.tsMs[i] as number;
      const offset = batch.offsets[i] as number;
      const type = batch.types[i] as number;
      const info = this.info.get(id) as SeriesInfo;
      info.type = type;
      let ps = p.series.get(id);
      if (!ps) {
        ps = { buckets: widthsMs.map(() => new Map()), prevTs: -Infinity, prevValue: 0, prevOffset: -1, prevMaxBeforeMs: -Infinity };
        p.series.set(id, ps);
      }
      let value = batch.values[i] as number;
      const maxBefore = Math.max(maxBeforeTaskMs, batch.maxBeforeMs[i] as number);
      let baseOffset = offset;
      let baseMaxBeforeMs = maxBefore;
      if (type === 1) {
        // Counter: the sample is the per-second rate since the previous point.
        const prevTs = ps.prevTs;
        if (ts <= prevTs) {
          out.counterOutOfOrder++;
          continue;
        }
        const prevValue = ps.prevValue;
        baseOffset = ps.prevOffset;
        baseMaxBeforeMs = ps.prevMaxBeforeMs;
        ps.prevTs = ts;
        ps.prevValue = value;
        ps.prevOffset = offset;
        ps.prevMaxBeforeMs = maxBefore;
        if (prevTs === -Infinity || ts - prevTs > COUNTER_STALENESS_MS) continue;
        const increase = value >= prevValue ? value - prevValue : value;
        value = increase / ((ts - prevTs) / 1000);
      }
      const watermark = maxBefore - latenessMs;
      let late = false;
      for (let w = 0; w < widthsMs.length; w++) {
        const width = widthsMs[w] as number;
        const index = Math.floor(ts / width);
        const start = index * width;
        const end = start + width;
        // Classified by the point's own watermark only (never by what happens to be in memory,
        // which depends on where tasks were cut): past end + retention, a correction row.
        if (end + retentionMs <= watermark) {
          late = true;
          out.rows.push(this.row(id, info, width, start, p, 2, offset, batch.pointIndexes[i] as number, 1, value, value, value, value, ts, value * value, 1));
          continue;
        }
        const map = ps.buckets[w] as Map<number, Bucket>;
        let b = map.get(index);
        if (!b) {
          b = {
            seriesId: id,
            series: info,
            widthMs: width,
            startMs: start,
            count: 0,
            sum: 0,
            min: Infinity,
            max: -Infinity,
            last: 0,
            lastTsMs: -Infinity,
            sumsq: 0,
            baseOffset,
            baseMaxBeforeMs,
            closed: false,
            evicted: false,
            topic: p.topic,
            partition: p.partition,
            home: map,
          };
          map.set(index, b);
          heapPush(p.heap, b);
          if (end <= watermark) {
            // The bucket had already closed for this partition: born closed, retained.
            b.closed = true;
            push(p.retained, end + retentionMs, b);
          } else {
            push(p.open, end, b);
          }
        }
        b.count++;
        b.sum += value;
        if (value < b.min) b.min = value;
        if (value > b.max) b.max = value;
        if (ts >= b.lastTsMs) {
          b.last = value;
          b.lastTsMs = ts;
        }
        b.sumsq += value * value;
        if (b.closed) {
          late = true;
          dirty.add(b);
        }
      }
      if (late) out.late++;
    }
    for (const b of dirty) out.rows.push(this.bucketRow(b, p));
    const watermark = maxAfterTaskMs - latenessMs;
    this.close(p, watermark, out);
    this.evict(p, watermark);
    return out;
  }

  /** Wall-clock close of an idle partition: emission only, the data watermark is untouched. */
  idle(topic: string, partition: number, wallWatermarkMs: number): RollupOutput {
    const out: RollupOutput = { rows: [], closed: 0, late: 0, counterOutOfOrder: 0 };
    this.close(this.part(topic, partition), wallWatermarkMs, out);
    return out;
  }

  private close(p: Partition, watermark: number, out: RollupOutput): void {
    const ends = [...p.open.keys()].filter((e) => e <= watermark).sort((a, b) => a - b);
    for (const end of ends) {
      for (const b of p.open.get(end) as Bucket[]) {
        b.closed = true;
        out.rows.push(this.bucketRow(b, p));
        out.closed++;
        for (const stage of this.stages) stage(b);
        push(p.retained, end + this.settings.retentionMs, b);
      }
      p.open.delete(end);
    }
  }

  private evict(p: Partition, watermark: number): void {
    for (const until of [...p.retained.keys()]) {
      if (until > watermark) continue;
      for (const b of p.retained.get(until) as Bucket[]) {
        b.evicted = true;
        const index = b.startMs / b.widthMs;
        if (b.home.get(index) === b) b.home.delete(index);
      }
      p.retained.delete(until);
    }
    while (p.heap.length > 0 && (p.heap[0] as Bucket).evicted) heapPop(p.heap);
  }

  /** Lowest offset a replay must start from to rebuild every bucket still held for the partition, with its watermark base. */
  held(topic: string, partition: number): HeldOffset | null {
    const p = this.part(topic, partition);
    const b = p.heap[0];
    return b ? { offset: b.baseOffset, maxBeforeMs: b.baseMaxBeforeMs } : null;
  }

  /** Forgets series state of the given ids (idle eviction); their held buckets go with them. */
  forget(ids: ReadonlySet<bigint>): void {
    for (const p of this.parts.values()) {
      for (const id of ids) {
        const ps = p.series.get(id);
        if (!ps) continue;
        for (const map of ps.buckets) for (const b of map.values()) b.evicted = true;
        p.series.delete(id);
      }
      for (const m of [p.open, p.retained]) {
        for (const [k, list] of m) {
          const keep = list.filter((b) => !b.evicted);
          if (keep.length > 0) m.set(k, keep);
          else m.delete(k);
        }
      }
      while (p.heap.length > 0 && (p.heap[0] as Bucket).evicted) heapPop(p.heap);
    }
    for (const id of ids) this.info.delete(id);
  }

  private bucketRow(b: Bucket, p: Partition): RollupRow {
    return this.row(b.seriesId, b.series, b.widthMs, b.startMs, p, 1, 0, 0, b.count, b.sum, b.min, b.max, b.last, b.lastTsMs, b.sumsq, b.count);
  }

  private row(
    seriesId: bigint,
    info: SeriesInfo,
    widthMs: number,
    startMs: number,
    p: Partition,
    kind: 1 | 2,
    correctionOffset: number,
    correctionPoint: number,
    count: number,
    sum: number,
    min: number,
    max: number,
    last: number,
    lastTsMs: number,
    sumsq: number,
    version: number,
  ): RollupRow {
    return { seriesId, metric: info.metric, tags: info.tags, type: info.type, widthMs, startMs, topic: p.topic, partition: p.partition, kind, correctionOffset, correctionPoint, count, sum, min, max, last, lastTsMs, sumsq, version };
  }
}

/** A binary min-heap of buckets by base offset (buckets with one base share its watermark base too). */
function before(a: Bucket, b: Bucket): boolean {
  return a.baseOffset < b.baseOffset;
}

function heapPush(h: Bucket[], b: Bucket): void {
  h.push(b);
  let i = h.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(h[i] as Bucket, h[parent] as Bucket)) break;
    [h[i], h[parent]] = [h[parent] as Bucket, h[i] as Bucket];
    i = parent;
  }
}

function heapPop(h: Bucket[]): void {
  const last = h.pop() as Bucket;
  if (h.length === 0) return;
  h[0] = last;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < h.length && before(h[l] as Bucket, h[m] as Bucket)) m = l;
    if (r < h.length && before(h[r] as Bucket, h[m] as Bucket)) m = r;
    if (m === i) return;
    [h[i], h[m]] = [h[m] as Bucket, h[i] as Bucket];
    i = m;
  }
}
