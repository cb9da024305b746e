import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { loadConfig } from '../core/config/index.js';
import { clickhouseConnection } from '../core/redact.js';
import { capabilitiesOf } from '../sinks/clickhouse/capabilities.js';
import { insertStatement, migrate } from '../sinks/clickhouse/schema.js';

/**
 * `npm run bench:marks` (issue 19): what the points marks cost ClickHouse. One RowBinary body of
 * `--rows` points (default 200,000, pipeline.insertMaxRows' default; 12 source partitions, 1,000
 * series) is inserted `--inserts` times (default 20) into Vigil's `points`, whose materialized
 * view writes the marks, and into a copy of the table without the view, alternating table by
 * table, for `--rounds` rounds (default 3); the same body each time, so the insert path alone
 * differs. Prints the median milliseconds per insert of each and their ratio.
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

async function insert(ch: ClickHouseClient, query: string, data: Buffer): Promise<number> {
  const t0 = performance.now();
  const r = await ch.exec({ query, values: Readable.from([data], { objectMode: false }) });
  r.stream.resume();
  await new Promise<void>((resolve, reject) => r.stream.once('end', resolve).once('error', reject));
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const config = loadConfig({ env: process.env });
  const ch = createClient({ ...clickhouseConnection(config.clickhouse) });
  const db = `vigil_mbench_${Date.now().toString(36)}`;
  const version = ((await (await ch.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })).json<{ v: string }>())[0] as { v: string }).v;
  try {
    await migrate(ch, db, capabilitiesOf(version));
    await ch.command({ query: `CREATE TABLE ${db}.points_plain AS ${db}.points` });
    const data = await body(ch);
    const withMarks = insertStatement(db, 'points');
    const plain = withMarks.replace(`${db}.points `, `${db}.points_plain `);
    const ms = { marks: [] as number[], plain: [] as number[] };
    // One warm-up each, then alternating so that drift (merges, caches) falls on both.
    await insert(ch, withMarks, data);
    await insert(ch, plain, data);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < inserts; i++) {
        const first = (r + i) % 2 === 0;
        const a = await insert(ch, first ? withMarks : plain, data);
        const b = await insert(ch, first ? plain : withMarks, data);
        ms.marks.push(first ? a : b);
        ms.plain.push(first ? b : a);
      }
    }
    const [m, p] = [median(ms.marks), median(ms.plain)];
    const marksRows = Number(((await (await ch.query({ query: `SELECT count() AS n FROM ${db}.points_marks`, format: 'JSONEachRow' })).json<{ n: string }>())[0] as { n: string }).n);
    console.log(
      `# Points marks (ClickHouse ${version}): ${rows.toLocaleString('en')} rows per insert (${data.length.toLocaleString('en')} bytes of RowBinary), ${ms.marks.length} inserts each\n` +
        `with the marks' view: ${m.toFixed(1)} ms per insert (median); without: ${p.toFixed(1)} ms; ratio ${(m / p).toFixed(3)} ` +
        `(${((m - p) / rows * 1e6).toFixed(0)} ns per point); ${marksRows} mark rows written (12 per insert before merges)`,
    );
  } finally {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${db}` });
    await ch.close();
  }
}

await main();
