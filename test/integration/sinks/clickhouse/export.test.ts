import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC, type Table } from 'apache-arrow';
import { readParquet } from 'parquet-wasm';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../../../../bench/process.js';
import { ARROW_TYPES, exportBytes, exportColumns, exportSelect, exportTable, type ExportTable } from '../../../../sinks/clickhouse/export.js';
import { AnomalyEncoder } from '../../../../workers/encode/anomalies.js';
import { RollupEncoder } from '../../../../workers/encode/rollups.js';
import { ClickHouseSink } from '../../../../sinks/clickhouse/index.js';
import { uniqueName, useResources } from '../../../helpers/resources.js';

const res = useResources();
const dir = mkdtempSync(join(tmpdir(), 'vigil-export-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MINUTE = 60_000;
const now = Math.floor(Date.now() / MINUTE) * MINUTE - 10 * MINUTE;
const CPU = "cpu's.load";

/**
 * A database holding what a replay leaves before merges: rollup versions, partitions' partial rows
 * and a correction row, anomalies re-scored by a replay (lower version), a NaN expectation, an
 * explanation with quotes and non-ASCII text.
 */
async function database(): Promise<string> {
  const db = uniqueName('export');
  res.own('database', db);
  const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
  await sink.start();
  res.onClose(() => sink.close());
  const ch = res.clickhouse();
  for (const t of ['rollups', 'anomalies']) await ch.command({ query: `SYSTEM STOP MERGES ${db}.${t}` });
  const rollups = new RollupEncoder();
  const rollup = (seriesId: bigint, metric: string, widthMs: number, startMs: number, partition: number, kind: 1 | 2, count: number, sum: number, version: number) =>
    rollups.add({ seriesId, metric, tags: ['host', `h${seriesId}`], type: 0, widthMs, startMs, topic: 'm', partition, kind, correctionOffset: kind === 2 ? 77 : 0, correctionPoint: 0, count, sum, min: sum / count - 1, max: sum / count + 1, last: sum / count, lastTsMs: startMs + version, sumsq: sum * sum, version });
  rollup(1n, CPU, MINUTE, now, 0, 1, 3, 30, 3);
  rollup(1n, CPU, MINUTE, now, 0, 1, 5, 60, 5);
  rollup(1n, CPU, MINUTE, now, 1, 1, 2, 10, 2);
  rollup(1n, CPU, MINUTE, now, 0, 2, 1, 4, 1);
  rollup(1n, CPU, MINUTE, now + MINUTE, 0, 1, 2, 8, 2);
  rollup(1n, CPU, 10_000, now, 0, 1, 1, 7, 1);
  rollup(2n, 'mem.used', MINUTE, now, 0, 1, 4, 40, 4);
  rollup(3n, CPU, MINUTE, now - 48 * 60 * MINUTE, 0, 1, 1, 1, 1);
  await sink.insert('rollups', rollups.rows.finish(), false);
  const anomalies = new AnomalyEncoder();
  const anomaly = (seriesId: bigint, startMs: number, score: number, version: number, expected = 10) =>
    anomalies.add({ seriesId, metric: CPU, tags: ['host', `h${seriesId}`], type: 0, widthMs: MINUTE, startMs, value: 12, expected, lower: expected - 1, upper: expected + 1, score, anomaly: score >= 0.5, scores: { robust: score, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 }, explanation: `{"drivers":["robust"],"note":"\\"Grüße\\" ${version}"}`, topic: 'm', partition: 0, version });
  anomaly(1n, now, 0.9, 40);
  anomaly(1n, now, 0.2, 39);
  anomaly(1n, now + MINUTE, 0.1, 41, Number.NaN);
  anomaly(2n, now, 0.3, 7);
  await sink.insert('anomalies', anomalies.rows.finish(), false);
  return db;
}

/** The view's rows as ClickHouse's JSON gives them (UInt64 and Int64 as strings, NaN as null), ordered as the export. */
async function viewRows(db: string, table: ExportTable, where = ''): Promise<Record<string, unknown>[]> {
  const view = table === 'rollups' ? 'rollups_merged' : 'anomalies_dedup';
  const rs = await res.clickhouse().query({ query: `SELECT ${exportSelect(table)} FROM ${db}.${view} ${where} ORDER BY series_id, width_s, bucket_start`, format: 'JSONEachRow' });
  return rs.json<Record<string, unknown>>();
}

/** An Arrow table's rows in the JSON shape of viewRows. */
function arrowRows(table: Table, kinds: Map<string, string>): Record<string, unknown>[] {
  return table.toArray().map((row: Record<string, unknown>) => {
    const out: Record<string, unknown> = {};
    for (const [name, kind] of kinds) {
      const v = (row as Record<string, unknown>)[name];
      out[name] =
        kind === 'u64' || kind === 'i64'
          ? String(v)
          : kind === 'time'
            ? (v as number) / 1000
            : kind === 'strings'
              ? [...(v as Iterable<string>)]
              : kind === 'f64' && Number.isNaN(v)
                ? null
                : v;
    }
    return out;
  });
}

describe('vigil export: rollups and anomalies as Arrow and Parquet (the real 18.16 server)', () => {
  it('writes exactly the view’s rows and columns, typed, in both formats, through replays, versions, corrections and NaN', async () => {
    const db = await database();
    for (const table of ['rollups', 'anomalies'] as const) {
      const want = await viewRows(db, table);
      const kinds = new Map(exportColumns(table).map(([name, kind]) => [name, kind]));
      expect(want.length).toBe(table === 'rollups' ? 5 : 3);
      const arrow = await exportTable(res.clickhouse(), { database: db, table });
      expect(arrow.schema.fields.map((f) => [f.name, String(f.type)])).toEqual([...kinds].map(([name, kind]) => [name, ARROW_TYPES[kind as keyof typeof ARROW_TYPES]]));
      for (const format of ['arrow', 'parquet'] as const) {
        const bytes = exportBytes(arrow, format);
        const back = format === 'arrow' ? tableFromIPC(bytes) : tableFromIPC(readParquet(bytes).intoIPCStream());
        expect(arrowRows(back, kinds), `${table} as ${format}`).toEqual(want);
      }
    }
    // The merged rollup of series 1's first minute: partition 0's last version (5 points, sum 60), partition 1 (2, 10) and the correction (1, 4).
    const merged = (await viewRows(db, 'rollups')).find((r) => r['series_id'] === '1' && r['width_s'] === 60 && r['bucket_start'] === now / 1000);
    expect([merged?.['count'], merged?.['sum']]).toEqual(['8', 74]);
  });

  it('the command filters by metric pattern (quotes too), width and age, and picks the format from the file name', async () => {
    const db = await database();
    const run = (...args: string[]) => JSON.parse(execFileSync('node', [CLI, 'export', ...args], { env: { ...process.env, VIGIL_CLICKHOUSE_DATABASE: db } }).toString()) as { rows: number; format: string };
    const parquet = join(dir, 'cpu.parquet');
    expect(run('--table', 'rollups', '--metric', "cpu's%", '--width', '60', '--hours', '24', '--output', parquet)).toMatchObject({ rows: 2, format: 'parquet' });
    const kinds = new Map(exportColumns('rollups').map(([name, kind]) => [name, kind]));
    const got = arrowRows(tableFromIPC(readParquet(readFileSync(parquet)).intoIPCStream()), kinds);
    expect(got).toEqual(await viewRows(db, 'rollups', `WHERE metric LIKE 'cpu\\'s%' AND width_s = 60 AND bucket_start >= now() - 86400`));
    const arrow = join(dir, 'anomalies.feather');
    expect(run('--table', 'anomalies', '--output', arrow)).toMatchObject({ rows: 3, format: 'arrow' });
    expect(tableFromIPC(readFileSync(arrow)).numRows).toBe(3);
    expect(() => execFileSync('node', [CLI, 'export', '--table', 'points', '--output', arrow], { stdio: 'pipe' })).toThrow(/VIGIL_ERR_CLI_USAGE.*expected rollups or anomalies/s);
  });
});
