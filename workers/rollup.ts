import { dictEntry, type ShardBatch, type HeldOffset, type RollupSettings } from './shard-task.js';
import type { Aggregate, RollupRow } from './encode/rollups.js';
import { StringInterner } from './encode/rowbinary.js';

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

export interface SeriesInfo {
  metric: string;
  tags: string[];
  /** '' for the default tenant. */
  tenant: string;
  type: number;
}

/**
 * A closed bucket as the stages (detectors, alert rules) receive it: a copy made when it closed
 * (a late point in a later task re-versions the stored bucket, not this).
 */
export interface ClosedBucket extends Aggregate {
  readonly seriesId: bigint;
  readonly series: SeriesInfo;
  readonly widthMs: number;
  readonly startMs: number;
  /** Where a replay must start to rebuild the bucket (its first point; counters: the point before it), and the watermark base there. */
  readonly baseOffset: number;
  readonly baseMaxBeforeMs: number;
  /** Its source partition. */
  readonly topic: string;
  readonly partition: number;
}
export type ClosedBucketStage = (bucket: ClosedBucket) => void;

/**
 * Buckets live in slots of typed arrays, not as an object each: a series holds about ten at the
 * defaults (open and retained, two widths), and as objects (with their boxed doubles, map entries
 * and list entries) they were most of a series' 2.7 KB of state and long-lived garbage for V8's
 * old generation. Per slot: F64 numbers, I32 links.
 */
const F64 = 10;
const COUNT = 0;
const SUM = 1;
const MIN = 2;
const MAX = 3;
const LAST = 4;
const LAST_TS = 5;
const SUMSQ = 6;
const START = 7;
const BASE_OFFSET = 8;
const BASE_MAX_BEFORE = 9;
const I32 = 4;
/** Its series slot. */
const SERIES = 0;
/** The next bucket of the same series and width (newest first), or the next free slot; -1 ends. */
const NEXT = 1;
/** Its index in its partition's held heap. */
const HEAP_POS = 2;
/** Width index << 1 | closed. */
const WIDTH_CLOSED = 3;

/** Per series and source partition: the counter's previous point, and per width the head of its bucket chain. */
const S_F64 = 4;
const PREV_TS = 0;
const PREV_VALUE = 1;
/** Counters: the previous point's offset and the partition's highest event time before it. */
const PREV_OFFSET = 2;
const PREV_MAX_BEFORE = 3;

interface Partition {
  topic: string;
  partition: number;
  /** Series id → series slot. */
  series: Map<bigint, number>;
  /** Open bucket slots by end time. */
  open: Map<number, number[]>;
  /** Closed, retained bucket slots by eviction time (end + retention). */
  retained: Map<number, number[]>;
  /** Held bucket slots by base offset (a min-heap, each slot knowing its place): the top is the held minimum. */
  heap: number[];
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

function grown<T extends Float64Array | Int32Array>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}

export class RollupState {
  private readonly parts = new Map<string, Partition>();
  readonly stages: ClosedBucketStage[] = [];
  private readonly widths: number;

  // Bucket slots.
  private f = new Float64Array(0);
  private m = new Int32Array(0);
  private bucketSlots = 0;
  private bucketFree = -1;
  private bucketsLive = 0;

  // Series slots (a series per source partition).
  private sf = new Float64Array(0);
  private heads = new Int32Array(0);
  private sIds: bigint[] = [];
  private sInfo: (SeriesInfo | undefined)[] = [];
  private sPart: (Partition | undefined)[] = [];
  private seriesSlots = 0;
  private seriesFree: number[] = [];
  /** Metric names and tag strings, one object each for all series that share them. */
  private readonly strings = new StringInterner();

  constructor(private readonly settings: RollupSettings) {
    this.widths = settings.widthsMs.length;
  }

  private part(topic: string, partition: number): Partition {
    const key = `${topic}\u0000${partition}`;
    let p = this.parts.get(key);
    if (!p) {
      p = { topic, partition, series: new Map(), open: new Map(), retained: new Map(), heap: [], lastOffset: -1 };
      this.parts.set(key, p);
    }
    return p;
  }

  /** Buckets held (open or retained). */
  get bucketCount(): number {
    return this.bucketsLive;
  }

  /** Bytes of the typed arrays holding buckets and series (their capacity; outside V8's heap statistics). */
  get arrayBytes(): number {
    return this.f.byteLength + this.m.byteLength + this.sf.byteLength + this.heads.byteLength;
  }

  private newBucket(): number {
    let b = this.bucketFree;
    if (b >= 0) this.bucketFree = this.m[b * I32 + NEXT] as number;
    else {
      b = this.bucketSlots++;
      if (b * F64 >= this.f.length) {
        // By half again, not double: at a million series the doubled arrays' slack was a third of
        // their bytes (bench:state --series 1000000: 1,343 → 1,036 bytes per series).
        const cap = Math.max(1024, Math.ceil(b * 1.5));
        this.f = grown(this.f, cap * F64);
        this.m = grown(this.m, cap * I32);
      }
    }
    this.bucketsLive++;
    return b;
  }

