import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import { loadConfig } from '../core/config/index.js';
import { clickhouseConnection } from '../core/redact.js';
import { capabilitiesOf } from '../sinks/clickhouse/capabilities.js';
import { insertStatement, migrate, MIGRATIONS } from '../sinks/clickhouse/schema.js';

/**
 * `npm run bench:marks` (issue 19): what the materialized views on `points` cost ClickHouse per
 * insert: the marks (`points_marks_mv`) and the per-metric rollups (`metric_rollups_mv`). One
 * RowBinary body of `--rows` points (default 200,000, pipeline.insertMaxRows' default; 12 source
 * partitions, 1,000 series) is inserted `--inserts` times (default 20) into Vigil's `points` (both
 * views), into copies of the table with only the marks' view, only the rollups' view, and none,
 * in turn (the order rotating), for `--rounds` rounds (default 3); the same body each time, so the
 * insert path alone differs. Prints the median milliseconds per insert of each and their ratios
 * to the table without views. With `clickhouse.cluster` set, measures points through `points_in`
 * instead (see `cluster`).
 */
const { values } = parseArgs({ options: { rows: { type: 'string' }, inserts: { type: 'string' }, rounds: { type: 'string' } } });
const rows = Number(values.rows ?? 200_000);
const inserts = Number(values.inserts ?? 20);
const rounds = Number(values.rounds ?? 3);

