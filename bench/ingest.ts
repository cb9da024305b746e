/**
 * Ingestion benchmark (issue 3's report): end-to-end points/s of Vigil for 1 and 100 points per
 * message, JSON and Influx line protocol, against a raw copy of the same topic with
 * `kcat -C | clickhouse-client` in the same run. Each topic is filled first, then drained, so the
 * figure is the sustainable catch-up rate. Writes bench/results/ingest-<time>.{json,md}.
 *
 *   npm run bench:ingest -- [--points N] [--profile]
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config/index.js';
import { rootLogger } from '../core/log.js';
import { produce, type GenFormat } from './generator.js';
import { cpuSecondsOf, PipelineProcess, waitFor } from './process.js';
import { summariseProfiles } from './profile.js';
import { benchClients, countRows, kcatReference, servicePid } from './reference.js';

const { values } = parseArgs({ options: { points: { type: 'string' }, profile: { type: 'boolean' } } });
const basePoints = Number(values.points ?? 400_000);
rootLogger('warn');
const config = loadConfig();
const clients = await benchClients(config);
const { ch, kafka, admin } = clients;
const runId = Date.now().toString(36);
const resultsDir = new URL('./results/', import.meta.url.includes('/dist/bench/') ? new URL('../../bench/', import.meta.url) : import.meta.url).pathname;
mkdirSync(resultsDir, { recursive: true });

interface CaseResult {
  case: string;
  points: number;
  messages: number;
  vigilSeconds: number;
  vigilPointsPerSec: number;
  vigilCpuSeconds: number;
  vigilRssMaxMb: number;
  kafkaCpuSeconds: number;
  clickhouseCpuSeconds: number;
  refSeconds: number;
  refPointsPerSec: number;
  ratioToRef: number;
}

async function runCase(format: GenFormat, pointsPerMessage: number, points: number, profileDir?: string, rollups = true): Promise<CaseResult> {
  const name = `${format}_${pointsPerMessage}ppm${rollups ? '' : '_norollups'}`;
  const topic = `bench_${runId}_${name}`;
  const db = `bench_${runId}_${name}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  const intervalMs = 1000;
  const series = 1000;
  const sent = await produce(kafka, { topic, series, pointsPerMessage, format, rate: 0, points, durationMs: 0, intervalMs, startMs: Date.now() - Math.ceil(points / series) * intervalMs - 60_000, seed: 11 });

  // Vigil, from an empty group to every row stored.
  const kafkaPid = servicePid(config, 'kafka');
  const chPid = servicePid(config, 'clickhouse');
  const pipeline = await PipelineProcess.start(
    {
      VIGIL_KAFKA_TOPICS: topic,
      VIGIL_KAFKA_GROUP_ID: `bench_${runId}_${name}`,
      VIGIL_CLICKHOUSE_DATABASE: db,
      VIGIL_KAFKA_DLQ_TOPIC: `bench_${runId}_dlq`,
      VIGIL_KAFKA_ALERTS_TOPIC: `bench_${runId}_alerts`,
      VIGIL_ROLLUPS_ENABLED: String(rollups),
    },
    profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  );
  const cpu0 = pipeline.cpuSeconds();
  const k0 = kafkaPid ? cpuSecondsOf(kafkaPid) : 0;
  const c0 = chPid ? cpuSecondsOf(chPid) : 0;
  const t0 = performance.now();
  let rssMax = pipeline.rss();
  await waitFor(`${name}: all rows`, async () => {
    rssMax = Math.max(rssMax, pipeline.rss());
    return (await countRows(ch, `${db}.points`)) >= sent.points;
  }, 600_000, 50);
  const vigilSeconds = (performance.now() - t0) / 1000;
  const vigilCpu = pipeline.cpuSeconds() - cpu0;
  const kafkaCpu = kafkaPid ? cpuSecondsOf(kafkaPid) - k0 : 0;
  const chCpu = chPid ? cpuSecondsOf(chPid) - c0 : 0;
  pipeline.kill('SIGTERM');
  await pipeline.exited;

  // Reference: the same topic copied raw by kcat into clickhouse-client.
  const refSeconds = await kcatReference(config, ch, db, topic, format !== 'influx', sent.points);

  await ch.command({ query: `DROP DATABASE ${db}` });
  await admin.deleteTopics({ topics: [topic] });
  return {
    case: `${format === 'ndjson' ? 'json (ndjson)' : format}, ${pointsPerMessage} pt/msg${rollups ? '' : ', rollups off'}`,
    points: sent.points,
    messages: sent.messages,
    vigilSeconds,
    vigilPointsPerSec: sent.points / vigilSeconds,
    vigilCpuSeconds: vigilCpu,
    vigilRssMaxMb: rssMax / 2 ** 20,
    kafkaCpuSeconds: kafkaCpu,
    clickhouseCpuSeconds: chCpu,
    refSeconds,
    refPointsPerSec: sent.points / refSeconds,
    ratioToRef: refSeconds / vigilSeconds,
  };
}

// Rollups are on by default; the same workloads with them off measure their cost in this run.
const cases: [GenFormat, number, number, boolean][] = [
  ['json', 1, basePoints, true],
  ['json', 1, basePoints, false],
  ['influx', 1, basePoints, true],
  ['ndjson', 100, basePoints * 4, true],
  ['ndjson', 100, basePoints * 4, false],
  ['influx', 100, basePoints * 4, true],
];
const results: CaseResult[] = [];
for (const [format, ppm, points, rollups] of cases) {
  const r = await runCase(format, ppm, points, undefined, rollups);
  results.push(r);
  console.log(`${r.case}: vigil ${Math.round(r.vigilPointsPerSec)} pts/s, reference ${Math.round(r.refPointsPerSec)} pts/s, ratio ${r.ratioToRef.toFixed(2)}`);
}
let profile: { fn: string; share: number }[] | undefined;
if (values.profile) {
  const dir = mkdtempSync(join(resultsDir, `profile-${runId}-`));
  await runCase('json', 1, basePoints, dir);
  profile = summariseProfiles(dir, 20);
}
await clients.close();

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const md = [
  `# Ingestion benchmark ${new Date().toISOString()}`,
  '',
  `Machine: ${(await import('node:os')).cpus().length} cores. Topic pre-filled (4 partitions, 1,000 series), then drained by Vigil (\`vigil run\`, defaults) into \`points\`; reference: \`kcat -C | clickhouse-client\` copying the same topic raw into a plain MergeTree table. Ratio = reference time / Vigil time (above 1: Vigil is faster).`,
  '',
  '| case | points | Vigil pts/s | reference pts/s | ratio | Vigil CPU s | Kafka CPU s | ClickHouse CPU s | Vigil RSS max MiB |',
  '|---|---|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.case} | ${fmt(r.points)} | ${fmt(r.vigilPointsPerSec)} | ${fmt(r.refPointsPerSec)} | ${fmt(r.ratioToRef, 2)} | ${fmt(r.vigilCpuSeconds, 1)} | ${fmt(r.kafkaCpuSeconds, 1)} | ${fmt(r.clickhouseCpuSeconds, 1)} | ${fmt(r.vigilRssMaxMb)} |`),
  ...(profile ? ['', '## Profile (json, 1 pt/msg; self time, all threads)', '', '| function | share |', '|---|---|', ...profile.map((p) => `| \`${p.fn}\` | ${(p.share * 100).toFixed(1)}% |`)] : []),
  '',
];
const stem = join(resultsDir, `ingest-${new Date().toISOString().replaceAll(':', '-').slice(0, 19)}`);
writeFileSync(`${stem}.json`, JSON.stringify({ runId, results, profile }, null, 2));
writeFileSync(`${stem}.md`, md.join('\n'));
console.log(md.join('\n'));
console.log(`written ${stem}.{json,md}`);
