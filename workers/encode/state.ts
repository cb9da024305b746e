import { RowBinaryWriter } from './rowbinary.js';

/**
 * Columns of one `detector_state` row in encoding order (the DDL in sinks/clickhouse/schema.ts is
 * built from this): a series' detector state after its latest scored bucket, serialised with
 * node:v8 (plain objects and typed arrays), tagged with the ensemble settings it belongs to. The
 * ReplacingMergeTree keeps the highest `version` (buckets scored) per source partition, series
 * and width; a new consumer group generation restores from it, so a handoff or restart changes
 * no score (README: Several instances in one consumer group).
 */
export const STATE_COLUMNS = [
  ['source_topic', 'String'],
  ['source_partition', 'UInt32'],
  ['series_id', 'UInt64'],
  ['width_s', 'UInt32'],
  ['settings', 'String'],
  ['last_bucket', 'DateTime'],
  ['version', 'UInt64'],
  ['state', 'String'],
] as const;

export interface StateRow {
  topic: string;
  partition: number;
  seriesId: bigint;
  widthMs: number;
  settings: string;
  lastBucketMs: number;
  version: number;
  state: Uint8Array;
}

export class StateEncoder {
  readonly rows = new RowBinaryWriter(1 << 14);
  count = 0;

  add(r: StateRow): void {
    const w = this.rows;
    w.string(r.topic);
    w.uint32(r.partition);
    w.bigUint64(r.seriesId);
    w.uint32(Math.round(r.widthMs / 1000));
    w.string(r.settings);
    w.uint32(Math.max(0, Math.floor(r.lastBucketMs / 1000)));
    w.uint64(r.version);
    w.bytes(r.state);
    this.count++;
  }
}