async function body(ch: ClickHouseClient): Promise<Buffer> {
  const select =
    `SELECT toUInt64(s + 1), 'cpu.usage', ['host'], ['host-' || toString(s)], toInt8(1), toDateTime(1700000000 + i * 10), toInt64((1700000000 + i * 10) * 1000), ` +
    `round(50 + (cityHash64(s, i) % 1000) / 100, 2), 'metrics', toUInt32(s % 12), number, toUInt32(0) ` +
    `FROM (SELECT number, number % 1000 AS s, intDiv(number, 1000) AS i FROM numbers(${rows}))`;
  const rs = await ch.exec({ query: `${select} FORMAT RowBinary` });
  const chunks: Buffer[] = [];
  for await (const c of rs.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function insert(ch: ClickHouseClient, query: string, data: Buffer, settings: ClickHouseSettings = {}): Promise<number> {
  const t0 = performance.now();
  const r = await ch.exec({ query, values: Readable.from([data], { objectMode: false }), clickhouse_settings: settings });
  r.stream.resume();
  await new Promise<void>((resolve, reject) => r.stream.once('end', resolve).once('error', reject));
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/**
 * On a cluster (`clickhouse.cluster` set): what points going through `points_in` (schema.ts
 * migration 10) cost an insert against the one-server layout, the same views hanging on `points`.
 * Two databases migrated ON CLUSTER; in the second, metric_rollups' and the marks' views are
 * moved onto `points` and `points_in_mv` dropped; the same body into `a.points_in` and `b.points`
 * in turn, without block deduplication (the same body would be dropped as a duplicate after the
 * first).
 */
async function cluster(ch: ClickHouseClient, name: string, version: string): Promise<void> {
  const stamp = Date.now().toString(36);
  const [a, b] = [`vigil_mbench_${stamp}_in`, `vigil_mbench_${stamp}_direct`];
  const caps = capabilitiesOf(version);
  try {
    for (const db of [a, b]) await migrate(ch, db, caps, name);
    // b: the views moved onto points (the one-server layout), points_in's own view dropped.
    const view = (mv: string) => MIGRATIONS.flatMap((m) => m.statements(b, caps, name)).filter((q) => q.includes(`${b}.${mv} `)).at(-1) as string;
    for (const mv of ['points_in_mv', 'metric_rollups_mv', 'points_marks_mv']) await ch.command({ query: `DROP TABLE ${b}.${mv}` });
    for (const mv of ['metric_rollups_mv', 'points_marks_mv']) await ch.command({ query: view(mv).replace(`FROM ${b}.points_in `, `FROM ${b}.points `) });
    const data = await body(ch);
    const settings: ClickHouseSettings = { insert_deduplicate: 0 };
    const statements = { in: insertStatement(a, 'points', name), direct: insertStatement(b, 'points') };
    const kinds = ['in', 'direct'] as const;
    const ms = { in: [] as number[], direct: [] as number[] };
    for (const k of kinds) await insert(ch, statements[k], data, settings);
    for (let i = 0; i < rounds * inserts; i++) {
      for (let j = 0; j < kinds.length; j++) {
        const k = kinds[(i + j) % kinds.length] as (typeof kinds)[number];
        ms[k].push(await insert(ch, statements[k], data, settings));
      }
    }
    const [viaIn, direct] = [median(ms.in), median(ms.direct)];
    console.log(
      [
        `# Points through points_in on cluster ${name} (ClickHouse ${version}): ${rows.toLocaleString('en')} rows per insert, ${ms.in.length} inserts each`,
        `views on points (the one-server layout, replicated): ${direct.toFixed(1)} ms per insert (median)`,
        `through points_in (as migrated on a cluster): ${viaIn.toFixed(1)} ms per insert (median), ${(viaIn / direct).toFixed(3)}× (${(((viaIn - direct) / rows) * 1e6).toFixed(0)} ns per point)`,
      ].join('\n'),
    );
  } finally {
    for (const db of [a, b]) await ch.command({ query: `DROP DATABASE IF EXISTS ${db} ON CLUSTER ${name}` });
  }
}

async function main(): Promise<void> {
  const config = loadConfig({ env: process.env });
  const ch = createClient({ ...clickhouseConnection(config.clickhouse) });
  const version = ((await (await ch.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })).json<{ v: string }>())[0] as { v: string }).v;
  if (config.clickhouse.cluster) {
    await cluster(ch, config.clickhouse.cluster, version).finally(() => ch.close());
    return;
  }
  const db = `vigil_mbench_${Date.now().toString(36)}`;
  try {
    await migrate(ch, db, capabilitiesOf(version));
    // Copies of points with one view each, made from the migrations' own statements.
    const view = (name: string) => MIGRATIONS.flatMap((m) => m.statements(db, capabilitiesOf(version))).find((q) => q.includes(`${db}.${name} `)) as string;
    const copies = { all: 'points', marks: 'points_m', rollups: 'points_r', none: 'points_plain' };
    for (const [copy, mv] of [[copies.marks, 'points_marks_mv'], [copies.rollups, 'metric_rollups_mv'], [copies.none, '']] as const) {
      await ch.command({ query: `CREATE TABLE ${db}.${copy} AS ${db}.points` });
      if (mv) await ch.command({ query: view(mv).replace(`${db}.${mv} `, `${db}.${copy}_${mv} `).replace(`FROM ${db}.points `, `FROM ${db}.${copy} `) });
    }
    const data = await body(ch);
    const statement = (table: string) => insertStatement(db, 'points').replace(`${db}.points `, `${db}.${table} `);
    const kinds = Object.keys(copies) as (keyof typeof copies)[];
    const ms = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<keyof typeof copies, number[]>;
    // One warm-up each, then in turn, the order rotating, so that drift (merges, caches) falls on all.
    for (const k of kinds) await insert(ch, statement(copies[k]), data);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < inserts; i++) {
        for (let j = 0; j < kinds.length; j++) {
          const k = kinds[(r + i + j) % kinds.length] as keyof typeof copies;
          ms[k].push(await insert(ch, statement(copies[k]), data));
        }
      }
    }
    const med = Object.fromEntries(kinds.map((k) => [k, median(ms[k])])) as Record<keyof typeof copies, number>;
    const marksRows = Number(((await (await ch.query({ query: `SELECT count() AS n FROM ${db}.points_marks`, format: 'JSONEachRow' })).json<{ n: string }>())[0] as { n: string }).n);
    const line = (label: string, k: keyof typeof copies) =>
      `${label}: ${med[k].toFixed(1)} ms per insert (median), ${(med[k] / med.none).toFixed(3)}× the table without views (${(((med[k] - med.none) / rows) * 1e6).toFixed(0)} ns per point)`;
    console.log(
      [
        `# Views on points (ClickHouse ${version}): ${rows.toLocaleString('en')} rows per insert (${data.length.toLocaleString('en')} bytes of RowBinary), ${ms.none.length} inserts each`,
        `without views: ${med.none.toFixed(1)} ms per insert (median)`,
        line('marks only', 'marks'),
        line('metric_rollups only', 'rollups'),
        line('both (points as migrated)', 'all'),
        `${marksRows} rows in points_marks now (12 per insert into a table with the marks' view, merged to a row per partition and writer)`,
      ].join('\n'),
    );
  } finally {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${db}` });
    await ch.close();
  }
}

await main();
