import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Dictionary, Field, Int32, List, makeVector, Table, tableToIPC, Utf8, vectorFromArray, type Vector } from 'apache-arrow';
import { loadConfig } from '../core/config/index.js';
import { venvPython } from '../infra/index.js';
import { encodeSeries } from '../workers/encode/rowbinary.js';
import { PointsEncoder } from '../workers/encode/points.js';
import { chdbStatements } from './chdb.js';
import { makeSeries, nextValue, rng } from './generator.js';

/**
 * `npm run bench:formats -- [--rows N] [--runs R]` (issue 15): what an insert format of the
 * `points` table costs on each side of the wire, in one run.
 *
 * - Vigil's side, in this process: the rows of a task encoded as RowBinary by the workers'
 *   PointsEncoder (series columns cached per series, as the worker does) and as ArrowStream by
 *   apache-arrow (typed-array columns, dictionary-encoded metric and topic, lists for tags).
 * - ClickHouse's side, a current server in-process (chdb): the same bodies parsed into a `Null`
 *   table with the points columns (parsing alone), and inserted into Vigil's own `points` table
 *   (the DDL `vigil schema` gives that version); Native too, exported by the server from those rows.
 *
 * Each body is checked to give the same rows (a hash over every column) before it is timed.
 */
const { values } = parseArgs({ options: { rows: { type: 'string' }, runs: { type: 'string' } } });
const ROWS = Number(values.rows ?? 1_000_000);
const RUNS = Number(values.runs ?? 5);
const SERIES = 1000;
const TOPIC = 'metrics';

interface Rows {
  series: bigint[];
  metric: string[];
  tags: string[][];
  type: number[];
  tsMs: Float64Array;
  value: Float64Array;
  partition: Uint32Array;
  offset: Float64Array;
  pointIndex: Uint32Array;
}

/** ROWS points of SERIES series (the demo generator's metrics, tags and values), a point every 10 s, 100 points per message. */
function generate(): Rows {
  const specs = makeSeries(SERIES);
  const rand = rng(7);
  const counters = new Float64Array(SERIES);
  const r: Rows = {
    series: [],
    metric: [],
    tags: [],
    type: [],
    tsMs: new Float64Array(ROWS),
    value: new Float64Array(ROWS),
    partition: new Uint32Array(ROWS),
    offset: new Float64Array(ROWS),
    pointIndex: new Uint32Array(ROWS),
  };
  const start = Date.UTC(2026, 10, 27);
  for (let i = 0; i < ROWS; i++) {
    const s = i % SERIES;
    const step = Math.floor(i / SERIES);
    const spec = specs[s]!;
    const v = nextValue(spec, s, step, rand, counters[s]!);
    if (spec.type === 'counter') counters[s] = v;
    r.series.push(BigInt(s + 1) * 0x9e3779b97f4a7c15n % (1n << 64n));
    r.metric.push(spec.metric);
    r.tags.push(Object.entries(spec.tags).sort(([a], [b]) => (a < b ? -1 : 1)).flat());
    r.type.push(spec.type === 'counter' ? 1 : 0);
    r.tsMs[i] = start + step * 10_000;
    r.value[i] = v;
    r.partition[i] = s % 4;
    r.offset[i] = Math.floor(i / 100);
    r.pointIndex[i] = i % 100;
  }
  return r;
}

function rowBinary(r: Rows): Uint8Array {
  const e = new PointsEncoder(ROWS * 80);
  const cache = new Map<bigint, Uint8Array>();
  for (let i = 0; i < ROWS; i++) {
    const id = r.series[i]!;
    let encoded = cache.get(id);
    if (!encoded) cache.set(id, (encoded = encodeSeries(id, r.metric[i]!, r.tags[i]!, '')));
    e.addEncoded(encoded, r.type[i]!, r.tsMs[i]!, r.value[i]!, TOPIC, r.partition[i]!, r.offset[i]!, r.pointIndex[i]!);
  }
  return e.rows.finish();
}

function arrowStream(r: Rows): Uint8Array {
  // A dictionary type per column: a type is its dictionary's id.
  const strings = () => new Dictionary(new Utf8(), new Int32());
  const list = new List(new Field('item', new Utf8(), true));
  const keys: string[][] = [];
  const vals: string[][] = [];
  for (const t of r.tags) {
    const k: string[] = [];
    const v: string[] = [];
    for (let j = 0; j < t.length; j += 2) {
      k.push(t[j]!);
      v.push(t[j + 1]!);
    }
    keys.push(k);
    vals.push(v);
  }
  const ts = new Uint32Array(ROWS);
  const tsMs = new BigInt64Array(ROWS);
  const offset = new BigUint64Array(ROWS);
  for (let i = 0; i < ROWS; i++) {
    ts[i] = Math.floor(r.tsMs[i]! / 1000);
    tsMs[i] = BigInt(r.tsMs[i]!);
    offset[i] = BigInt(r.offset[i]!);
  }
  const columns: Record<string, Vector> = {
    series_id: makeVector(BigUint64Array.from(r.series)),
    metric: vectorFromArray(r.metric, strings()),
    'tags.key': vectorFromArray(keys, list),
    'tags.value': vectorFromArray(vals, list),
    type: makeVector(Int8Array.from(r.type, (t) => t + 1)),
    ts: makeVector(ts),
    ts_ms: makeVector(tsMs),
    value: makeVector(r.value),
    source_topic: vectorFromArray(new Array<string>(ROWS).fill(TOPIC), strings()),
    source_partition: makeVector(r.partition),
    source_offset: makeVector(offset),
    point_index: makeVector(r.pointIndex),
  };
  return tableToIPC(new Table(columns), 'stream');
}

