import { MODEL_STATE_VERSION, type EnsembleSettings } from '../models/ensemble.js';
import type { AlertRulesSettings, Transition } from './alerts/evaluator.js';
import { encodeSeries, readSeries, type StringInterner } from './encode/rowbinary.js';

/**
 * The contract of the shard stage (workers/shard.ts). A series belongs to exactly one shard
 * (its series id mod the shard count) and each shard's state lives in one pinned thread. The
 * ingest task splits its points by shard; the main thread hands every shard its share of every
 * task (possibly empty: watermarks must advance everywhere), in offset order per partition.
 */
export interface ShardBatch {
  count: number;
  /** Per point: its series' index in the dictionary (`dictIds`): the shard resolves a series once per share, not per point. */
  dictIndexes: Uint32Array;
  tsMs: Float64Array;
  values: Float64Array;
  types: Uint8Array;
  offsets: Float64Array;
  pointIndexes: Uint32Array;
  /**
   * Highest event time of the task's messages before this point's message (all shards'
   * points; -Infinity for the first message). With the partition's maximum before the task it
   * gives the watermark a point is judged by, independently of how points were split.
   */
  maxBeforeMs: Float64Array;
  /**
   * Each distinct series of the share (rollup rows carry their metric and tags): its id, and its
   * columns as writeSeries writes them in `dictSeries[dictBounds[d] .. dictBounds[d + 1]]`, read
   * only for a series new to the shard (`dictEntry`). Bytes transfer between threads; a string per
   * tag was cloned twice on the way (worker → main → shard), 10× the cost of the rest of the batch.
   */
  dictIds: BigUint64Array;
  dictSeries: Uint8Array;
  dictBounds: Uint32Array;
}

/** The metric, sorted tags and tenant of the share's series `d` (an index into `dictIds`). */
export function dictEntry(batch: ShardBatch, d: number, interner?: StringInterner): { metric: string; tags: string[]; tenant: string } {
  const { metric, tags, tenant } = readSeries(batch.dictSeries.subarray(batch.dictBounds[d], batch.dictBounds[d + 1]), interner);
  return { metric, tags, tenant };
}

export interface RollupSettings {
  widthsMs: number[];
  latenessMs: number;
  retentionMs: number;
}

export interface ModelSettings {
  /** The rollup width whose closed buckets are scored. */
  widthMs: number;
  ensemble: EnsembleSettings;
  /** A `vigil train` model directory; empty: no LSTM. */
  lstmModelDir: string;
  /** Rows below this ensemble score are not written to `anomalies`. */
  minScore: number;
  /** Forecasts of the series `series` selects (models/forecast.ts); null: none. Not part of `stateKey`: the forecast state stands on its own. */
  forecast?: ForecastSettings | null;
}

export interface ForecastSettings {
  series: readonly { metric: string; tags: Readonly<Record<string, string>> }[];
  horizonMs: number;
  stepMs: number;
  refreshMs: number;
}

/**
 * What a series' detector state belongs to: the ensemble settings that shaped it (minScore only
 * filters rows) and the layout of the state (MODEL_STATE_VERSION). 16 hex digits of FNV-1a 64 over their JSON; a restored state must match it.
 */
export function stateKey(settings: ModelSettings): string {
  const text = JSON.stringify({ ...settings, minScore: undefined, forecast: undefined, version: MODEL_STATE_VERSION });
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i++) h = ((h ^ BigInt(text.charCodeAt(i))) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, '0');
}

/**
 * The `settings` of a series' detector_state rows: the ensemble's key, or, with scoring off, a key
 * for rule state alone at that width.
 */
export function snapshotKey(models: ModelSettings | null, widthMs: number): string {
  return models ? stateKey(models) : `rules-only-${widthMs}`;
}

export interface ShardTask {
  /**
   * `data`: a share of one task; `idle`: a wall-clock close of an idle partition; `reset`: a new
   * consumer group generation, every series' state is dropped (as in a fresh thread) and the
   * alert rules start from `seeds` (the firing alerts); `restore`: detector state of the series
   * in `restore` (read back from `detector_state`) before the generation's first data; `save`:
   * the partition's unsaved series state written now (a drained shutdown), and what it still holds.
   */
  kind: 'data' | 'idle' | 'reset' | 'restore' | 'save';
  topic: string;
  partition: number;
  /** Highest event time of the partition before this task (-Infinity when none). */
  partitionMaxBeforeMs: number;
  /** Highest event time of the partition after this task. */
  partitionMaxAfterMs: number;
  /** For `idle` tasks: wall-clock watermark that closes (but never reclassifies) buckets. */
  idleWatermarkMs: number;
  batch: ShardBatch;
  nowMs: number;
  seriesIdleMs: number;
  /**
   * Event time a partition's judged buckets may span before the state of their series is written
   * to `detector_state` (0: after every task that judges one). Until then the partition's offsets
   * are held at the first judged bucket, so a replay judges those buckets again from the last
   * state written.
   */
  stateIntervalMs: number;
  /**
   * Most series this shard holds state for: a point of a new series past it skips the stateful
   * stages (rollups, detectors, rules) and is reported in `refused` (its raw row is stored by then).
   */
  maxSeries: number;
  /** Most series of one named tenant a shard holds (`tenants.maxSeriesPerShard`). */
  maxTenantSeries: number;
  rollups: RollupSettings | null;
  /** Anomaly scoring of closed buckets (needs rollups). */
  models: ModelSettings | null;
  /** Alert rules evaluated on closed buckets of `alertWidthMs` (needs rollups). */
  alerts: AlertRulesSettings | null;
  alertWidthMs: number;
  /** For `reset` tasks: the alerts firing now (null: no alerting). */
  seeds?: { fingerprint: string; startsAtMs: number }[] | null;
  /** For `restore` tasks: series ids and their serialised detector state (`data[bounds[2i] .. bounds[2i+1]]`). */
  restore?: { ids: BigUint64Array; bounds: Uint32Array; data: Uint8Array };
}

