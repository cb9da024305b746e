import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chdbRun } from '../../../../bench/chdb.js';
import { venvPython } from '../../../../infra/index.js';
import { capabilitiesOf, insertTarget, schemaStatements } from '../../../../sinks/clickhouse/index.js';
import { dropExpired, TIME_COLUMN, ttlStatements, type RetentionPolicy, type RetentionTable } from '../../../../sinks/clickhouse/retention.js';
import { usePipelines, waitFor } from '../../../helpers/pipeline.js';
import { useResources } from '../../../helpers/resources.js';

const res = useResources();
const start = usePipelines();

const DAY = 86_400_000;
const NOW = Date.now();
/** Noon (UTC) of the day `days` before today: far from a partition boundary in any server time zone. */
const daysAgo = (days: number) => Math.floor((NOW - days * DAY) / DAY) * DAY + DAY / 2;
const sec = (ms: number) => Math.floor(ms / 1000);
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');

const POLICY: RetentionPolicy = { points: 90, rollups: 365, rollupsByWidth: new Map([[10, 7]]), metricRollups: 365, anomalies: 90, forecasts: 30, incidents: 365, alerts: 365 };

async function scalar(q: string): Promise<number> {
  const rs = await res.clickhouse().query({ query: q, format: 'JSONEachRow' });
  return Number(Object.values((await rs.json<Record<string, unknown>>())[0] ?? {})[0]);
}

/** Rows dated `ms` in each table Vigil keeps by time (other columns at their defaults). */
async function backdate(db: string, table: RetentionTable, ms: number, width = 60): Promise<void> {
  const values: Record<RetentionTable, string> = {
    points: `INSERT INTO ${db}.${insertTarget('points', res.config.clickhouse.cluster)} (series_id, metric, ts, ts_ms, value) VALUES (1, 'cpu', ${sec(ms)}, ${ms}, 1)`,
    rollups: `INSERT INTO ${db}.rollups (series_id, metric, width_s, bucket_start, count) VALUES (1, 'cpu', ${width}, ${sec(ms)}, 1)`,
    // Written by its view from the points inserted.
    metric_rollups: `INSERT INTO ${db}.${insertTarget('points', res.config.clickhouse.cluster)} (series_id, metric, ts, ts_ms, value) VALUES (1, 'cpu', ${sec(ms)}, ${ms}, 1)`,
    anomalies: `INSERT INTO ${db}.anomalies (series_id, metric, width_s, bucket_start) VALUES (1, 'cpu', 60, ${sec(ms)})`,
    incidents: `INSERT INTO ${db}.incidents (incident_id, started_at, last_onset_at) VALUES ('i${ms}', ${sec(ms)}, ${sec(ms)})`,
    forecasts: `INSERT INTO ${db}.forecasts (series_id, metric, width_s, bucket_start, issued_at) VALUES (1, 'cpu', 60, ${sec(ms + DAY)}, ${sec(ms)})`,
    alerts: `INSERT INTO ${db}.alerts (id, fingerprint, starts_at, observed_at) VALUES ('a${ms}', 'f', ${sec(ms)}, ${sec(ms)})`,
  };
  await res.clickhouse().command({ query: values[table] });
}

