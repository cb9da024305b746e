import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { loadConfig } from '../core/config/index.js';
import { clickhouseConnection } from '../core/redact.js';
import { capabilitiesOf } from '../sinks/clickhouse/capabilities.js';
import { migrate } from '../sinks/clickhouse/schema.js';

/**
 * `npm run bench:query` (issue 19): the read path at scale. Loads `--points` points (default 10M)
 * of `--series` series (default 10,000; a point every 10 s, values with two decimals) into a fresh
 * database made with Vigil's own DDL, each point once as the pipeline stores them (insert-time
 * deduplication: a replay does not write stored points again), rollups at the default widths
 * (10 s and 1 min), two hours of anomaly rows and alert events. Then it runs the standard
 * dashboard questions three ways in the same run: through the views (`_dedup`, `_merged`), as
 * README "Reading at scale" documents them (`points` as it is; the other tables with their
 * filters inside FINAL; checked to answer as the view does), and on the tables without
 * deduplication (the physical limit): p50 and p95 of `--runs` runs each (default
 * 7), after one warm-up; the points questions also as documented before points held each point
 * once (filters on `points FINAL`). Also prints bytes per point per column of `points`. Data is generated
 * by the server (INSERT … SELECT FROM numbers), so loading 100M points takes minutes, not hours.
 * `--keep` leaves the database for ad-hoc queries; `--db NAME` runs the
 * questions again on a kept database without loading (pass the same --points and --series).
 */
const { values } = parseArgs({ options: { points: { type: 'string' }, series: { type: 'string' }, runs: { type: 'string' }, keep: { type: 'boolean' }, db: { type: 'string' } } });
const points = Number(values.points ?? 10_000_000);
const series = Number(values.series ?? 10_000);
const runs = Number(values.runs ?? 7);
const perSeries = Math.floor(points / series);
const STEP_S = 10;

interface Question {
  name: string;
  /**
   * SQL with `{points}`, `{rollups}`, `{anomalies}`, `{alerts}` standing for the table read: the
   * views for the documented path, the tables for the physical limit.
   */
  sql: string;
  /**
   * The same question as README "Reading at scale" documents it: `points` as it is (`{points}`
   * read as the table: it holds each point once), the other tables with the filters on the table
   * read with `FINAL` (`{rollups_final}`, …), so that 18.16, which does not push a WHERE into a
   * view, reads only the matching ranges. Exact like the view.
   */
  exact: string;
  /** Points questions: the query documented before points held each point once (its filters on `points FINAL`), timed beside. */
  former?: string;
}

/** Rollup rows of a filter as `rollups_merged` merges them: versions by FINAL, partitions and corrections summed per series and bucket. */
const mergedRollups = (where: string) =>
  `(SELECT series_id, any(metric) AS metric, width_s, bucket_start, sum(c) AS count, sum(s) AS sum, min(mn) AS min, max(mx) AS max, sum(s) / sum(c) AS mean ` +
  `FROM (SELECT series_id, metric, width_s, bucket_start, count AS c, sum AS s, min AS mn, max AS mx FROM {rollups_final} WHERE ${where}) GROUP BY series_id, width_s, bucket_start)`;