export interface HeldOffset {
  /** Lowest source offset of a bucket this shard still holds for the partition. */
  offset: number;
  /** The partition's highest event time before that offset's message (the watermark to resume with). */
  maxBeforeMs: number;
}

/** The lower of two holds (null: none): a commit may go no further than either. */
export function lowerHold(a: HeldOffset | null, b: HeldOffset | null): HeldOffset | null {
  if (!a) return b;
  if (!b) return a;
  return b.offset < a.offset ? b : a;
}

export interface ShardResult {
  /** Series this shard holds state for, after eviction. */
  series: number;
  /** The shard thread's V8 heap in use after the task (v8.getHeapStatistics()). */
  stateBytes: number;
  evicted: number;
  /** RowBinary rows for `rollups` (empty when none). */
  rollupBody: Uint8Array;
  rollupRows: number;
  /** RowBinary rows for `anomalies` (empty when none). */
  anomalyBody: Uint8Array;
  anomalyRows: number;
  /** RowBinary rows for `forecasts` (empty when none). */
  forecastBody: Uint8Array;
  forecastRows: number;
  /** RowBinary rows for `detector_state`: the state of each series scored by this task. */
  stateBody: Uint8Array;
  stateRows: number;
  /** Closed buckets the ensemble scored, and how many of them it flagged. */
  scored: number;
  flagged: number;
  /** Alert condition transitions, in event order. */
  alerts: Transition[];
  /** Buckets closed for the first time (handed to the closed-bucket stages). */
  closed: number;
  /** Points that reached a bucket after it had closed. */
  late: number;
  /** Counter points older than their series' previous point (no rate). */
  counterOutOfOrder: number;
  held: HeldOffset | null;
  /** Points of new series refused for the series limit (null: none). */
  refused: RefusedPoints | null;
  /** Points of new series refused for their tenant's series limit, one entry per tenant. */
  tenantRefused: RefusedPoints[];
  /** Series this task found coming from a second source partition (each counted once). */
  splits: number;
}

/** What the series limit turned away in one task: counts and the first points, as JSON lines. */
export interface RefusedPoints {
  points: number;
  /** Distinct new series among them. */
  series: number;
  firstOffset: number;
  lastOffset: number;
  /** The first refused points as newline-delimited JSON points (`{"name","value","timestamp","tags"}`), up to REFUSED_SAMPLE_BYTES. */
  sample: string;
  /** Set when refused for the tenant's own limit (`tenants.maxSeriesPerShard`), not the shard's. */
  tenant?: string;
}

/** Bytes of refused points a shard result carries back as a sample. */
export const REFUSED_SAMPLE_BYTES = 64 * 1024;

/** The points of `batch` whose `keep` flag is set (the dictionary is left whole). */
export function filterBatch(batch: ShardBatch, keep: Uint8Array): ShardBatch {
  let n = 0;
  for (let i = 0; i < batch.count; i++) if (keep[i]) n++;
  const out: ShardBatch = {
    ...batch,
    count: n,
    dictIndexes: new Uint32Array(n),
    tsMs: new Float64Array(n),
    values: new Float64Array(n),
    types: new Uint8Array(n),
    offsets: new Float64Array(n),
    pointIndexes: new Uint32Array(n),
    maxBeforeMs: new Float64Array(n),
  };
  for (let i = 0, j = 0; i < batch.count; i++) {
    if (!keep[i]) continue;
    out.dictIndexes[j] = batch.dictIndexes[i] as number;
    out.tsMs[j] = batch.tsMs[i] as number;
    out.values[j] = batch.values[i] as number;
    out.types[j] = batch.types[i] as number;
    out.offsets[j] = batch.offsets[i] as number;
    out.pointIndexes[j] = batch.pointIndexes[i] as number;
    out.maxBeforeMs[j] = batch.maxBeforeMs[i] as number;
    j++;
  }
  return out;
}

