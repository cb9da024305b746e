import { RowBinaryWriter, SERIES_COLUMNS, writeSeries } from './rowbinary.js';

/** The columns every per-bucket table (`rollups`, `anomalies`) starts with: the series and its bucket. */
export const BUCKET_KEY_COLUMNS = [
  ...SERIES_COLUMNS,
  ['type', "Enum8('gauge' = 1, 'counter' = 2)"],
  ['width_s', 'UInt32'],
  ['bucket_start', 'DateTime'],
] as const;

/** A series and one of its buckets: the leading fields of a per-bucket row. */
export interface BucketKey {
  seriesId: bigint;
  metric: string;
  tags: readonly string[];
  /** Absent or '' for the default tenant. */
  tenant?: string;
  type: number;
  widthMs: number;
  startMs: number;
}

/** Writes the BUCKET_KEY_COLUMNS of a row. */
export function writeBucketKey(w: RowBinaryWriter, k: BucketKey): void {
  writeSeries(w, k.seriesId, k.metric, k.tags, k.tenant ?? '');
  w.uint8(k.type + 1);
  w.uint32(k.widthMs / 1000);
  w.uint32(Math.floor(k.startMs / 1000));
}

/** Columns of one `rollups` row in encoding order (the DDL in sinks/clickhouse/schema.ts is built from this). */
export const ROLLUP_COLUMNS = [
  ...BUCKET_KEY_COLUMNS,
  ['source_topic', 'String'],
  ['source_partition', 'UInt32'],
  ['kind', "Enum8('bucket' = 1, 'correction' = 2)"],
  ['correction_offset', 'UInt64'],
  ['correction_point', 'UInt32'],
  ['count', 'UInt64'],
  ['sum', 'Float64'],
  ['min', 'Float64'],
  ['max', 'Float64'],
  ['last', 'Float64'],
  ['last_ts_ms', 'Int64'],
  ['sumsq', 'Float64'],
  ['version', 'UInt64'],
] as const;

/** The partial aggregate of a bucket (counters: of per-second rates). */
export interface Aggregate {
  count: number;
  sum: number;
  min: number;
  max: number;
  last: number;
  lastTsMs: number;
  sumsq: number;
}

export interface RollupRow extends Aggregate, BucketKey {
  topic: string;
  partition: number;
  /** 1 bucket row (versions replace each other), 2 correction row of one late point. */
  kind: 1 | 2;
  correctionOffset: number;
  correctionPoint: number;
  /** Bucket rows: the point count (the complete version is the highest). Correction rows: 1. */
  version: number;
}

export class RollupEncoder {
  readonly rows = new RowBinaryWriter(1 << 16);
  count = 0;

  add(r: RollupRow): void {
    const w = this.rows;
    writeBucketKey(w, r);
    w.string(r.topic);
    w.uint32(r.partition);
    w.uint8(r.kind);
    w.uint64(r.correctionOffset);
    w.uint32(r.correctionPoint);
    w.uint64(r.count);
    w.float64(r.sum);
    w.float64(r.min);
    w.float64(r.max);
    w.float64(r.last);
    w.int64(r.lastTsMs);
    w.float64(r.sumsq);
    w.uint64(r.version);
    this.count++;
  }
}
