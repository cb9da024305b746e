import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chdbRun } from '../../../../bench/chdb.js';
import { venvPython } from '../../../../infra/index.js';
import { capabilitiesOf, ClickHouseSink, insertTarget, MIGRATIONS, schemaStatements } from '../../../../sinks/clickhouse/index.js';
import { onCluster } from '../../../../sinks/clickhouse/schema.js';
import { seriesId, sortTags } from '../../../../workers/series.js';
import { uniqueName, useResources } from '../../../helpers/resources.js';

const res = useResources();

/** Runs SQL statements in chdb (a current ClickHouse, in-process); returns the last result as CSV. */
const chdb = (statements: string[]): string => chdbRun(venvPython(res.config), statements);

describe('ClickHouse schema', () => {
  it('migrates an empty database on the test server, idempotently, and records each version once', async () => {
    const db = uniqueName('schema');
    res.own('database', db);
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    await sink.start();
    const rs = await res.clickhouse().query({ query: `SELECT version, count() AS n FROM ${db}.schema_migrations GROUP BY version ORDER BY version`, format: 'JSONEachRow' });
    expect((await rs.json<{ version: number; n: string }>()).map((r) => [Number(r.version), Number(r.n)])).toEqual(MIGRATIONS.map((m) => [m.version, 1]));
    const tables = await res.clickhouse().query({ query: `SELECT name FROM system.tables WHERE database = '${db}' ORDER BY name`, format: 'JSONEachRow' });
    // On a cluster, points arrive through points_in and its view (migration 10).
    const cluster = res.config.clickhouse.cluster ? ['points_in', 'points_in_mv', 'points_marks', 'points_marks_mv'] : ['points_marks', 'points_marks_mv'];
    expect((await tables.json<{ name: string }>()).map((t) => t.name)).toEqual(['alerts', 'alerts_dedup', 'anomalies', 'anomalies_dedup', 'detector_state', 'forecasts', 'forecasts_latest', 'incidents', 'incidents_dedup', 'metric_rollups', 'metric_rollups_mv', 'points', 'points_dedup', ...cluster, 'rollups', 'rollups_merged', 'schema_migrations']);
    await sink.close();
  });

  it('migrations 14 and 15 give a database made before them the tenant column, rows kept as the default tenant\'s, every view showing it (this server)', async () => {
    const db = uniqueName('tenantmig');
    res.own('database', db);
    const ch = res.clickhouse();
    const version = (await (await ch.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })).json<{ v: string }>())[0]?.v as string;
    const caps = capabilitiesOf(version);
    const cluster = res.config.clickhouse.cluster;
    // The database as Vigil made it before tenants: migrations 1-13, one point stored.
    for (const q of schemaStatements(db, caps, cluster).slice(0, 2)) await ch.command({ query: q });
    for (const m of MIGRATIONS.filter((m) => m.version < 14)) {
      for (const q of m.statements(db, caps, cluster)) await ch.command({ query: m.replicated ? q : onCluster(q, cluster) });
      await ch.insert({ table: `${db}.schema_migrations`, values: [{ version: m.version, name: m.name, applied_at: 0 }], format: 'JSONEachRow' });
    }
    const t = Math.floor(Date.now() / 60_000) * 60 - 600;
    await ch.command({ query: `INSERT INTO ${db}.${insertTarget('points', cluster)} (series_id, metric, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) VALUES (1, 'm', 'gauge', ${t}, ${t * 1000}, 2, 't', 0, 0, 0)` });
    expect(await res.scalar(`SELECT count() FROM system.columns WHERE database = '${db}' AND name = 'tenant'`)).toBe(0);
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    await sink.close();
    const withTenant = await ch.query({ query: `SELECT table FROM system.columns WHERE database = '${db}' AND name = 'tenant' ORDER BY table`, format: 'JSONEachRow' });
    const tables = ['alerts', 'alerts_dedup', 'anomalies', 'anomalies_dedup', 'forecasts', 'forecasts_latest', 'incidents', 'incidents_dedup', 'metric_rollups', 'metric_rollups_mv', 'points', 'points_dedup', ...(cluster ? ['points_in', 'points_in_mv'] : []), 'rollups', 'rollups_merged'];
    expect((await withTenant.json<{ table: string }>()).map((r) => r.table)).toEqual(tables);
    // The old row is the default tenant's; a new one of tenant acme aggregates apart in metric_rollups.
    await ch.command({ query: `INSERT INTO ${db}.${insertTarget('points', cluster)} (series_id, metric, tenant, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) VALUES (2, 'm', 'acme', 'gauge', ${t}, ${t * 1000}, 5, 't', 0, 1, 0)` });
    const points = await ch.query({ query: `SELECT tenant, value FROM ${db}.points_dedup ORDER BY tenant`, format: 'JSONEachRow' });
    expect((await points.json<{ tenant: string; value: number }>()).map((r) => [r.tenant, Number(r.value)])).toEqual([['', 2], ['acme', 5]]);
    const perTenant = await ch.query({ query: `SELECT tenant, countMerge(count) AS n, sumMerge(sum) AS s FROM ${db}.metric_rollups GROUP BY tenant ORDER BY tenant`, format: 'JSONEachRow' });
    expect((await perTenant.json<{ tenant: string; n: string; s: number }>()).map((r) => [r.tenant, Number(r.n), Number(r.s)])).toEqual([['', 1, 2], ['acme', 1, 5]]);
  });

  it('forecasts_latest gives each series\' latest forecast, once, whatever a replay inserted again; alerts take the forecast kind (18.16)', async () => {
    const db = await res.database('forecasts');
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    const row = (series: number, issued: string, at: string, value: number) =>
      `(${series}, 'disk', ['host'], ['db-${series}'], 'gauge', 60, '${at}', '${issued}', ${value}, ${value - 1}, ${value + 1}, ${value - 2}, ${value + 2}, '{}')`;
    const insert = (rows: string[]) =>
      res.clickhouse().command({ query: `INSERT INTO ${db}.forecasts (series_id, metric, tags.key, tags.value, type, width_s, bucket_start, issued_at, value, lower_80, upper_80, lower_95, upper_95, model) VALUES ${rows.join(', ')}` });
    await insert([row(1, '2026-01-05 10:00:00', '2026-01-05 11:00:00', 50), row(1, '2026-01-05 10:00:00', '2026-01-05 12:00:00', 51), row(2, '2026-01-05 10:00:00', '2026-01-05 11:00:00', 7)]);
    const latest = [row(1, '2026-01-05 11:00:00', '2026-01-05 12:00:00', 60), row(1, '2026-01-05 11:00:00', '2026-01-05 13:00:00', 61)];
    await insert(latest);
    // A replay's second insert of the same forecast.
    await insert(latest);
    const rs = await res.clickhouse().query({ query: `SELECT series_id, toString(issued_at) AS issued, toString(bucket_start) AS at, value FROM ${db}.forecasts_latest ORDER BY series_id, bucket_start`, format: 'JSONEachRow' });
    expect(await rs.json()).toEqual([
      { series_id: '1', issued: '2026-01-05 11:00:00', at: '2026-01-05 12:00:00', value: 60 },
      { series_id: '1', issued: '2026-01-05 11:00:00', at: '2026-01-05 13:00:00', value: 61 },
      { series_id: '2', issued: '2026-01-05 10:00:00', at: '2026-01-05 11:00:00', value: 7 },
    ]);
    // Alert events of forecast rules have their kind in the alerts table (migration 12).
    await res.clickhouse().command({ query: `INSERT INTO ${db}.alerts (id, fingerprint, rule_kind, starts_at, observed_at) VALUES ('a', 'f', 'forecast', now(), now())` });
    const kinds = await res.clickhouse().query({ query: `SELECT toString(rule_kind) AS kind FROM ${db}.alerts`, format: 'JSONEachRow' });
    expect(await kinds.json()).toEqual([{ kind: 'forecast' }]);
    await sink.close();
  });

  // What the points marks rely on (schema migration 8): a view's rows are written after its
  // table's, so a mark never runs ahead of the points it marks.
  const failingView = (db: string) => [
    `CREATE TABLE ${db}.src (o UInt64, d Date) ENGINE = MergeTree() PARTITION BY d ORDER BY o`,
    `CREATE TABLE ${db}.marks (o UInt64) ENGINE = MergeTree() ORDER BY o`,
    `CREATE MATERIALIZED VIEW ${db}.marks_mv TO ${db}.marks AS SELECT max(o) + throwIf(max(o) > 5) AS o FROM ${db}.src`,
  ];
  const failingInsert = (db: string) => `INSERT INTO ${db}.src VALUES (1, '2024-01-01'), (9, '2024-01-02')`;

  it('18.16 writes an insert\'s rows before its materialized views\': a view that fails leaves the rows (every partition) and no view row', async () => {
    const db = await res.database('mvorder');
    for (const q of failingView(db)) await res.clickhouse().command({ query: q });
    await expect(res.clickhouse().command({ query: failingInsert(db) })).rejects.toThrow(/throwIf|Value passed to 'throwIf'/);
    expect(await res.scalar(`SELECT count() FROM ${db}.src`)).toBe(2);
    expect(await res.scalar(`SELECT count() FROM ${db}.marks`)).toBe(0);
  });

  // metric_rollups (migration 9): per metric and minute, the gauges of every insert, counters not.
  const pointRows = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => {
      const k = from + i;
      const [metric, type] = k % 3 === 2 ? ['req', 'counter'] : [k % 3 ? 'mem' : 'cpu', 'gauge'];
      return `(${(k % 7) + 1}, '${metric}', ['host'], ['h${k % 7}'], '${type}', ${1700000000 + k * 13}, ${(1700000000 + k * 13) * 1000}, ${((k * 37) % 101) / 4}, 't', ${k % 2}, ${k}, 0)`;
    }).join(', ');
  const pointsInsert = (db: string, rows: string, cluster = '') =>
    `INSERT INTO ${db}.${insertTarget('points', cluster)} (series_id, metric, \`tags.key\`, \`tags.value\`, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) VALUES ${rows}`;
  /** Per metric and minute: the view's merged aggregates, then the same from the points table, as CSV-like lines. */
  const metricRollupsCheck = (db: string) => [
    `SELECT metric, toUInt32(bucket_start), countMerge(count), round(sumMerge(sum), 6), minMerge(min), maxMerge(max), round(sumMerge(sumsq), 6) FROM ${db}.metric_rollups GROUP BY metric, bucket_start ORDER BY metric, bucket_start`,
    `SELECT metric, toUInt32(toStartOfMinute(ts)) AS b, count(), round(sum(value), 6), min(value), max(value), round(sum(value * value), 6) FROM ${db}.points WHERE type = 'gauge' GROUP BY metric, b ORDER BY metric, b`,
  ];

  it('metric_rollups holds, per metric and minute, the count, sum, min, max and sum of squares of the gauges stored in points (every insert), no counter', async () => {
    const db = await res.migratedDatabase('metricrollups');
    for (let i = 0; i < 4; i++) await res.clickhouse().command({ query: pointsInsert(db, pointRows(i * 50, 50), res.config.clickhouse.cluster) });
    const [view, points] = await Promise.all(metricRollupsCheck(db).map(async (query) => (await res.clickhouse().query({ query, format: 'TabSeparated' })).text()));
    expect(points?.trim().split('\n').length).toBeGreaterThan(4);
    expect(view).toBe(points);
    expect(await res.scalar(`SELECT count() FROM ${db}.metric_rollups WHERE metric = 'req'`)).toBe(0);
  });

  describe('on a current ClickHouse (chdb)', () => {
    const python = venvPython(res.config);
    it('has chdb installed by `vigil infra install`', () => {
      expect(existsSync(python)).toBe(true);
    });

    it('runs the DDL Vigil gives that server version (LowCardinality, codecs) and dedups replays in points_dedup', () => {
      const version = chdb(['SELECT version()']).trim().replaceAll('"', '');
      const caps = capabilitiesOf(version);
      expect(caps.lowCardinality && caps.codecs).toBe(true);
      const ddl = schemaStatements('vigil', caps);
      expect(ddl.join('\n')).toContain('LowCardinality(String)');
      const row = "(1, 'cpu', ['host'], ['a'], 'gauge', 1700000000, 1700000000000, 1.5, 't', 0, 5, 0)";
      const insert = 'INSERT INTO vigil.points (series_id, metric, `tags.key`, `tags.value`, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) VALUES ';
      const out = chdb([...ddl, insert + row, insert + row, insert + row.replace(', 5, 0)', ', 6, 0)'), 'SELECT count() FROM vigil.points_dedup']);
      expect(out.trim()).toBe('2');
    });

    it('writes an insert\'s rows before its materialized views\' as 18.16 does: a view that fails leaves the rows and no view row', () => {
      const dir = mkdtempSync(join(tmpdir(), 'vigil-mvorder-'));
      try {
        chdbRun(python, ['CREATE DATABASE m', ...failingView('m')], dir);
        expect(() => chdbRun(python, [failingInsert('m')], dir)).toThrow();
        expect(chdbRun(python, ['SELECT count() FROM m.src'], dir).trim()).toBe('2');
        expect(chdbRun(python, ['SELECT count() FROM m.marks'], dir).trim()).toBe('0');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('migration 6 gives a database made before it the point codecs; 18.16 gets no statement', () => {
      const caps = capabilitiesOf(chdb(['SELECT version()']).trim().replaceAll('"', ''));
      // The points table as the earlier DDL made it: Gorilla values, offsets and ts without a codec.
      const before = MIGRATIONS.filter((m) => m.version < 6)
        .flatMap((m) => m.statements('vigil', caps))
        .map((q) => q.replace('ts DateTime CODEC(DoubleDelta, ZSTD(1))', 'ts DateTime').replace('source_offset UInt64 CODEC(DoubleDelta, ZSTD(1))', 'source_offset UInt64').replace('value Float64 CODEC(Delta, ZSTD(3))', 'value Float64 CODEC(Gorilla, ZSTD(1))'));
      const six = MIGRATIONS.find((m) => m.version === 6);
      const codecs = "SELECT name, compression_codec FROM system.columns WHERE database = 'vigil' AND table = 'points' AND name IN ('ts', 'source_offset', 'value') ORDER BY name";
      const was = chdb(['CREATE DATABASE vigil', ...before, codecs]);
      expect(was).toContain('"value","CODEC(Gorilla(8), ZSTD(1))"');
      const now = chdb(['CREATE DATABASE vigil', ...before, ...(six?.statements('vigil', caps) ?? []), codecs]);
      expect(now.trim().split('\n')).toEqual(['"source_offset","CODEC(DoubleDelta, ZSTD(1))"', '"ts","CODEC(DoubleDelta, ZSTD(1))"', '"value","CODEC(Delta(8), ZSTD(3))"']);
      expect(six?.statements('vigil', capabilitiesOf('18.16.1'))).toEqual([]);
    });

    it('migration 7 gives values stored with migration 6’s ZSTD(1) the Delta, ZSTD(3) codec; 18.16 gets no statement', () => {
      const caps = capabilitiesOf(chdb(['SELECT version()']).trim().replaceAll('"', ''));
      const before = MIGRATIONS.filter((m) => m.version < 7)
        .flatMap((m) => m.statements('vigil', caps))
        .map((q) => q.replace('value Float64 CODEC(Delta, ZSTD(3))', 'value Float64 CODEC(ZSTD(1))'));
      const seven = MIGRATIONS.find((m) => m.version === 7);
      const codec = "SELECT compression_codec FROM system.columns WHERE database = 'vigil' AND table = 'points' AND name = 'value'";
      expect(chdb(['CREATE DATABASE vigil', ...before, codec]).trim()).toBe('"CODEC(ZSTD(1))"');
      expect(chdb(['CREATE DATABASE vigil', ...before, ...(seven?.statements('vigil', caps) ?? []), codec]).trim()).toBe('"CODEC(Delta(8), ZSTD(3))"');
      expect(seven?.statements('vigil', capabilitiesOf('18.16.1'))).toEqual([]);
    });

    it('gives tags LowCardinality keys and values, which take rows inserted as plain strings', () => {
      const ddl = schemaStatements('vigil', capabilitiesOf(chdb(['SELECT version()']).trim().replaceAll('"', '')));
      const insert = 'INSERT INTO vigil.points (series_id, metric, `tags.key`, `tags.value`, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) FORMAT JSONEachRow ';
      const row = JSON.stringify({ series_id: 1, metric: 'cpu', 'tags.key': ['host', 'region'], 'tags.value': ['a', 'eu'], type: 'gauge', ts: 1700000000, ts_ms: 1700000000000, value: 1.5, source_topic: 't', source_partition: 0, source_offset: 5, point_index: 0 });
      const out = chdb([...ddl, insert + row, "SELECT toTypeName(`tags.key`), toTypeName(`tags.value`), tags.value[indexOf(tags.key, 'region')] FROM vigil.points"]);
      expect(out.trim()).toBe('"Array(LowCardinality(String))","Array(LowCardinality(String))","eu"');
    });

    it('fills metric_rollups as 18.16 does (the same per-minute aggregates as the gauges in points)', () => {
      const ddl = schemaStatements('vigil', capabilitiesOf(chdb(['SELECT version()']).trim().replaceAll('"', '')));
      const inserts = [0, 1, 2].map((i) => pointsInsert('vigil', pointRows(i * 50, 50)));
      const [view, points] = metricRollupsCheck('vigil').map((q) => chdb([...ddl, ...inserts, q]));
      expect(points?.trim().split('\n').length).toBeGreaterThan(4);
      expect(view).toBe(points);
    });

    it('takes the cluster form of migration 10 (points through the Null table points_in, its views writing metric_rollups and points)', () => {
      // The statements a cluster gets, without ON CLUSTER (chdb has no ZooKeeper): the DDL a
      // current server must accept (its AggregatingMergeTree refuses a column that is neither key
      // nor aggregate state) and the same per-minute aggregates as the gauges in points.
      const caps = capabilitiesOf(chdb(['SELECT version()']).trim().replaceAll('"', ''));
      const ddl = ['CREATE DATABASE IF NOT EXISTS vigil', ...MIGRATIONS.flatMap((m) => m.statements('vigil', caps, 'vigil'))];
      expect(ddl.join('\n')).toContain('ENGINE = Null');
      const inserts = [0, 1, 2].map((i) => pointsInsert('vigil', pointRows(i * 50, 50), 'vigil'));
      const [view, points, hashes] = [...metricRollupsCheck('vigil'), 'SELECT count(DISTINCT finalizeAggregation(insert_hash)) FROM vigil.metric_rollups'].map((q) => chdb([...ddl, ...inserts, q]));
      expect(points?.trim().split('\n').length).toBeGreaterThan(4);
      expect(view).toBe(points);
      expect(Number(hashes)).toBeGreaterThan(1);
    });

    it("computes the same series id as ClickHouse's xxHash64 of the canonical text", () => {
      const cases: [string, string[]][] = [
        ['cpu', ['region', 'eu', 'host', 'a']],
        ['crypto.key.access_count', ['key_type', 'encryption']],
        ['naïve "quoted" \\ name', ['tag\nkey', 'välue', 'ключ', '値']],
        ['no_tags', []],
      ];
      const canon = cases.map(([m, t]) => JSON.stringify([m, sortTags([...t]).reduce<string[][]>((acc, v, i) => (i % 2 ? (acc[acc.length - 1]?.push(v), acc) : [...acc, [v]]), [])]));
      const sql = `SELECT ${canon.map((c) => `toString(xxHash64('${c.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'))`).join(', ')}`;
      const fromClickHouse = chdb([sql]).trim().split(',').map((v) => v.replaceAll('"', ''));
      expect(fromClickHouse).toEqual(cases.map(([m, t]) => seriesId(m, sortTags([...t])).toString()));
    });
  });
});
