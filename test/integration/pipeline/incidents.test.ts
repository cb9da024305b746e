import { describe, expect, it } from 'vitest';
import type { VigilConfig } from '../../../core/config/index.js';
import { rootLogger } from '../../../core/log.js';
import { startIncidents } from '../../../pipeline/incidents.js';
import { createMetrics } from '../../../pipeline/metrics.js';
import { ClickHouseSink } from '../../../sinks/clickhouse/index.js';
import { useResources } from '../../helpers/resources.js';

const res = useResources();
const T = Date.UTC(2026, 0, 5, 10) / 1000;

interface IncidentRow {
  incident_id: string;
  series_count: number;
  'members.metric': string[];
  'members.onset': string[];
  related: string;
}

describe('incidents from the anomalies table (18.16)', () => {
  it('groups co-occurring onsets across series into incidents, ranks members, finds related series once one is over, and writes only what changed', async () => {
    const db = await res.migratedDatabase('incidents');
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    const anomaly = (id: number, metric: string, t: number, flagged: 0 | 1, score: number, version: number) =>
      `(${id}, '${metric}', ['host'], ['h${id}'], 'gauge', 60, ${t}, ${score}, ${flagged}, ${version})`;
    const insertAnomalies = (rows: string[]) => res.clickhouse().command({ query: `INSERT INTO ${db}.anomalies (series_id, metric, tags.key, tags.value, type, width_s, bucket_start, score, anomaly, version) VALUES ${rows.join(', ')}` });
    await insertAnomalies([
      anomaly(1, 'app.latency', T, 1, 0.8, 2),
      // A replay's lower version of the same bucket: FINAL keeps the onset.
      anomaly(1, 'app.latency', T, 0, 0.1, 1),
      anomaly(2, 'app.errors', T + 120, 1, 0.95, 5),
      anomaly(3, 'db.latency', T + 300, 1, 0.7, 5),
      // Flagged by a replay that knew less, unflagged by the better-informed row: no onset.
      anomaly(5, 'app.cpu', T + 60, 1, 0.9, 1),
      anomaly(5, 'app.cpu', T + 60, 0, 0.2, 3),
      // Two hours later, a second incident; the newest scored bucket, a minute after it.
      anomaly(4, 'app.latency', T + 7200, 1, 0.6, 9),
      anomaly(4, 'app.latency', T + 7260, 0, 0.1, 10),
    ]);
    // Rollups around the first incident: db.connections follows app.latency's first series a minute later; db.noise does not.
    const shape = (i: number) => Math.sin(i / 3) + 0.4 * Math.cos(i * 1.7);
    const rollups: string[] = [];
    for (let i = -10; i <= 15; i++) {
      const t = T + i * 60;
      rollups.push(`(1, 'app.latency', ['host'], ['h1'], 60, ${t}, 1, ${100 + 20 * shape(i)})`);
      rollups.push(`(6, 'db.connections', ['host'], ['h6'], 60, ${t}, 1, ${50 + 5 * shape(i - 1)})`);
      rollups.push(`(7, 'db.noise', ['host'], ['h7'], 60, ${t}, 1, ${(Math.sin(i * 12.9898) * 43758.5453) % 1})`);
    }
    await res.clickhouse().command({ query: `INSERT INTO ${db}.rollups (series_id, metric, tags.key, tags.value, width_s, bucket_start, count, sum) VALUES ${rollups.join(', ')}` });

    const config = { ...res.config, clickhouse: { ...res.config.clickhouse, database: db }, models: { ...res.config.models, enabled: true, widthSeconds: 60 }, incidents: { ...res.config.incidents, windowSeconds: 600 } } as VigilConfig;
    const metrics = createMetrics();
    const job = startIncidents(sink, config, metrics, rootLogger('silent'));
    expect(await job.pass()).toBe(2);
    const read = async () => (await res.clickhouse().query({ query: `SELECT incident_id, series_count, members.metric, members.onset, related FROM ${db}.incidents_dedup ORDER BY started_at`, format: 'JSONEachRow' })).json<IncidentRow>();
    const [a, b] = await read();
    expect(a?.incident_id).toBe(`${(1n).toString(16).padStart(16, '0')}-${T}`);
    expect(a?.['members.metric']).toEqual(['app.latency', 'app.errors', 'db.latency']);
    expect(a?.series_count).toBe(3);
    // Over (no onset for the window since): its related series, db.connections a minute behind.
    const related = JSON.parse(a?.related ?? '') as { metric: string; r: number; lagSeconds: number }[];
    expect(related.map((r) => [r.metric, r.lagSeconds])).toEqual([['db.connections', 60]]);
    expect(related[0]?.r).toBeGreaterThan(0.99);
    // The second incident is still open: no related series yet.
    expect(b?.['members.metric']).toEqual(['app.latency']);
    expect(b?.related).toBe('');

    // Nothing changed: nothing written. A new onset joins the open incident: one new version.
    expect(await job.pass()).toBe(0);
    await insertAnomalies([anomaly(8, 'app.errors', T + 7320, 1, 0.99, 1)]);
    expect(await job.pass()).toBe(1);
    const [, b2] = await read();
    expect(b2?.['members.metric']).toEqual(['app.latency', 'app.errors']);
    expect(await res.scalar(`SELECT count() FROM ${db}.incidents_dedup`)).toBe(2);
    // Another instance (a fresh job) computes the same incidents: the table still holds two.
    const other = startIncidents(sink, config, metrics, rootLogger('silent'));
    expect(await other.pass()).toBe(2);
    other.stop();
    job.stop();
    expect(await res.scalar(`SELECT count() FROM ${db}.incidents_dedup`)).toBe(2);
    expect(await metrics.registry.getSingleMetricAsString('vigil_incidents_written_total')).toMatch(/vigil_incidents_written_total 5/);
    await sink.close();
  });
});