  private newSeries(p: Partition, id: bigint, info: SeriesInfo): number {
    let s = this.seriesFree.pop();
    if (s === undefined) {
      s = this.seriesSlots++;
      if (s * S_F64 >= this.sf.length) {
        const cap = Math.max(256, Math.ceil(s * 1.5));
        this.sf = grown(this.sf, cap * S_F64);
        this.heads = grown(this.heads, cap * this.widths);
      }
    }
    const o = s * S_F64;
    this.sf[o + PREV_TS] = -Infinity;
    this.sf[o + PREV_VALUE] = 0;
    this.sf[o + PREV_OFFSET] = -1;
    this.sf[o + PREV_MAX_BEFORE] = -Infinity;
    this.heads.fill(-1, s * this.widths, (s + 1) * this.widths);
    this.sIds[s] = id;
    this.sInfo[s] = info;
    this.sPart[s] = p;
    p.series.set(id, s);
    return s;
  }

  /**
   * Applies one task's share of a partition, then closes and evicts by the watermark after it.
   * `ids`: the share's series ids by dictionary index as the caller holds them (a series new here
   * is then keyed by that same BigInt object); without, read from the batch.
   */
  apply(topic: string, partition: number, batch: ShardBatch, maxBeforeTaskMs: number, maxAfterTaskMs: number, ids?: readonly bigint[]): RollupOutput {
    const p = this.part(topic, partition);
    if (batch.count > 0) {
      const first = batch.offsets[0] as number;
      // Everything here (watermarks, held offsets, versions) assumes offset order; out of
      // order it would silently lose points, so it fails loudly instead.
      if (first <= p.lastOffset) throw new Error(`shard share of ${topic}/${partition} starts at offset ${first}, at or before ${p.lastOffset} already applied`);
      p.lastOffset = batch.offsets[batch.count - 1] as number;
    }
    const out: RollupOutput = { rows: [], closed: 0, late: 0, counterOutOfOrder: 0 };
    // The share's series slots by dictionary index, each looked up (or made) at its first point.
    const slots = new Int32Array(batch.dictIds.length).fill(-1);
    const dirty = new Set<number>();
    const { latenessMs, retentionMs, widthsMs } = this.settings;
    const widths = this.widths;
    for (let i = 0; i < batch.count; i++) {
      const ts = batch.tsMs[i] as number;
      const offset = batch.offsets[i] as number;
      const type = batch.types[i] as number;
      const d = batch.dictIndexes[i] as number;
      let s = slots[d] as number;
      if (s < 0) {
        const id = ids?.[d] ?? (batch.dictIds[d] as bigint);
        s = p.series.get(id) ?? -1;
        if (s < 0) {
          // A literal, not `{ ...dictEntry(), type }`: V8 gives every object cloned by a leading
          // spread and then extended a hidden class (and descriptors) of its own, ~200 bytes per series.
          const { metric, tags, tenant } = dictEntry(batch, d, this.strings);
          s = this.newSeries(p, id, { metric, tags, tenant, type });
        }
        slots[d] = s;
      }
      const info = this.sInfo[s] as SeriesInfo;
      info.type = type;
      const so = s * S_F64;
      const sf = this.sf;
      let value = batch.values[i] as number;
      const maxBefore = Math.max(maxBeforeTaskMs, batch.maxBeforeMs[i] as number);
      let baseOffset = offset;
      let baseMaxBeforeMs = maxBefore;
      if (type === 1) {
        // Counter: the sample is the per-second rate since the previous point.
        const prevTs = sf[so + PREV_TS] as number;
        if (ts <= prevTs) {
          out.counterOutOfOrder++;
          continue;
        }
        const prevValue = sf[so + PREV_VALUE] as number;
        baseOffset = sf[so + PREV_OFFSET] as number;
        baseMaxBeforeMs = sf[so + PREV_MAX_BEFORE] as number;
        sf[so + PREV_TS] = ts;
        sf[so + PREV_VALUE] = value;
        sf[so + PREV_OFFSET] = offset;
        sf[so + PREV_MAX_BEFORE] = maxBefore;
        if (prevTs === -Infinity || ts - prevTs > COUNTER_STALENESS_MS) continue;
        const increase = value >= prevValue ? value - prevValue : value;
        value = increase / ((ts - prevTs) / 1000);
      }
      const watermark = maxBefore - latenessMs;
      let late = false;
      for (let w = 0; w < widths; w++) {
        const width = widthsMs[w] as number;
        const start = Math.floor(ts / width) * width;
        const end = start + width;
        // Classified by the point's own watermark only (never by what happens to be in memory,
        // which depends on where tasks were cut): past end + retention, a correction row.
        if (end + retentionMs <= watermark) {
          late = true;
          out.rows.push(this.row(this.sIds[s] as bigint, info, width, start, p, 2, offset, batch.pointIndexes[i] as number, 1, value, value, value, value, ts, value * value, 1));
          continue;
        }
        let b = this.find(s * widths + w, start);
        if (b < 0) b = this.createBucket(p, s, w, start, end, watermark, baseOffset, baseMaxBeforeMs);
        const f = this.f;
        const o = b * F64;
        f[o + COUNT] = (f[o + COUNT] as number) + 1;
        f[o + SUM] = (f[o + SUM] as number) + value;
        if (value < (f[o + MIN] as number)) f[o + MIN] = value;
        if (value > (f[o + MAX] as number)) f[o + MAX] = value;
        if (ts >= (f[o + LAST_TS] as number)) {
          f[o + LAST] = value;
          f[o + LAST_TS] = ts;
        }
        f[o + SUMSQ] = (f[o + SUMSQ] as number) + value * value;
        if (((this.m[b * I32 + WIDTH_CLOSED] as number) & 1) === 1) {
          late = true;
          dirty.add(b);
        }
      }
      if (late) out.late++;
    }
    for (const b of dirty) out.rows.push(this.bucketRow(b));
    const watermark = maxAfterTaskMs - latenessMs;
    this.close(p, watermark, out);
    this.evict(p, watermark);
    return out;
  }