/** The standard questions; `{end}` is the last timestamp of the data (s). */
const QUESTIONS: Question[] = [
  {
    name: 'one series, last hour, per minute',
    sql: "SELECT toStartOfMinute(ts) AS t, avg(value) FROM {points} WHERE metric = 'cpu.usage' AND series_id = 4711 AND ts >= toDateTime({end} - 3600) GROUP BY t ORDER BY t",
    exact: "SELECT toStartOfMinute(ts) AS t, avg(value) FROM {points} WHERE metric = 'cpu.usage' AND series_id = 4711 AND ts >= toDateTime({end} - 3600) GROUP BY t ORDER BY t",
    former: "SELECT toStartOfMinute(ts) AS t, avg(value) FROM {points_final} WHERE metric = 'cpu.usage' AND series_id = 4711 AND ts >= toDateTime({end} - 3600) GROUP BY t ORDER BY t",
  },
  {
    name: 'one series, last day, per minute',
    sql: "SELECT toStartOfMinute(ts) AS t, avg(value) FROM {points} WHERE metric = 'cpu.usage' AND series_id = 4711 AND ts >= toDateTime({end} - 86400) GROUP BY t ORDER BY t",
    exact: "SELECT toStartOfMinute(ts) AS t, avg(value) FROM {points} WHERE metric = 'cpu.usage' AND series_id = 4711 AND ts >= toDateTime({end} - 86400) GROUP BY t ORDER BY t",
    former: "SELECT toStartOfMinute(ts) AS t, avg(value) FROM {points_final} WHERE metric = 'cpu.usage' AND series_id = 4711 AND ts >= toDateTime({end} - 86400) GROUP BY t ORDER BY t",
  },
  {
    name: 'top 10 series of a metric by max, last hour',
    sql: "SELECT series_id, max(value) AS m FROM {points} WHERE metric = 'cpu.usage' AND ts >= toDateTime({end} - 3600) GROUP BY series_id ORDER BY m DESC, series_id LIMIT 10",
    exact: "SELECT series_id, max(value) AS m FROM {points} WHERE metric = 'cpu.usage' AND ts >= toDateTime({end} - 3600) GROUP BY series_id ORDER BY m DESC, series_id LIMIT 10",
    former: "SELECT series_id, max(value) AS m FROM {points_final} WHERE metric = 'cpu.usage' AND ts >= toDateTime({end} - 3600) GROUP BY series_id ORDER BY m DESC, series_id LIMIT 10",
  },
  {
    name: 'points per metric, whole table',
    sql: 'SELECT metric, count() FROM {points} GROUP BY metric ORDER BY metric',
    exact: 'SELECT metric, count() FROM {points} GROUP BY metric ORDER BY metric',
    former: 'SELECT metric, count() FROM {points_final} GROUP BY metric ORDER BY metric',
  },
  {
    name: 'per-minute rollup of a metric over a day',
    sql: "SELECT bucket_start, avg(mean) FROM {rollups} WHERE metric = 'cpu.usage' AND width_s = 60 AND bucket_start >= toDateTime({end} - 86400) GROUP BY bucket_start ORDER BY bucket_start",
    exact: `SELECT bucket_start, avg(mean) FROM ${mergedRollups("metric = 'cpu.usage' AND width_s = 60 AND bucket_start >= toDateTime({end} - 86400)")} GROUP BY bucket_start ORDER BY bucket_start`,
  },
  {
    name: 'anomalies of the last hour',
    sql: 'SELECT series_id, bucket_start, score FROM {anomalies} WHERE bucket_start >= toDateTime({end} - 3600) AND anomaly = 1 ORDER BY score DESC LIMIT 100',
    exact: 'SELECT series_id, bucket_start, score FROM {anomalies_final} WHERE bucket_start >= toDateTime({end} - 3600) AND anomaly = 1 ORDER BY score DESC LIMIT 100',
  },
  {
    name: 'firing alerts',
    sql: "SELECT fingerprint, argMax(status, observed_ms) AS s FROM {alerts} GROUP BY fingerprint HAVING s = 'firing'",
    exact: "SELECT fingerprint, argMax(status, observed_ms) AS s FROM {alerts_final} GROUP BY fingerprint HAVING s = 'firing'",
  },
  {
    name: 'Grafana: points per minute, last hour',
    sql: 'SELECT toStartOfMinute(ts) AS t, count() FROM {points} WHERE ts >= toDateTime({end} - 3600) GROUP BY t ORDER BY t',
    exact: 'SELECT toStartOfMinute(ts) AS t, count() FROM {points} WHERE ts >= toDateTime({end} - 3600) GROUP BY t ORDER BY t',
    former: 'SELECT toStartOfMinute(ts) AS t, count() FROM {points_final} WHERE ts >= toDateTime({end} - 3600) GROUP BY t ORDER BY t',
  },
];

const METRICS = "['cpu.usage', 'mem.used', 'disk.io', 'net.rx', 'net.tx', 'http.requests', 'http.latency', 'queue.depth', 'gc.pause', 'auth.failures']";

