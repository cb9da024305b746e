import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../../core/config/index.js';
import { partitionEndMs, retentionPolicy, ttlExpression, ttlStatements, type RetentionPolicy } from '../../../../sinks/clickhouse/retention.js';

const policy = (over: Partial<RetentionPolicy> = {}): RetentionPolicy => ({ points: 90, rollups: 365, rollupsByWidth: new Map(), metricRollups: 365, anomalies: 90, forecasts: 30, incidents: 365, alerts: 365, ...over });

describe('retention policy', () => {
  it('reads retention.* from the configuration, rollup widths as seconds:days', () => {
    const config = loadConfig({ env: { VIGIL_RETENTION_ROLLUPS_WIDTH_DAYS: '10:7,60:0', VIGIL_RETENTION_POINTS_DAYS: '30' } });
    expect(retentionPolicy(config.retention)).toEqual({ points: 30, rollups: 365, rollupsByWidth: new Map([[10, 7], [60, 0]]), metricRollups: 0, anomalies: 90, forecasts: 30, incidents: 365, alerts: 365 });
    expect(() => loadConfig({ env: { VIGIL_RETENTION_ROLLUPS_WIDTH_DAYS: '10-7' } })).toThrow(/retention.rollupsWidthDays/);
    // metric_rollups (per minute) keeps as the 60 s width, or as rollups when no width says so.
    expect(retentionPolicy(loadConfig({ env: { VIGIL_RETENTION_ROLLUPS_WIDTH_DAYS: '60:30', VIGIL_RETENTION_ROLLUPS_DAYS: '90' } }).retention).metricRollups).toBe(30);
    expect(retentionPolicy(loadConfig({ env: { VIGIL_RETENTION_ROLLUPS_WIDTH_DAYS: '10:7', VIGIL_RETENTION_ROLLUPS_DAYS: '90' } }).retention).metricRollups).toBe(90);
  });

  it('gives each table a TTL on its event-time column, rollups per width (a width kept for ever never expires), none when kept for ever', () => {
    expect(ttlExpression('points', policy())).toBe('ts + toIntervalDay(90)');
    expect(ttlExpression('alerts', policy())).toBe('starts_at + toIntervalDay(365)');
    expect(ttlExpression('anomalies', policy({ anomalies: 0 }))).toBeNull();
    expect(ttlExpression('metric_rollups', policy({ metricRollups: 30 }))).toBe('bucket_start + toIntervalDay(30)');
    expect(ttlExpression('rollups', policy())).toBe('bucket_start + toIntervalDay(365)');
    expect(ttlExpression('rollups', policy({ rollupsByWidth: new Map([[60, 365]]) }))).toBe('bucket_start + toIntervalDay(365)');
    expect(ttlExpression('rollups', policy({ rollupsByWidth: new Map([[10, 7], [60, 0]]) }))).toBe(
      "multiIf(width_s = 10, addDays(bucket_start, 7), width_s = 60, toDateTime('2105-12-31 00:00:00'), addDays(bucket_start, 365))",
    );
    expect(ttlExpression('rollups', policy({ rollups: 0, rollupsByWidth: new Map([[10, 7]]) }))).toBe("multiIf(width_s = 10, addDays(bucket_start, 7), toDateTime('2105-12-31 00:00:00'))");
  });

  it('alters only a table whose TTL differs from the policy, whatever the server does with spaces; removes one no longer wanted', () => {
    const engines = {
      points: "ReplacingMergeTree PARTITION BY toYYYYMMDD(ts) ORDER BY (metric) TTL ts + toIntervalDay(90) SETTINGS index_granularity = 8192",
      rollups: 'ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(bucket_start) ORDER BY (metric) SETTINGS index_granularity = 8192',
      anomalies: 'ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(bucket_start) ORDER BY (metric) TTL bucket_start + toIntervalDay(30) SETTINGS index_granularity = 8192',
      alerts: 'ReplacingMergeTree(observed_ms) PARTITION BY toYYYYMM(starts_at) ORDER BY (fingerprint, id) TTL starts_at  +  toIntervalDay(365)',
    };
    expect(ttlStatements('vigil', policy({ anomalies: 0 }), engines)).toEqual(['ALTER TABLE vigil.rollups MODIFY TTL bucket_start + toIntervalDay(365)', 'ALTER TABLE vigil.anomalies REMOVE TTL']);
    expect(ttlStatements('vigil', policy({ anomalies: 30 }), engines, 'c')).toEqual(['ALTER TABLE vigil.rollups ON CLUSTER c MODIFY TTL bucket_start + toIntervalDay(365)']);
  });

  it('reads daily and monthly partition names as the end of their range', () => {
    expect(partitionEndMs('20261127')).toBe(Date.UTC(2026, 10, 28));
    expect(partitionEndMs("'20261231'")).toBe(Date.UTC(2027, 0, 1));
    expect(partitionEndMs('202612')).toBe(Date.UTC(2027, 0, 1));
    expect(partitionEndMs('tuple()')).toBeNull();
  });
});
