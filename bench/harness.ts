/**
 * The benchmark harness (DESIGN.md §10): drives the real stack end to end and reports sustained
 * points/s in and rows/s out, produce→ClickHouse latency percentiles, CPU of Vigil, Kafka and
 * ClickHouse, Vigil's RSS, consumer lag over time and dead letters, against the raw-copy baseline
 * `kcat -C | clickhouse-client` on the same topic in the same run. Writes <out>/bench-<time>.{json,md,svg}.
 *
 * Latency: the k-th point acknowledged by Kafka is matched with the k-th row visible in ClickHouse
 * (both curves are monotone), which measures the pipeline's delay to the polling resolution.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from '@clickhouse/client';
import type { VigilConfig } from '../pipeline/config/index.js';
import { createKafka } from '../pipeline/kafka.js';
import { componentLogger } from '../pipeline/log.js';
import { lineChart } from './chart.js';
import { produce, type GenFormat } from './generator.js';
import { cpuSecondsOf, PipelineProcess } from './process.js';
import { countRows, kcatReference, servicePid } from './reference.js';

export interface BenchOptions {
  series: number;
  pointsPerMessage: number;
  format: GenFormat;
  /** Points per second produced live; 0 pre-fills the topic and measures how fast Vigil drains it. */
  rate: number;
  durationSeconds: number;
  /** With `rate` 0: how many points to pre-fill. */
  points: number;
  stages: 'raw' | 'rollups';
  workers: number;
  partitions: number;
  outDir: string;
  /** A previous result JSON to compare with; regressions are listed in the result. */
  compare?: string | undefined;
  /** Ratio below which a compared figure counts as a regression. */
  regressionRatio: number;
  progress?: ((line: string) => void) | undefined;
}

export const PRESETS: Record<string, Partial<BenchOptions>> = {
  smoke: { series: 20, pointsPerMessage: 1, format: 'json', rate: 2000, durationSeconds: 3, stages: 'rollups', workers: 2, partitions: 2 },
  default: { series: 1000, pointsPerMessage: 1, format: 'json', rate: 20000, durationSeconds: 30, stages: 'rollups', workers: 2, partitions: 4 },
  drain: { series: 1000, pointsPerMessage: 1, format: 'json', rate: 0, points: 400_000, stages: 'rollups', workers: 2, partitions: 4 },
  batched: { series: 1000, pointsPerMessage: 100, format: 'influx', rate: 0, points: 1_600_000, stages: 'rollups', workers: 2, partitions: 4 },
};

export interface BenchResult {
  version: 1;
  startedAt: string;
  options: Omit<BenchOptions, 'progress' | 'outDir' | 'compare'>;
  pointsProduced: number;
  rowsStored: number;
  deadLetters: number;
  seconds: number;
  pointsPerSecondIn: number;
  rowsPerSecondOut: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number } | null;
  cpuSeconds: { vigil: number; kafka: number | null; clickhouse: number | null };
  vigilRssMaxMiB: number;
  timeline: { t: number; rowsPerSecond: number; lag: number }[];
  reference: { name: 'kcat -C | clickhouse-client'; seconds: number; pointsPerSecond: number };
  /**
   * Vigil's rows/s out over the reference's points/s (above 1: Vigil is faster). Drain runs only
   * (`rate` 0): a live run is paced by its producer, so its throughput is no capacity figure.
   */
  ratioToReference: number | null;
  regressions: string[];
  files: { json: string; markdown: string; chart: string };
}

function firstTimeAtLeast(curve: [number, number][], k: number): number | undefined {
  let lo = 0;
  let hi = curve.length - 1;
  if (hi < 0 || (curve[hi] as [number, number])[1] < k) return undefined;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((curve[mid] as [number, number])[1] >= k) hi = mid;
    else lo = mid + 1;
  }
  return (curve[lo] as [number, number])[0];
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