  /** The bucket starting at `start` in the chain `h` (a series slot's width), or -1. */
  private find(h: number, start: number): number {
    let b = this.heads[h] as number;
    while (b >= 0 && this.f[b * F64 + START] !== start) b = this.m[b * I32 + NEXT] as number;
    return b;
  }

  private createBucket(p: Partition, s: number, w: number, start: number, end: number, watermark: number, baseOffset: number, baseMaxBeforeMs: number): number {
    const b = this.newBucket();
    const f = this.f;
    const o = b * F64;
    f[o + COUNT] = 0;
    f[o + SUM] = 0;
    f[o + MIN] = Infinity;
    f[o + MAX] = -Infinity;
    f[o + LAST] = 0;
    f[o + LAST_TS] = -Infinity;
    f[o + SUMSQ] = 0;
    f[o + START] = start;
    f[o + BASE_OFFSET] = baseOffset;
    f[o + BASE_MAX_BEFORE] = baseMaxBeforeMs;
    const h = s * this.widths + w;
    const mo = b * I32;
    this.m[mo + SERIES] = s;
    this.m[mo + NEXT] = this.heads[h] as number;
    this.heads[h] = b;
    // The bucket had already closed for this partition: born closed, retained.
    const closed = end <= watermark;
    this.m[mo + WIDTH_CLOSED] = (w << 1) | (closed ? 1 : 0);
    this.heapPush(p.heap, b);
    if (closed) push(p.retained, end + this.settings.retentionMs, b);
    else push(p.open, end, b);
    return b;
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
      for (const b of p.open.get(end) as number[]) {
        this.m[b * I32 + WIDTH_CLOSED] = (this.m[b * I32 + WIDTH_CLOSED] as number) | 1;
        out.rows.push(this.bucketRow(b));
        out.closed++;
        if (this.stages.length > 0) {
          const closed = this.closedBucket(b, p);
          for (const stage of this.stages) stage(closed);
        }
        push(p.retained, end + this.settings.retentionMs, b);
      }
      p.open.delete(end);
    }
  }

  private evict(p: Partition, watermark: number): void {
    for (const [until, list] of p.retained) {
      if (until > watermark) continue;
      for (const b of list) this.dropBucket(p, b);
      p.retained.delete(until);
    }
  }

  /** Takes a bucket out of its series' chain and its partition's heap, and frees its slot. */
  private dropBucket(p: Partition, b: number): void {
    const mo = b * I32;
    const h = (this.m[mo + SERIES] as number) * this.widths + ((this.m[mo + WIDTH_CLOSED] as number) >> 1);
    const next = this.m[mo + NEXT] as number;
    let at = this.heads[h] as number;
    if (at === b) this.heads[h] = next;
    else {
      while ((this.m[at * I32 + NEXT] as number) !== b) at = this.m[at * I32 + NEXT] as number;
      this.m[at * I32 + NEXT] = next;
    }
    this.heapRemove(p.heap, b);
    this.m[mo + NEXT] = this.bucketFree;
    this.bucketFree = b;
    this.bucketsLive--;
  }

  /** Lowest offset a replay must start from to rebuild every bucket still held for the partition, with its watermark base. */
  held(topic: string, partition: number): HeldOffset | null {
    const p = this.part(topic, partition);
    const b = p.heap[0];
    return b === undefined ? null : { offset: this.f[b * F64 + BASE_OFFSET] as number, maxBeforeMs: this.f[b * F64 + BASE_MAX_BEFORE] as number };
  }

  /** Forgets series state of the given ids (idle eviction); their held buckets go with them. */
  forget(ids: ReadonlySet<bigint>): void {
    for (const p of this.parts.values()) {
      const dropped = new Set<number>();
      for (const id of ids) {
        const s = p.series.get(id);
        if (s === undefined) continue;
        for (let h = s * this.widths; h < (s + 1) * this.widths; h++) {
          for (let b = this.heads[h] as number; b >= 0; b = this.m[b * I32 + NEXT] as number) dropped.add(b);
        }
        p.series.delete(id);
        this.seriesFree.push(s);
        this.sInfo[s] = undefined;
        this.sPart[s] = undefined;
      }
      if (dropped.size === 0) continue;
      for (const m of [p.open, p.retained]) {
        for (const [k, list] of m) {
          const keep = list.filter((b) => !dropped.has(b));
          if (keep.length > 0) m.set(k, keep);
          else m.delete(k);
        }
      }
      for (const b of dropped) this.dropBucket(p, b);
    }
  }

  private closedBucket(b: number, p: Partition): ClosedBucket {
    const f = this.f;
    const o = b * F64;
    const s = this.m[b * I32 + SERIES] as number;
    return {
      seriesId: this.sIds[s] as bigint,
      series: this.sInfo[s] as SeriesInfo,
      widthMs: this.settings.widthsMs[(this.m[b * I32 + WIDTH_CLOSED] as number) >> 1] as number,
      startMs: f[o + START] as number,
      count: f[o + COUNT] as number,
      sum: f[o + SUM] as number,
      min: f[o + MIN] as number,
      max: f[o + MAX] as number,
      last: f[o + LAST] as number,
      lastTsMs: f[o + LAST_TS] as number,
      sumsq: f[o + SUMSQ] as number,
      baseOffset: f[o + BASE_OFFSET] as number,
      baseMaxBeforeMs: f[o + BASE_MAX_BEFORE] as number,
      topic: p.topic,
      partition: p.partition,
    };
  }

  private bucketRow(b: number): RollupRow {
    const f = this.f;
    const o = b * F64;
    const s = this.m[b * I32 + SERIES] as number;
    const count = f[o + COUNT] as number;
    const width = this.settings.widthsMs[(this.m[b * I32 + WIDTH_CLOSED] as number) >> 1] as number;
    return this.row(
      this.sIds[s] as bigint,
      this.sInfo[s] as SeriesInfo,
      width,
      f[o + START] as number,
      this.sPart[s] as Partition,
      1,
      0,
      0,
      count,
      f[o + SUM] as number,
      f[o + MIN] as number,
      f[o + MAX] as number,
      f[o + LAST] as number,
      f[o + LAST_TS] as number,
      f[o + SUMSQ] as number,
      count,
    );
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
    return { seriesId, metric: info.metric, tags: info.tags, tenant: info.tenant, type: info.type, widthMs, startMs, topic: p.topic, partition: p.partition, kind, correctionOffset, correctionPoint, count, sum, min, max, last, lastTsMs, sumsq, version };
  }

  // The held heap: bucket slots by base offset (buckets with one base share its watermark base too).

  private before(a: number, b: number): boolean {
    return (this.f[a * F64 + BASE_OFFSET] as number) < (this.f[b * F64 + BASE_OFFSET] as number);
  }

  private place(h: number[], i: number, b: number): void {
    h[i] = b;
    this.m[b * I32 + HEAP_POS] = i;
  }

  private heapPush(h: number[], b: number): void {
    h.push(b);
    this.siftUp(h, h.length - 1, b);
  }

  private siftUp(h: number[], i: number, b: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pb = h[parent] as number;
      if (!this.before(b, pb)) break;
      this.place(h, i, pb);
      i = parent;
    }
    this.place(h, i, b);
  }

  private siftDown(h: number[], i: number, b: number): void {
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = h[l] as number;
      let ci = l;
      if (r < n && this.before(h[r] as number, c)) {
        c = h[r] as number;
        ci = r;
      }
      if (!this.before(c, b)) break;
      this.place(h, i, c);
      i = ci;
    }
    this.place(h, i, b);
  }

  private heapRemove(h: number[], b: number): void {
    const i = this.m[b * I32 + HEAP_POS] as number;
    const last = h.pop() as number;
    if (last === b) return;
    // The last slot takes b's place, then moves up or down to where it belongs.
    if (i > 0 && this.before(last, h[(i - 1) >> 1] as number)) this.siftUp(h, i, last);
    else this.siftDown(h, i, last);
  }
}
