import { describe, expect, it } from 'vitest';
import { ANOMALY_COLUMNS, AnomalyEncoder } from '../../../../workers/encode/anomalies.js';
import { POINT_COLUMNS, PointsEncoder } from '../../../../workers/encode/points.js';
import { ROLLUP_COLUMNS, RollupEncoder } from '../../../../workers/encode/rollups.js';
import { STATE_COLUMNS, StateEncoder } from '../../../../workers/encode/state.js';
import { decodeRowBinary } from '../../../helpers/rowbinary.js';

// Every column of every row, decoded by a reader written from ClickHouse's RowBinary reference.
describe('RowBinary encoders', () => {
  it('points: one row per point, tags as parallel arrays, seconds and milliseconds of the timestamp', () => {
    const e = new PointsEncoder(16);
    e.add(0xfedcba9876543210n, 'system.cpu.usage_total', ['host', 'a', 'région', 'é'], 1, 1_700_000_000_999, -12.5, 'metrics', 3, 2 ** 40 + 7, 4);
    e.add(1n, 'm', [], 0, 1_000, 0.1, 't', 0, 0, 0);
    expect(e.count).toBe(2);
    expect(decodeRowBinary(e.rows.finish(), POINT_COLUMNS)).toEqual([
      {
        series_id: 0xfedcba9876543210n,
        metric: 'system.cpu.usage_total',
        'tags.key': ['host', 'région'],
        'tags.value': ['a', 'é'],
        tenant: '',
        type: 2,
        ts: 1_700_000_000,
        ts_ms: 1_700_000_000_999n,
        value: -12.5,
        source_topic: 'metrics',
        source_partition: 3,
        source_offset: BigInt(2 ** 40 + 7),
        point_index: 4,
      },
      { series_id: 1n, metric: 'm', 'tags.key': [], 'tags.value': [], tenant: '', type: 1, ts: 1, ts_ms: 1000n, value: 0.1, source_topic: 't', source_partition: 0, source_offset: 0n, point_index: 0 },
    ]);
  });

  it('a string longer than 127 bytes gets a multi-byte length prefix', () => {
    const e = new PointsEncoder(16);
    const long = 'x'.repeat(300) + 'ü'.repeat(100);
    e.add(2n, long, ['k', long], 0, 0, 1, long, 0, 0, 0);
    const [row] = decodeRowBinary(e.rows.finish(), POINT_COLUMNS);
    expect(row?.['metric']).toBe(long);
    expect(row?.['tags.value']).toEqual([long]);
    expect(row?.['source_topic']).toBe(long);
  });

  it('rollups: bucket key, kind, correction coordinates, every aggregate and the version, in column order', () => {
    const e = new RollupEncoder();
    e.add({ seriesId: 5n, metric: 'cpu', tags: ['host', 'a'], type: 0, widthMs: 60_000, startMs: 1_700_000_040_000, topic: 'm', partition: 2, kind: 2, correctionOffset: 99, correctionPoint: 3, count: 4, sum: 10, min: 1, max: 4, last: 2, lastTsMs: 1_700_000_050_123, sumsq: 30, version: 4 });
    expect(decodeRowBinary(e.rows.finish(), ROLLUP_COLUMNS)).toEqual([
      {
        series_id: 5n,
        metric: 'cpu',
        'tags.key': ['host'],
        'tags.value': ['a'],
        tenant: '',
        type: 1,
        width_s: 60,
        bucket_start: 1_700_000_040,
        source_topic: 'm',
        source_partition: 2,
        kind: 2,
        correction_offset: 99n,
        correction_point: 3,
        count: 4n,
        sum: 10,
        min: 1,
        max: 4,
        last: 2,
        last_ts_ms: 1_700_000_050_123n,
        sumsq: 30,
        version: 4n,
      },
    ]);
  });

  it('anomalies: value, band, each detector score in its own column, explanation and version', () => {
    const e = new AnomalyEncoder();
    e.add({
      seriesId: 9n,
      metric: 'lat',
      tags: [],
      type: 0,
      widthMs: 10_000,
      startMs: 20_000,
      value: 150,
      expected: 100,
      lower: 90,
      upper: 110,
      score: 0.8,
      anomaly: true,
      scores: { robust: 0.1, ewma: 0.2, seasonal: 0.3, iforest: 0.4, lstm: 0.5 },
      explanation: '{"drivers":["robust"]}',
      topic: 't',
      partition: 1,
      version: 77,
    });
    const [row] = decodeRowBinary(e.rows.finish(), ANOMALY_COLUMNS);
    expect(row).toEqual({
      series_id: 9n,
      metric: 'lat',
      'tags.key': [],
      'tags.value': [],
      tenant: '',
      type: 1,
      width_s: 10,
      bucket_start: 20,
      value: 150,
      expected: 100,
      lower: 90,
      upper: 110,
      score: 0.8,
      anomaly: 1,
      score_robust: 0.1,
      score_ewma: 0.2,
      score_seasonal: 0.3,
      score_iforest: 0.4,
      score_lstm: 0.5,
      explanation: '{"drivers":["robust"]}',
      source_topic: 't',
      source_partition: 1,
      version: 77n,
    });
  });

  it('detector_state: the state bytes as written, not re-encoded', () => {
    const e = new StateEncoder();
    const state = new Uint8Array([0, 255, 128, 10, 13, 0xc3]);
    e.add({ topic: 't', partition: 7, seriesId: 3n, widthMs: 60_000, settings: 'abc', lastBucketMs: 120_500, version: 12, state });
    const [row] = decodeRowBinary(e.rows.finish(), STATE_COLUMNS, { rawStrings: ['state'] });
    expect(row).toEqual({ source_topic: 't', source_partition: 7, series_id: 3n, width_s: 60, settings: 'abc', last_bucket: 120, version: 12n, state });
  });
});