export async function runBench(config: VigilConfig, o: BenchOptions): Promise<BenchResult> {
  const runId = Date.now().toString(36);
  const topic = `bench_${runId}`;
  const db = `bench_${runId}`;
  const kafka = createKafka(config, componentLogger('bench'));
  const ch = createClient({ url: config.clickhouse.url, username: config.clickhouse.username, password: config.clickhouse.password });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: o.partitions }], waitForLeaders: true });
  const produced: [number, number][] = [];
  const live = o.rate > 0;
  const gen = {
    topic,
    series: o.series,
    pointsPerMessage: o.pointsPerMessage,
    format: o.format,
    rate: o.rate,
    seed: 17,
    intervalMs: live ? Math.max(1, Math.round((o.series * 1000) / o.rate)) : 1000,
  };
  let prefilled: Awaited<ReturnType<typeof produce>> | undefined;
  if (!live) {
    prefilled = await produce(kafka, { ...gen, points: o.points, durationMs: 0, startMs: Date.now() - Math.ceil(o.points / o.series) * 1000 - 60_000 });
  }

  const pipeline = await PipelineProcess.start({
    VIGIL_KAFKA_TOPICS: topic,
    VIGIL_KAFKA_GROUP_ID: `bench_${runId}`,
    VIGIL_KAFKA_DLQ_TOPIC: `${topic}_dlq`,
    VIGIL_KAFKA_ALERTS_TOPIC: `${topic}_alerts`,
    VIGIL_CLICKHOUSE_DATABASE: db,
    VIGIL_PIPELINE_WORKERS: String(o.workers),
    VIGIL_ROLLUPS_ENABLED: String(o.stages !== 'raw'),
  });
  const kafkaPid = servicePid(config, 'kafka');
  const chPid = servicePid(config, 'clickhouse');
  const cpu0 = { vigil: pipeline.cpuSeconds(), kafka: kafkaPid ? cpuSecondsOf(kafkaPid) : 0, ch: chPid ? cpuSecondsOf(chPid) : 0 };
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const visible: [number, number][] = [[0, 0]];
  const timeline: BenchResult['timeline'] = [];
  let rssMax = pipeline.rss();
  let target = prefilled?.points ?? Infinity;

  const producing = live
    ? produce(kafka, { ...gen, points: 0, durationMs: o.durationSeconds * 1000, startMs: Date.now(), onProgress: (sent) => produced.push([elapsed(), sent]) })
    : Promise.resolve(prefilled);
  if (!live) produced.push([0, target]);
  let lastSample = 0;
  let done = false;
  void producing.then((s) => (target = s?.points ?? 0));
  while (!done) {
    await new Promise((r) => setTimeout(r, 100));
    const rows = await countRows(ch, `${db}.points`).catch(() => (visible[visible.length - 1] as [number, number])[1]);
    const t = elapsed();
    visible.push([t, rows]);
    rssMax = Math.max(rssMax, pipeline.rss());
    if (t - lastSample >= 1) {
      const prev = timeline.length ? (visible.find(([vt]) => vt >= lastSample) as [number, number]) : ([0, 0] as [number, number]);
      const lag = await pipeline.metric('vigil_consumer_lag_messages');
      timeline.push({ t: Math.round(t * 10) / 10, rowsPerSecond: Math.round((rows - prev[1]) / (t - prev[0] || 1)), lag });
      lastSample = t;
      o.progress?.(`${t.toFixed(0)} s  produced ${produced.length ? (produced[produced.length - 1] as [number, number])[1] : 0}  stored ${rows}  lag ${lag}  rss ${Math.round(pipeline.rss() / 2 ** 20)} MiB`);
    }
    done = rows >= target;
    if (t > o.durationSeconds + 300) throw new Error(`bench: only ${rows} of ${target} rows after ${t.toFixed(0)} s`);
  }
  const seconds = elapsed();
  const sent = (await producing) as NonNullable<Awaited<typeof producing>>;
  const cpu = {
    vigil: pipeline.cpuSeconds() - cpu0.vigil,
    kafka: kafkaPid ? cpuSecondsOf(kafkaPid) - cpu0.kafka : null,
    clickhouse: chPid ? cpuSecondsOf(chPid) - cpu0.ch : null,
  };
  const deadLetters = await pipeline.metric('vigil_dead_letters_total');
  pipeline.kill('SIGTERM');
  await pipeline.exited;

  let latencyMs: BenchResult['latencyMs'] = null;
  if (live) {
    const samples: number[] = [];
    for (let q = 1; q <= 200; q++) {
      const k = Math.ceil((q / 200) * sent.points);
      const tp = firstTimeAtLeast(produced, k);
      const tv = firstTimeAtLeast(visible, k);
      if (tp !== undefined && tv !== undefined) samples.push(Math.max(0, (tv - tp) * 1000));
    }
    samples.sort((a, b) => a - b);
    latencyMs = { p50: Math.round(percentile(samples, 0.5)), p95: Math.round(percentile(samples, 0.95)), p99: Math.round(percentile(samples, 0.99)), max: Math.round(samples[samples.length - 1] ?? 0) };
  }

  const refSeconds = await kcatReference(config, ch, db, topic, o.format !== 'influx', sent.points);
  await ch.command({ query: `DROP DATABASE ${db}` });
  await admin.deleteTopics({ topics: [topic, `${topic}_dlq`, `${topic}_alerts`] }).catch(() => undefined);
  await admin.disconnect();
  await ch.close();

  const { progress: _p, outDir: _o, compare: _c, ...options } = o;
  const rowsStored = (visible[visible.length - 1] as [number, number])[1];
  const result: BenchResult = {
    version: 1,
    startedAt: new Date(Date.now() - seconds * 1000).toISOString(),
    options,
    pointsProduced: sent.points,
    rowsStored,
    deadLetters,
    seconds,
    pointsPerSecondIn: live ? sent.points / (sent.elapsedMs / 1000) : sent.points / seconds,
    rowsPerSecondOut: rowsStored / seconds,
    latencyMs,
    cpuSeconds: cpu,
    vigilRssMaxMiB: Math.round(rssMax / 2 ** 20),
    timeline,
    reference: { name: 'kcat -C | clickhouse-client', seconds: refSeconds, pointsPerSecond: sent.points / refSeconds },
    ratioToReference: live ? null : rowsStored / seconds / (sent.points / refSeconds),
    regressions: [],
    files: { json: '', markdown: '', chart: '' },
  };
  if (o.compare) result.regressions = compareResults(JSON.parse(readFileSync(o.compare, 'utf8')) as BenchResult, result, o.regressionRatio);
  writeReport(result, o.outDir);
  return result;
}

