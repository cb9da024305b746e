import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { loadConfig } from '../core/config/index.js';
import { clickhouseConnection } from '../core/redact.js';
import { venvPython } from '../infra/index.js';
import { chdbStatements } from './chdb.js';
import { capabilitiesOf } from '../sinks/clickhouse/capabilities.js';
import { schemaStatements } from '../sinks/clickhouse/schema.js';

/**
 * `npm run bench:bytes -- --db NAME` (issue 19, item 3): bytes per row of a database Vigil wrote,
 * per column, on the configured server and on a current ClickHouse in-process (chdb, the DDL
 * `vigil schema` gives that version: codecs, LowCardinality), each after a full merge
 * (`OPTIMIZE … FINAL`, which also drops a replay's duplicates). The database itself is left as
 * it is: each table is copied into a scratch database made with Vigil's DDL for the server, and
 * exported (Native) for chdb. Tables: points, rollups and anomalies (`--tables` to choose).
 */
const { values } = parseArgs({ options: { db: { type: 'string' }, tables: { type: 'string' } } });
const TABLES = (values.tables ?? 'points,rollups,anomalies').split(',').filter(Boolean);

type Sizes = Map<string, number>;

async function json<T>(ch: ClickHouseClient, query: string): Promise<T[]> {
  return (await ch.query({ query, format: 'JSONEachRow' })).json<T>();
}

/** Compressed bytes per column of a table on the server, after a full merge of a copy (a scratch database with Vigil's DDL for that server). */
async function serverSizes(ch: ClickHouseClient, db: string, table: string, scratch: string): Promise<{ rows: number; columns: Sizes }> {
  await ch.command({ query: `INSERT INTO ${scratch}.${table} SELECT * FROM ${db}.${table}` });
  await ch.command({ query: `OPTIMIZE TABLE ${scratch}.${table} FINAL` });
  const [count] = await json<{ n: string }>(ch, `SELECT count() AS n FROM ${scratch}.${table}`);
  const cols = await json<{ name: string; b: string }>(ch, `SELECT name, data_compressed_bytes AS b FROM system.columns WHERE database = '${scratch}' AND table = '${table}'`);
  return { rows: Number(count?.n ?? 0), columns: new Map(cols.map((c) => [c.name, Number(c.b)])) };
}

/** The same rows in chdb with the current server's DDL: compressed bytes per column. */
function chdbSizes(python: string, native: string, table: string): { version: string; rows: number; columns: Sizes } {
  const program = [
    'import json, sys',
    'from chdb import session',
    'args = json.load(sys.stdin)',
    's = session.Session()',
    'for q in args["ddl"]:',
    '    s.query(q)',
    // Wide parts: a small table's compact parts report no size per column.
    `s.query("ALTER TABLE vigil.${table} MODIFY SETTING min_bytes_for_wide_part = 0")`,
    `s.query("INSERT INTO vigil.${table} SELECT * FROM file('" + args["file"] + "', Native)")`,
    `s.query("OPTIMIZE TABLE vigil.${table} FINAL")`,
    `rows = int(str(s.query("SELECT count() FROM vigil.${table}", "CSV")).strip())`,
    `cols = str(s.query("SELECT name, data_compressed_bytes FROM system.columns WHERE database = 'vigil' AND table = '${table}'", "JSONCompact"))`,
    'print(json.dumps({"version": str(s.query("SELECT version()", "CSV")).strip().strip(chr(34)), "rows": rows, "columns": json.loads(cols)["data"]}))',
  ].join('\n');
  // The DDL for the version chdb runs: asked of chdb first, then the statements of that version.
  const { ddl } = chdbStatements(python);
  const out = JSON.parse(execFileSync(python, ['-c', program], { input: JSON.stringify({ ddl, file: native }), maxBuffer: 1 << 24 }).toString()) as { version: string; rows: number; columns: [string, string | number][] };
  return { version: out.version, rows: out.rows, columns: new Map(out.columns.map(([n, b]) => [n, Number(b)])) };
}

const perRow = (bytes: number | undefined, rows: number) => (bytes === undefined || rows === 0 ? '–' : (bytes / rows).toFixed(2));
const total = (s: Sizes) => [...s.values()].reduce((a, b) => a + b, 0);

async function main(): Promise<void> {
  const config = loadConfig({ env: process.env });
  const db = values.db ?? config.clickhouse.database;
  const ch = createClient({ ...clickhouseConnection(config.clickhouse), request_timeout: 3_600_000, clickhouse_settings: { send_progress_in_http_headers: 1, http_headers_progress_interval_ms: '10000' } });
  const [server] = await json<{ v: string }>(ch, 'SELECT version() AS v');
  const python = venvPython(config);
  const haveChdb = existsSync(python);
  const scratch = `vigil_bytes_${Date.now().toString(36)}`;
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bytes-'));
  // Vigil's DDL for this server, without ON CLUSTER: a copy of a replicated table would share its ZooKeeper path.
  for (const query of schemaStatements(scratch, capabilitiesOf(server?.v ?? ''))) await ch.command({ query });
  const out: string[] = [`# Bytes per row of ${db} (ClickHouse ${server?.v ?? '?'}${haveChdb ? ' and a current server in chdb' : ''}, after a full merge)`, ''];
  try {
    for (const table of TABLES) {
      const here = await serverSizes(ch, db, table, scratch);
      let current: ReturnType<typeof chdbSizes> | null = null;
      if (haveChdb && here.rows > 0) {
        const file = join(dir, `${table}.native`);
        const rs = await ch.exec({ query: `SELECT * FROM ${db}.${table} FORMAT Native` });
        await pipeline(rs.stream, createWriteStream(file));
        current = chdbSizes(python, file, table);
        rmSync(file);
      }
      out.push(`## ${table}: ${here.rows.toLocaleString('en-US')} rows`, '', `| column | ${server?.v ?? 'server'} | ${current ? current.version : 'current (chdb not installed)'} |`, '|---|---|---|');
      for (const [name, bytes] of here.columns) out.push(`| ${name} | ${perRow(bytes, here.rows)} | ${current ? perRow(current.columns.get(name), current.rows) : '–'} |`);
      out.push(`| **total** | **${perRow(total(here.columns), here.rows)}** | **${current ? perRow(total(current.columns), current.rows) : '–'}** |`, '');
    }
  } finally {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${scratch}` });
    rmSync(dir, { recursive: true, force: true });
    await ch.close();
  }
  console.log(out.join('\n'));
}

await main();
