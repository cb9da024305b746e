import { describe, expect, it } from 'vitest';
import { exportColumns, exportSql } from '../../../../sinks/clickhouse/export.js';
import { mergedRollupsSql, schemaStatements } from '../../../../sinks/clickhouse/schema.js';
import { capabilitiesOf } from '../../../../sinks/clickhouse/capabilities.js';
import { ANOMALY_COLUMNS } from '../../../../workers/encode/anomalies.js';

describe('exportSql', () => {
  it('reads rollups through rollups_merged’s own SELECT with the filters inside FINAL, quoted, times as seconds', () => {
    const sql = exportSql({ database: 'vigil', table: 'rollups', metricLike: "cpu's%", widthSeconds: 60, hours: 24 });
    const filter = " WHERE metric LIKE 'cpu\\'s%' AND width_s = 60 AND bucket_start >= now() - toIntervalHour(24)";
    expect(sql).toBe(`SELECT ${exportColumns('rollups').map(([n, k]) => (k === 'time' ? `toUInt32(\`${n}\`) AS \`${n}\`` : `\`${n}\``)).join(', ')} FROM (${mergedRollupsSql('vigil', filter)}) ORDER BY series_id, width_s, bucket_start`);
    expect(sql).toContain(`FROM vigil.rollups FINAL${filter})`);
    // The view is the same SELECT without a filter (as migration 15 made it again with the tenant).
    expect(schemaStatements('vigil', capabilitiesOf('18.16.1')).findLast((q) => q.startsWith('CREATE VIEW IF NOT EXISTS vigil.rollups_merged'))).toBe(`CREATE VIEW IF NOT EXISTS vigil.rollups_merged AS ${mergedRollupsSql('vigil')}`);
  });

  it('reads anomalies from the table with FINAL (the view anomalies_dedup), every column, no filter when none is given', () => {
    expect(exportColumns('anomalies').map(([n]) => n)).toEqual(ANOMALY_COLUMNS.map(([n]) => n));
    const sql = exportSql({ database: 'db', table: 'anomalies' });
    expect(sql).toMatch(/ FROM db\.anomalies FINAL ORDER BY series_id, width_s, bucket_start$/);
    expect(sql).toContain('toUInt32(`bucket_start`) AS `bucket_start`');
  });

  it('types each column for Arrow by what it holds', () => {
    const kinds = Object.fromEntries(exportColumns('rollups'));
    expect(kinds).toMatchObject({ series_id: 'u64', metric: 'label', 'tags.key': 'strings', type: 'label', width_s: 'u32', bucket_start: 'time', count: 'u64', last_ts_ms: 'i64', mean: 'f64', stddev: 'f64' });
    expect(Object.fromEntries(exportColumns('anomalies'))).toMatchObject({ anomaly: 'u8', explanation: 'string', source_topic: 'label', version: 'u64' });
  });
});