/** Figures of `current` below `ratio` × `previous` (throughput; for latency, above 1/ratio). */
export function compareResults(previous: BenchResult, current: BenchResult, ratio: number): string[] {
  const out: string[] = [];
  const check = (name: string, prev: number, cur: number, higherIsBetter: boolean) => {
    if (!(prev > 0)) return;
    const r = higherIsBetter ? cur / prev : prev / cur;
    if (r < ratio) out.push(`${name}: ${cur.toFixed(2)} vs ${prev.toFixed(2)} before (${r.toFixed(2)}×, below ${ratio}×)`);
  };
  if (previous.ratioToReference !== null && current.ratioToReference !== null) {
    check('ratio to reference (rows/s out)', previous.ratioToReference, current.ratioToReference, true);
  }
  if (previous.latencyMs && current.latencyMs) check('latency p99 ms', previous.latencyMs.p99, current.latencyMs.p99, false);
  return out;
}

function writeReport(r: BenchResult, outDir: string): void {
  mkdirSync(outDir, { recursive: true });
  const stem = join(outDir, `bench-${r.startedAt.replaceAll(':', '-').slice(0, 19)}`);
  r.files = { json: `${stem}.json`, markdown: `${stem}.md`, chart: `${stem}.svg` };
  const fmt = (n: number | null | undefined, d = 0) => (n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
  const o = r.options;
  const md = [
    `# Vigil benchmark ${r.startedAt}`,
    '',
    `Workload: ${o.series} series, ${o.pointsPerMessage} point(s) per message, ${o.format}, ${o.rate > 0 ? `${o.rate} points/s for ${o.durationSeconds} s` : `${o.points} points pre-filled, drained`}; stages: ${o.stages}; ${o.workers} workers; ${o.partitions} partitions.`,
    '',
    '| figure | value |',
    '|---|---|',
    `| points produced / rows stored | ${fmt(r.pointsProduced)} / ${fmt(r.rowsStored)} |`,
    `| points/s in | ${fmt(r.pointsPerSecondIn)} |`,
    `| rows/s out | ${fmt(r.rowsPerSecondOut)} |`,
    `| reference (${r.reference.name.replace('|', '\\|')}) points/s | ${fmt(r.reference.pointsPerSecond)} |`,
    `| **ratio to reference** (drain runs) | **${r.ratioToReference === null ? '– (live run)' : fmt(r.ratioToReference, 2)}** |`,
    `| latency produce→ClickHouse p50 / p95 / p99 / max (ms) | ${r.latencyMs ? `${r.latencyMs.p50} / ${r.latencyMs.p95} / ${r.latencyMs.p99} / ${r.latencyMs.max}` : '– (drain run)'} |`,
    `| CPU s: Vigil / Kafka / ClickHouse | ${fmt(r.cpuSeconds.vigil, 1)} / ${fmt(r.cpuSeconds.kafka, 1)} / ${fmt(r.cpuSeconds.clickhouse, 1)} |`,
    `| Vigil RSS max | ${r.vigilRssMaxMiB} MiB |`,
    `| dead letters | ${fmt(r.deadLetters)} |`,
    `| regressions | ${r.regressions.length ? r.regressions.join('; ') : 'none'} |`,
    '',
    `![throughput and lag](${stem.split('/').pop()}.svg)`,
    '',
  ].join('\n');
  const svg = lineChart(`Vigil benchmark ${r.startedAt}`, [
    { label: 'rows/s out', unit: 'rows/s', points: r.timeline.map((p) => [p.t, p.rowsPerSecond]) },
    { label: 'consumer lag', unit: 'messages', points: r.timeline.map((p) => [p.t, p.lag]) },
  ]);
  writeFileSync(r.files.json, JSON.stringify(r, null, 2));
  writeFileSync(r.files.markdown, md);
  writeFileSync(r.files.chart, svg);
}