function timed<T>(f: () => T): { result: T; ms: number[] } {
  const ms: number[] = [];
  let result = f();
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    result = f();
    ms.push(performance.now() - t0);
  }
  return { result, ms };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** The server's side in chdb: every body inserted into a Null table and into `points`, RUNS times each; the rows' hash per body. */
function serverSide(python: string, dir: string): { version: string; formats: Record<string, { bytes: number; hash: string; nullMs: number[]; tableMs: number[] }> } {
  const program = `
import json, os, sys, time
from chdb import session
args = json.load(sys.stdin)
s = session.Session()
for q in args["ddl"]:
    s.query(q)
cols = str(s.query("SELECT arrayStringConcat(groupArray(concat('\`', name, '\` ', type)), ', ') FROM system.columns WHERE database = 'vigil' AND table = 'points'", "TSVRaw")).strip()
s.query("CREATE TABLE vigil.sink (" + cols + ") ENGINE = Null")
def run(q):
    t0 = time.perf_counter()
    s.query(q)
    return (time.perf_counter() - t0) * 1000
out = {"version": str(s.query("SELECT version()", "TSVRaw")).strip(), "formats": {}}
files = dict(args["files"])
# Native: what the server itself writes for these rows.
s.query("INSERT INTO vigil.points SELECT * FROM file('" + files["RowBinary"] + "', RowBinary)")
native = os.path.join(args["dir"], "points.native")
with open(native, "wb") as f:
    f.write(s.query("SELECT * FROM vigil.points", "Native").bytes())
files["Native"] = native
for fmt, path in files.items():
    src = "file('" + path + "', " + fmt + ")"
    s.query("TRUNCATE TABLE vigil.points")
    s.query("INSERT INTO vigil.points SELECT * FROM " + src)
    h = str(s.query("SELECT count(), sum(cityHash64(*)) FROM vigil.points", "TSVRaw")).strip()
    null_ms = [run("INSERT INTO vigil.sink SELECT * FROM " + src) for _ in range(args["runs"])]
    table_ms = []
    for _ in range(args["runs"]):
        s.query("TRUNCATE TABLE vigil.points")
        table_ms.append(run("INSERT INTO vigil.points SELECT * FROM " + src))
    out["formats"][fmt] = {"bytes": os.path.getsize(path), "hash": h, "nullMs": null_ms, "tableMs": table_ms}
print(json.dumps(out))
`;
  const ddl = chdbStatements(python).ddl.filter((q) => /\bvigil\.points\b/.test(q) && /^CREATE (DATABASE|TABLE)/.test(q));
  const input = JSON.stringify({ ddl: [`CREATE DATABASE IF NOT EXISTS vigil`, ...ddl], dir, runs: RUNS, files: { RowBinary: join(dir, 'points.rowbinary'), ArrowStream: join(dir, 'points.arrows') } });
  return JSON.parse(execFileSync(python, ['-c', program], { input, maxBuffer: 1 << 26 }).toString()) as ReturnType<typeof serverSide>;
}

async function main(): Promise<void> {
  const python = venvPython(loadConfig({ env: process.env }));
  const r = generate();
  const rb = timed(() => rowBinary(r));
  const arrow = timed(() => arrowStream(r));
  const dir = mkdtempSync(join(tmpdir(), 'vigil-formats-'));
  try {
    writeFileSync(join(dir, 'points.rowbinary'), rb.result);
    writeFileSync(join(dir, 'points.arrows'), arrow.result);
    const server = serverSide(python, dir);
    const hashes = new Set(Object.values(server.formats).map((f) => f.hash));
    if (hashes.size !== 1) throw new Error(`the formats gave different rows: ${JSON.stringify(Object.fromEntries(Object.entries(server.formats).map(([k, f]) => [k, f.hash])))}`);
    const us = (ms: number) => ((ms * 1000) / ROWS).toFixed(3);
    const encode: Record<string, number[]> = { RowBinary: rb.ms, ArrowStream: arrow.ms };
    const base = server.formats['RowBinary']!;
    const lines = [
      `# Insert formats of \`points\` (${ROWS.toLocaleString('en')} rows, ${SERIES} series; median of ${RUNS} runs; ClickHouse ${server.version} in chdb; the same rows from every body: ${[...hashes][0]})`,
      '',
      '| format | bytes per row | Vigil encodes, µs per row | ClickHouse parses (Null table), µs per row | ClickHouse inserts into `points`, µs per row | parse vs RowBinary |',
      '|---|---|---|---|---|---|',
      ...Object.entries(server.formats).map(
        ([fmt, f]) =>
          `| ${fmt} | ${(f.bytes / ROWS).toFixed(1)} | ${encode[fmt] ? us(median(encode[fmt])) : '– (not written by Vigil)'} | ${us(median(f.nullMs))} | ${us(median(f.tableMs))} | ${(median(f.nullMs) / median(base.nullMs)).toFixed(2)}× |`,
      ),
    ];
    console.log(lines.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