/** A shard result with nothing in it (a reset, a restore); tests spread their figures over it. */
export function emptyShardResult(): ShardResult {
  return {
    series: 0,
    stateBytes: 0,
    evicted: 0,
    rollupBody: new Uint8Array(0),
    rollupRows: 0,
    anomalyBody: new Uint8Array(0),
    anomalyRows: 0,
    forecastBody: new Uint8Array(0),
    forecastRows: 0,
    stateBody: new Uint8Array(0),
    stateRows: 0,
    scored: 0,
    flagged: 0,
    alerts: [],
    closed: 0,
    late: 0,
    counterOutOfOrder: 0,
    held: null,
    refused: null,
    tenantRefused: [],
    splits: 0,
  };
}

const EMPTY_IDS = new BigUint64Array(0);

/** Growable per-shard columns filled by the ingest task. */
export class ShardCollector {
  count = 0;
  dictIndexes = new Uint32Array(256);
  tsMs = new Float64Array(256);
  values = new Float64Array(256);
  types = new Uint8Array(256);
  offsets = new Float64Array(256);
  pointIndexes = new Uint32Array(256);
  maxBeforeMs = new Float64Array(256);
  /** Per series: its index, and its columns as writeSeries writes them. */
  private readonly dict = new Map<bigint, number>();
  private readonly dictEncoded: Uint8Array[] = [];
  private dictBytes = 0;

  /** `encoded`: the series' writeSeries bytes when the caller has them (encoded here otherwise, with `tenant`). */
  add(id: bigint, metric: string, tags: readonly string[], tsMs: number, value: number, type: number, offset: number, pointIndex: number, maxBeforeMs: number, encoded?: Uint8Array, tenant = ''): void {
    if (this.count === this.tsMs.length) this.grow();
    const i = this.count++;
    this.tsMs[i] = tsMs;
    this.values[i] = value;
    this.types[i] = type;
    this.offsets[i] = offset;
    this.pointIndexes[i] = pointIndex;
    this.maxBeforeMs[i] = maxBeforeMs;
    let d = this.dict.get(id);
    if (d === undefined) {
      const bytes = encoded ?? encodeSeries(id, metric, tags, tenant);
      d = this.dictEncoded.length;
      this.dict.set(id, d);
      this.dictEncoded.push(bytes);
      this.dictBytes += bytes.length;
    }
    this.dictIndexes[i] = d;
  }

  private grow(): void {
    const n = this.tsMs.length * 2;
    const grown = <T extends { set(a: ArrayLike<never>): void }>(a: ArrayLike<never>, b: T): T => (b.set(a), b);
    this.dictIndexes = grown(this.dictIndexes as never, new Uint32Array(n));
    this.tsMs = grown(this.tsMs as never, new Float64Array(n));
    this.values = grown(this.values as never, new Float64Array(n));
    this.types = grown(this.types as never, new Uint8Array(n));
    this.offsets = grown(this.offsets as never, new Float64Array(n));
    this.pointIndexes = grown(this.pointIndexes as never, new Uint32Array(n));
    this.maxBeforeMs = grown(this.maxBeforeMs as never, new Float64Array(n));
  }

  /** Exact-length copies, ready to transfer. */
  finish(): ShardBatch {
    const n = this.count;
    const dictIds = this.dict.size > 0 ? new BigUint64Array(this.dict.size) : EMPTY_IDS;
    const dictSeries = new Uint8Array(this.dictBytes);
    const dictBounds = new Uint32Array(this.dict.size + 1);
    for (const [id, d] of this.dict) {
      const bytes = this.dictEncoded[d] as Uint8Array;
      dictIds[d] = id;
      dictSeries.set(bytes, dictBounds[d]);
      dictBounds[d + 1] = (dictBounds[d] as number) + bytes.length;
    }
    return {
      count: n,
      dictIndexes: this.dictIndexes.slice(0, n),
      tsMs: this.tsMs.slice(0, n),
      values: this.values.slice(0, n),
      types: this.types.slice(0, n),
      offsets: this.offsets.slice(0, n),
      pointIndexes: this.pointIndexes.slice(0, n),
      maxBeforeMs: this.maxBeforeMs.slice(0, n),
      dictIds,
      dictSeries,
      dictBounds,
    };
  }
}

export function emptyBatch(): ShardBatch {
  return new ShardCollector().finish();
}

export function batchBuffers(b: ShardBatch): ArrayBuffer[] {
  const buffers = [b.dictIndexes.buffer, b.tsMs.buffer, b.values.buffer, b.types.buffer, b.offsets.buffer, b.pointIndexes.buffer, b.maxBeforeMs.buffer];
  if (b.dictIds.length > 0) buffers.push(b.dictIds.buffer, b.dictSeries.buffer, b.dictBounds.buffer);
  return buffers as ArrayBuffer[];
}