describe('retention on ClickHouse 18.16 (no TTL): expired partitions dropped by Vigil', () => {
  it('drops every partition whose whole range expired, per table; deletes a rollup width that expires first; a second pass finds nothing', async () => {
    const db = await res.migratedDatabase('retention');
    for (const table of ['points', 'anomalies'] as const) for (const d of [100, 89, 0]) await backdate(db, table, daysAgo(d));
    // A gauge point stored 430 days ago: its minute in metric_rollups (monthly partitions, kept as
    // the rollups' 60 s width) expires with it; the points of 100 days ago keep their month.
    await backdate(db, 'points', daysAgo(430));
    for (const d of [400, 30, 0]) await backdate(db, 'rollups', daysAgo(d), 60);
    for (const d of [30, 3]) await backdate(db, 'rollups', daysAgo(d), 10);
    for (const d of [430, 0]) await backdate(db, 'alerts', daysAgo(d));
    for (const d of [31, 29]) await backdate(db, 'forecasts', daysAgo(d));
    for (const d of [430, 0]) await backdate(db, 'incidents', daysAgo(d));

    const run = await dropExpired(res.clickhouse(), db, POLICY, NOW);
    const month = day(daysAgo(430)).slice(0, 6);
    expect(run.dropped).toEqual({ points: [day(daysAgo(430)), day(daysAgo(100))], metric_rollups: [month], anomalies: [day(daysAgo(100))], forecasts: [day(daysAgo(31))], incidents: [month], rollups: [day(daysAgo(400))], alerts: [month] });
    expect(run.mutations).toEqual([`width_s IN (10) AND bucket_start < toDateTime(${sec(NOW - 7 * DAY)})`]);
    await waitFor('the rollup delete to finish', async () => (await scalar(`SELECT count() FROM system.mutations WHERE database = '${db}' AND NOT is_done`)) === 0, 30_000, 200);

    const left = async (table: RetentionTable, where = '1') => (await res.clickhouse().query({ query: `SELECT toUInt32(${TIME_COLUMN[table]}) AS t FROM ${db}.${table} WHERE ${where} ORDER BY t`, format: 'JSONEachRow' })).json<{ t: number }>();
    expect((await left('points')).map((r) => Number(r.t))).toEqual([sec(daysAgo(89)), sec(daysAgo(0))]);
    expect((await left('anomalies')).map((r) => Number(r.t))).toEqual([sec(daysAgo(89)), sec(daysAgo(0))]);
    expect((await left('rollups', 'width_s = 60')).map((r) => Number(r.t))).toEqual([sec(daysAgo(30)), sec(daysAgo(0))]);
    expect((await left('rollups', 'width_s = 10')).map((r) => Number(r.t))).toEqual([sec(daysAgo(3))]);
    expect((await left('alerts')).map((r) => Number(r.t))).toEqual([sec(daysAgo(0))]);
    expect((await left('forecasts')).map((r) => Number(r.t))).toEqual([sec(daysAgo(29))]);
    expect((await left('incidents')).map((r) => Number(r.t))).toEqual([sec(daysAgo(0))]);
    expect((await left('metric_rollups')).map((r) => Number(r.t))).toEqual([100, 89, 0].map((d) => Math.floor(sec(daysAgo(d)) / 60) * 60));

    const again = await dropExpired(res.clickhouse(), db, POLICY, NOW);
    expect(again).toEqual({ dropped: {}, mutations: [] });
    // Kept for ever: nothing goes.
    const forever = await dropExpired(res.clickhouse(), db, { points: 0, rollups: 0, rollupsByWidth: new Map(), metricRollups: 0, anomalies: 0, forecasts: 0, incidents: 0, alerts: 0 }, NOW + 10_000 * DAY);
    expect(forever).toEqual({ dropped: {}, mutations: [] });
  });

  it('a running pipeline drops a partition that expires under it, and counts it in vigil_retention_partitions_dropped_total', async () => {
    const { db, env } = await res.pipelineEnv('retention_run', 1);
    const pipeline = await start({ ...env, VIGIL_RETENTION_POINTS_DAYS: '30', VIGIL_RETENTION_CHECK_INTERVAL_MS: '1000' });
    await backdate(db, 'points', daysAgo(45));
    await backdate(db, 'points', daysAgo(20));
    await waitFor('the expired partition dropped', async () => (await pipeline.metric('vigil_retention_partitions_dropped_total', { table: 'points' })) >= 1, 30_000, 200);
    expect(await scalar(`SELECT count() FROM ${db}.points`)).toBe(1);
    expect(await scalar(`SELECT toUInt32(min(ts)) FROM ${db}.points`)).toBe(sec(daysAgo(20)));
    expect(await pipeline.metric('vigil_retention_runs_total', { result: 'error' })).toBe(0);
  });
});

describe('retention on a current ClickHouse (chdb): table TTLs', () => {
  /** Runs statements in a chdb session kept in `dir` (so that calls share it); the last one's CSV. */
  const chdb = (dir: string, statements: string[]): string => chdbRun(venvPython(res.config), statements, dir);
  const engines = (dir: string) =>
    Object.fromEntries(
      chdb(dir, ["SELECT name, engine_full FROM system.tables WHERE database = 'vigil' FORMAT JSONEachRow"])
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { name: string; engine_full: string })
        .map((r) => [r.name, r.engine_full]),
    ) as Partial<Record<RetentionTable, string>>;

  it('sets each table TTL from the policy once (the server takes it and reports it back unchanged), expires rows by it, and removes a TTL set to 0', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-chdb-'));
    try {
      const caps = capabilitiesOf(chdb(dir, ['SELECT version()']).trim().replaceAll('"', ''));
      expect(caps.ttl).toBe(true);
      chdb(dir, schemaStatements('vigil', caps));
      const set = ttlStatements('vigil', POLICY, engines(dir));
      expect(set).toHaveLength(7);
      chdb(dir, set);
      // Applied: what the server reports is what the policy asks, so a restart sends nothing.
      expect(ttlStatements('vigil', POLICY, engines(dir))).toEqual([]);
      const rows = [
        `INSERT INTO vigil.points (series_id, metric, ts, ts_ms, value) VALUES (1, 'cpu', ${sec(daysAgo(100))}, 0, 1), (1, 'cpu', ${sec(daysAgo(1))}, 0, 1)`,
        `INSERT INTO vigil.rollups (series_id, metric, width_s, bucket_start) VALUES (1, 'cpu', 10, ${sec(daysAgo(30))}), (1, 'cpu', 60, ${sec(daysAgo(30))}), (1, 'cpu', 60, ${sec(daysAgo(400))})`,
      ];
      const out = chdb(dir, [...rows, 'OPTIMIZE TABLE vigil.points FINAL', 'OPTIMIZE TABLE vigil.rollups FINAL', "SELECT (SELECT count() FROM vigil.points) * 10 + (SELECT count() FROM vigil.rollups WHERE width_s = 60 AND bucket_start > now() - INTERVAL 100 DAY) + (SELECT count() FROM vigil.rollups) * 100"]);
      // points: the 100-day-old row expired (1 left); rollups: only 60 s at 30 days left.
      expect(out.trim()).toBe(String(1 * 10 + 1 + 1 * 100));
      const none = ttlStatements('vigil', { ...POLICY, points: 0 }, engines(dir));
      expect(none).toEqual(['ALTER TABLE vigil.points REMOVE TTL']);
      chdb(dir, none);
      expect(ttlStatements('vigil', { ...POLICY, points: 0 }, engines(dir))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