async function load(ch: ClickHouseClient, db: string, endS: number): Promise<void> {
  const startS = endS - (perSeries - 1) * STEP_S;
  // number = i * series + s: point i of series s, in time order across series (as they arrive).
  const pointsSelect = (from: number, count: number) =>
    `SELECT toUInt64(s + 1) AS series_id, ${METRICS}[s % 10 + 1] AS metric, ['host', 'region'] AS \`tags.key\`, ['host-' || toString(intDiv(s, 10)), ['eu', 'us', 'ap'][s % 3 + 1]] AS \`tags.value\`, ` +
    `'gauge' AS type, toDateTime(${startS} + i * ${STEP_S}) AS ts, (${startS} + i * ${STEP_S}) * 1000 AS ts_ms, ` +
    `round(50 + 20 * sin(i / 360 + s) + (cityHash64(s, i) % 1000) / 100, 2) AS value, 'metrics' AS source_topic, toUInt32(s % 12) AS source_partition, number AS source_offset, toUInt32(0) AS point_index ` +
    `FROM (SELECT number, number % ${series} AS s, intDiv(number, ${series}) AS i FROM numbers(${from}, ${count}))`;
  const total = perSeries * series;
  const chunk = 10_000_000;
  for (let from = 0; from < total; from += chunk) await ch.command({ query: `INSERT INTO ${db}.points ${pointsSelect(from, Math.min(chunk, total - from))}` });
  // Rollups as the pipeline writes them at its default widths (10 s and 1 min), of each point once:
  // computed from the generator, a few hundred buckets of every series per statement (the
  // server's memory limit).
  for (const width of [10, 60]) {
    const perChunk = Math.max(1, Math.floor(2_000_000 / series)) * width;
    for (let b0 = Math.floor(startS / width) * width; b0 <= endS; b0 += perChunk) {
      const i0 = Math.max(0, Math.ceil((b0 - startS) / STEP_S));
      const i1 = Math.min(perSeries, Math.ceil((b0 + perChunk - startS) / STEP_S));
      if (i1 <= i0) continue;
      await ch.command({
        query:
          `INSERT INTO ${db}.rollups SELECT series_id, any(metric), any(\`tags.key\`), any(\`tags.value\`), 'gauge', ${width}, toDateTime(intDiv(toUInt32(ts), ${width}) * ${width}) AS b, 'metrics', any(source_partition), 'bucket', 0, 0, ` +
          `count(), sum(value), min(value), max(value), argMax(value, ts_ms), max(ts_ms), sum(value * value), count() FROM (${pointsSelect(i0 * series, (i1 - i0) * series)}) GROUP BY series_id, b`,
      });
    }
  }
  await ch.command({
    query:
      `INSERT INTO ${db}.anomalies SELECT series_id, any(metric), any(\`tags.key\`), any(\`tags.value\`), 'gauge', 60, toStartOfMinute(ts) AS b, avg(value), avg(value), avg(value) - 10, avg(value) + 10, ` +
      `(cityHash64(series_id, b) % 10000) / 10000 AS score, score > 0.999, 0, 0, 0, 0, 0, '{}', 'metrics', 0, 1 FROM ${db}.points WHERE ts >= toDateTime(${endS} - 7200) GROUP BY series_id, b`,
  });
  await ch.command({
    query:
      `INSERT INTO ${db}.alerts SELECT toString(number), toString(number % 500), if(number < 500, 'firing', 'resolved'), 'cpu-high', 'HighCpu', 'threshold', 'warning', 'cpu.usage', ['host'], ['host-1'], 95, 90, NULL, ` +
      `toDateTime(${endS} - 3600), NULL, toDateTime(${endS} - 3600 + number), (${endS} - 3600 + number) * 1000, '{}', '{}', '{}', '{}' FROM numbers(1000)`,
  });
}

async function time(ch: ClickHouseClient, sql: string): Promise<number> {
  const t0 = performance.now();
  const rs = await ch.query({ query: sql, format: 'JSONEachRow' });
  await rs.json();
  return performance.now() - t0;
}

interface Timing {
  p50: number;
  p95: number;
  /** The server's error code when it refused the query. */
  error?: string;
}

async function scalar(ch: ClickHouseClient, sql: string): Promise<number> {
  const rs = await ch.query({ query: sql, format: 'JSONEachRow' });
  return Number(Object.values((await rs.json<Record<string, string>>())[0] ?? {})[0]);
}

async function rowsOf(ch: ClickHouseClient, sql: string): Promise<unknown[][]> {
  // JSONCompact: 18.16 has no JSONCompactEachRow.
  const rs = await ch.query({ query: sql, format: 'JSONCompact' });
  return ((await rs.json()) as unknown as { data: unknown[][] }).data;
}

/** Same rows in the same order, numbers equal to 1e-9 relative (sums in another order differ in the last bits). */
function sameRows(a: unknown[][], b: unknown[][]): boolean {
  const close = (x: unknown, y: unknown) => {
    const nx = Number(x);
    const ny = Number(y);
    if (typeof x === 'number' || typeof y === 'number' || (x !== '' && y !== '' && Number.isFinite(nx) && Number.isFinite(ny))) return Math.abs(nx - ny) <= 1e-9 * Math.max(1, Math.abs(nx), Math.abs(ny));
    return x === y;
  };
  return a.length === b.length && a.every((row, i) => row.length === (b[i] as unknown[]).length && row.every((x, j) => close(x, (b[i] as unknown[])[j])));
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number;
}

async function main(): Promise<void> {
  const config = loadConfig({ env: process.env });
  // Loading 100M rows runs for minutes in one request: progress headers keep the connection alive.
  const ch = createClient({ ...clickhouseConnection(config.clickhouse), request_timeout: 3_600_000, clickhouse_settings: { send_progress_in_http_headers: 1, http_headers_progress_interval_ms: '10000' } });
  // --db: the questions again on a database an earlier run kept (--keep), without loading.
  const db = values.db ?? `vigil_qbench_${Date.now().toString(36)}`;
  const version = ((await (await ch.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })).json<{ v: string }>())[0] as { v: string }).v;
  if (!values.db) await migrate(ch, db, capabilitiesOf(version));
  try {
    await run(ch, db, version);
  } finally {
    if (!values.keep && !values.db) await ch.command({ query: `DROP DATABASE IF EXISTS ${db}` });
    else console.log(`kept database ${db}`);
    await ch.close();
  }
}

