import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { tableFromIPC, type Vector } from 'apache-arrow';
import { loadConfig } from '../core/config/index.js';
import { venvPython } from '../infra/index.js';
import { decodeHistory } from '../models/train.js';

/**
 * `npm run bench:history -- [--series N] [--buckets B] [--runs R]` (issue 15): the history `vigil
 * train` reads — each series' bucket means as one array — in the three formats a current server
 * writes it in, on each side of the wire, in one run:
 * - the server's side, a current ClickHouse in-process (chdb): the query's time per format;
 * - Vigil's side, in this process: the body decoded into Float64Arrays per series — JSONEachRow
 *   parsed as `vigil train` read it until 2026-11-29, RowBinary by models/train.ts' decoder, and
 *   ArrowStream by apache-arrow (`tableFromIPC`, each row's list copied out).
 * The three decodings are checked to give the same series and values before they are timed.
 */
const { values } = parseArgs({ options: { series: { type: 'string' }, buckets: { type: 'string' }, runs: { type: 'string' } } });
const SERIES = Number(values.series ?? 1000);
const BUCKETS = Number(values.buckets ?? 2000);
const RUNS = Number(values.runs ?? 5);
const FORMATS = ['JSONEachRow', 'RowBinary', 'ArrowStream'] as const;
type Format = (typeof FORMATS)[number];

function serverSide(python: string, dir: string): Record<Format, number> {
  const program = [
    'import json, time',
    'from chdb import session',
    's = session.Session()',
    's.query("CREATE DATABASE h")',
    's.query("CREATE TABLE h.r (series_id UInt64, bucket_start DateTime, mean Float64) ENGINE = MergeTree ORDER BY (series_id, bucket_start)")',
    `s.query("INSERT INTO h.r SELECT cityHash64(number % ${SERIES}), toDateTime(1767225600 + 60 * intDiv(number, ${SERIES})), sin(number) * 100 + intDiv(number, ${SERIES}) / 7 FROM numbers(${SERIES * BUCKETS})")`,
    // JSON as vigil train asked for it: the id as a string (a UInt64 number loses digits in JSON.parse).
    'q = "SELECT {id} AS series_id, groupArray(mean) AS values FROM (SELECT series_id, bucket_start, mean FROM h.r ORDER BY series_id, bucket_start) GROUP BY series_id"',
    'out = {}',
    `for f in ${JSON.stringify(FORMATS)}:`,
    '    best = None',
    `    for _ in range(${RUNS}):`,
    '        t = time.perf_counter()',
    // ArrowStream uncompressed: apache-arrow has no LZ4 codec of its own (the server's default is lz4_frame).
    '        b = s.query(q.replace("{id}", "toString(series_id)" if f == "JSONEachRow" else "series_id") + (" SETTINGS output_format_arrow_compression_method = \'none\'" if f == "ArrowStream" else ""), f).bytes()',
    '        d = time.perf_counter() - t',
    '        best = d if best is None or d < best else best',
    `    open("${dir}/" + f, "wb").write(b)`,
    '    out[f] = best',
    'print(json.dumps(out))',
  ].join('\n');
  return JSON.parse(execFileSync(python, ['-c', program], { maxBuffer: 1 << 26 }).toString()) as Record<Format, number>;
}

const decoders: Record<Format, (body: Uint8Array) => Map<string, Float64Array>> = {
  JSONEachRow(body) {
    const out = new Map<string, Float64Array>();
    const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const r = JSON.parse(line) as { series_id: string | number; values: (number | null)[] };
      out.set(String(r.series_id), Float64Array.from(r.values, (v) => (v === null ? Number.NaN : v)));
    }
    return out;
  },
  RowBinary: decodeHistory,
  ArrowStream(body) {
    const table = tableFromIPC(body);
    const ids = table.getChild('series_id') as Vector;
    const lists = table.getChild('values') as Vector;
    const out = new Map<string, Float64Array>();
    for (let i = 0; i < table.numRows; i++) out.set(String(ids.get(i)), Float64Array.from((lists.get(i) as Vector).toArray() as Float64Array));
    return out;
  },
};

function same(a: Map<string, Float64Array>, b: Map<string, Float64Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length) return false;
    for (let i = 0; i < v.length; i++) if (!Object.is(v[i], w[i])) return false;
  }
  return true;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

const dir = mkdtempSync(join(tmpdir(), 'vigil-history-'));
try {
  const server = serverSide(venvPython(loadConfig()), dir);
  const bodies = Object.fromEntries(FORMATS.map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))])) as Record<Format, Uint8Array>;
  const reference = decoders.RowBinary(bodies.RowBinary);
  const valuesCount = [...reference.values()].reduce((n, v) => n + v.length, 0);
  const rows: string[] = [];
  const base: Record<string, number> = {};
  for (const f of FORMATS) {
    const decoded = decoders[f](bodies[f]);
    if (!same(decoded, reference)) throw new Error(`bench:history: ${f} decodes to other series or values than RowBinary`);
    const times: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t = performance.now();
      decoders[f](bodies[f]);
      times.push(performance.now() - t);
    }
    const ns = (median(times) * 1e6) / valuesCount;
    base[f] = ns;
    rows.push(`| ${f} | ${(bodies[f].length / 2 ** 20).toFixed(1)} MiB | ${((server[f] * 1e9) / valuesCount).toFixed(1)} ns | ${ns.toFixed(1)} ns |`);
  }
  const lines = [
    `# History for vigil train: ${SERIES} series × ${BUCKETS} bucket means (${valuesCount.toLocaleString('en-US')} values), best server time and median decode of ${RUNS} runs`,
    '',
    '| format | body | server (chdb) per value | Vigil decode per value |',
    '|---|---|---|---|',
    ...rows,
    '',
    `Vigil's decode relative to JSONEachRow: RowBinary ${((base['RowBinary'] as number) / (base['JSONEachRow'] as number)).toFixed(3)}×, ArrowStream ${((base['ArrowStream'] as number) / (base['JSONEachRow'] as number)).toFixed(3)}×.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
