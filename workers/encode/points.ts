import { RowBinaryWriter, SERIES_COLUMNS, writeSeries } from './rowbinary.js';

/**
 * Columns of one `points` row in the order the worker encodes them; the INSERT statement and the
 * table DDL (sinks/clickhouse/schema.ts) are built from this list so the three cannot drift.
 */
export const POINT_COLUMNS = [
  ...SERIES_COLUMNS,
  ['type', "Enum8('gauge' = 1, 'counter' = 2)"],
  ['ts', 'DateTime'],
  ['ts_ms', 'Int64'],
  ['value', 'Float64'],
  ['source_topic', 'String'],
  ['source_partition', 'UInt32'],
  ['source_offset', 'UInt64'],
  ['point_index', 'UInt32'],
] as const;

export class PointsEncoder {
  readonly rows: RowBinaryWriter;
  count = 0;
  /** The last topic written and its String bytes (a task has one topic). */
  private topic = '';
  private topicBytes: Uint8Array = new Uint8Array([0]);

  constructor(initialBytes?: number) {
    this.rows = new RowBinaryWriter(initialBytes);
  }

  /** `sortedTags` is the flat [k1, v1, ...] array sorted by key; `type` is 0 gauge, 1 counter. */
  add(
    seriesId: bigint,
    metric: string,
    sortedTags: readonly string[],
    type: number,
    tsMs: number,
    value: number,
    topic: string,
    partition: number,
    offset: number,
    pointIndex: number,
    tenant = '',
  ): void {
    writeSeries(this.rows, seriesId, metric, sortedTags, tenant);
    this.tail(type, tsMs, value, topic, partition, offset, pointIndex);
  }

  /** The same row with its series columns given as encodeSeries wrote them (cached per series). */
  addEncoded(series: Uint8Array, type: number, tsMs: number, value: number, topic: string, partition: number, offset: number, pointIndex: number): void {
    this.rows.raw(series);
    this.tail(type, tsMs, value, topic, partition, offset, pointIndex);
  }

  private tail(type: number, tsMs: number, value: number, topic: string, partition: number, offset: number, pointIndex: number): void {
    const w = this.rows;
    w.uint8(type + 1);
    w.uint32(Math.floor(tsMs / 1000));
    w.int64(tsMs);
    w.float64(value);
    if (topic !== this.topic) {
      const t = new RowBinaryWriter(topic.length * 3 + 10);
      t.string(topic);
      this.topic = topic;
      this.topicBytes = t.finish();
    }
    w.raw(this.topicBytes);
    w.uint32(partition);
    w.uint64(offset);
    w.uint32(pointIndex);
    this.count++;
  }
}