async function run(ch: ClickHouseClient, db: string, version: string): Promise<void> {
  const t0 = performance.now();
  let endS = Math.floor(Date.now() / 1000 / 60) * 60;
  if (values.db) endS = await scalar(ch, `SELECT max(toUInt32(ts)) FROM ${db}.points`);
  else await load(ch, db, endS);
  const loadS = (performance.now() - t0) / 1000;
  await ch.command({ query: `OPTIMIZE TABLE ${db}.points` }).catch(() => undefined);
  const rows = await scalar(ch, `SELECT count() FROM ${db}.points`);
  const columns = await (await ch.query({ query: `SELECT name, data_compressed_bytes AS b FROM system.columns WHERE database = '${db}' AND table = 'points'`, format: 'JSONEachRow' })).json<{ name: string; b: string }>();
  const results: { name: string; view: Timing; exact: Timing; raw: Timing; same: boolean | null; former: Timing | null }[] = [];
  for (const q of QUESTIONS) {
    const sql = (text: string, path: 'view' | 'table') =>
      text
        .replaceAll('{end}', String(endS))
        .replaceAll('{points}', `${db}.${path === 'view' ? 'points_dedup' : 'points'}`)
        .replaceAll('{rollups}', path === 'view' ? `${db}.rollups_merged` : `(SELECT *, sum / count AS mean FROM ${db}.rollups)`)
        .replaceAll('{anomalies}', `${db}.${path === 'view' ? 'anomalies_dedup' : 'anomalies'}`)
        .replaceAll('{alerts}', `${db}.${path === 'view' ? 'alerts_dedup' : 'alerts'}`)
        .replace(/\{(points|rollups|anomalies|alerts)_final\}/g, (_, t: string) => `${db}.${t} FINAL`);
    // A query the server refuses (at 100M points a view over FINAL can pass its memory limit)
    // is reported with the server's error code, not timed.
    const measure = async (text: string): Promise<Timing> => {
      try {
        await time(ch, text);
      } catch (err) {
        return { p50: NaN, p95: NaN, error: /Code: \d+/.exec((err as Error).message)?.[0] ?? (err as Error).message.slice(0, 60) };
      }
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) ms.push(await time(ch, text));
      return { p50: percentile(ms, 0.5), p95: percentile(ms, 0.95) };
    };
    const view = await measure(sql(q.sql, 'view'));
    const exact = await measure(sql(q.exact, 'table'));
    // The documented query answers what the view answers (same rows, values to 1e-9).
    const same = view.error || exact.error ? null : sameRows(await rowsOf(ch, sql(q.sql, 'view')), await rowsOf(ch, sql(q.exact, 'table')));
    const former = q.former ? await measure(sql(q.former, 'table')) : null;
    results.push({ name: q.name, view, exact, raw: await measure(sql(q.sql, 'table')), same, former });
  }
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const cell = (t: Timing) => (t.error ? `fails: ${t.error}` : `${fmt(t.p50)} / ${fmt(t.p95)}`);
  const perPoint = columns.map((c) => ({ name: c.name, bytes: Number(c.b) / rows }));
  const lines = [
    `# Read path (ClickHouse ${version}; ${rows.toLocaleString('en')} rows in points: ${series} series × ${perSeries} points; ${values.db ? `database ${db} reused` : `loaded in ${loadS.toFixed(0)} s`})`,
    '',
    '| question | views p50 / p95 (ms) | documented query p50 / p95 (ms) | table without dedup p50 / p95 (ms) | documented ÷ raw (p50) | same answer as the view | points: filters on `points FINAL` (documented before) p50 / p95 (ms) |',
    '|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.name} | ${cell(r.view)} | ${cell(r.exact)} | ${cell(r.raw)} | ${(r.exact.p50 / r.raw.p50).toFixed(1)}× | ${r.same === null ? '–' : r.same ? 'yes' : '**no**'} | ${r.former ? cell(r.former) : '–'} |`,
    ),
    '',
    `Bytes per point in \`points\` (compressed): ${perPoint.reduce((a, c) => a + c.bytes, 0).toFixed(2)}; by column: ${perPoint.map((c) => `${c.name} ${c.bytes.toFixed(2)}`).join(', ')}`,
  ];
  console.log(lines.join('\n'));
  const dir = join('bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  writeFileSync(join(dir, `query-${stamp}.json`), JSON.stringify({ version, rows, series, perSeries, loadS, results, perPoint }, null, 2));
  writeFileSync(join(dir, `query-${stamp}.md`), lines.join('\n') + '\n');
}

await main();
