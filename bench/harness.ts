/**
 * The benchmark harness (DESIGN.md §10): drives the real stack end to end and reports sustained
 * points/s in and rows/s out, produce→ClickHouse and produce→alert latency percentiles, detection
 * quality on injected anomalies, CPU of Vigil, Kafka and ClickHouse, Vigil's RSS, consumer lag over
 * time and dead letters, against two baselines on the same topic in the same run: the raw copy
 * `kcat -C | clickhouse-client` and ClickHouse's Kafka engine with a materialized view.
 * Writes <out>/bench-<time>.{json,md,svg}.
 *
 * Latency: the k-th point acknowledged by Kafka is matched with the k-th row visible in ClickHouse
 * (both curves are monotone), which measures the pipeline's delay to the polling resolution.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import type { VigilConfig } from '../core/config/index.js';
import { lineChart } from './chart.js';
import { produce, tenantOf, type GenFormat } from './generator.js';
import { defaultLabelledOptions, labelledWorkload, produceLabelled, type LabelledWorkload } from './anomalies.js';
import { injectIncidents, type InjectedIncident } from './grouping.js';
import { FORECAST_DAYS, FORECAST_METRIC, readForecastQuality, readIncidentQuality, type ForecastQuality, type IncidentQuality } from './pipeline-quality.js';
import { mulberry32 } from '../models/random.js';
import { evaluate, type Quality } from '../models/evaluate.js';
import { Partitioners, type Kafka } from 'kafkajs';
import { cpuSecondsOf, PipelineProcess } from './process.js';
import { benchClients, countRows, kcatReference, servicePid } from './reference.js';
import { kafkaEngineReference } from './kafka-engine.js';

export interface BenchOptions {
  series: number;
  pointsPerMessage: number;
  format: GenFormat;
  /** Points per second produced live; 0 pre-fills the topic and measures how fast Vigil drains it. */
  rate: number;
  durationSeconds: number;
  /** With `rate` 0: how many points to pre-fill. */
  points: number;
  /**
   * With `rate` 0: event time between successive points of a series (default 1000 ms). The
   * detectors score a bucket, not a point: at 1 s a 10-second scored bucket holds 10 points; a
   * scrape every 15 s into 60-second buckets gives 4 (`--interval-ms 2500` at the bench's 10 s).
   */
  intervalMs?: number | undefined;
  /**
   * raw: points only; rollups: + event-time buckets; scoring: + the anomaly ensemble (anomalies
   * table); alerts: + rules (a probe threshold rule and the predefined rules) and their outputs.
   */
  stages: BenchStages;
  /** kafka.repartition for the run (the generator keys by series: `always` measures what the repartition hop costs). */
  repartition?: 'auto' | 'always' | 'never' | undefined;
  /**
   * Also produce a labelled workload with injected anomalies first (its series count), and report
   * detection quality; with the scoring stages, also correlated incidents injected into it and a
   * forecast workload before it, and report incident grouping and forecast accuracy.
   */
  anomalies: number;
  workers: number;
  partitions: number;
  /**
   * Tenants (issue 18): the series spread over this many, by a `tenant` tag, `t0` the noisy one
   * with half the series (so half the points); per-tenant throughput and latency reported. 0: none.
   */
  tenants?: number | undefined;
  outDir: string;
  /** A previous result JSON to compare with; regressions are listed in the result. */
  compare?: string | undefined;
  /** Ratio below which a compared figure counts as a regression. */
  regressionRatio: number;
  progress?: ((line: string) => void) | undefined;
}

export const BENCH_STAGES = ['raw', 'rollups', 'scoring', 'alerts'] as const;
export type BenchStages = (typeof BENCH_STAGES)[number];

export const PRESETS: Record<string, Partial<BenchOptions>> = {
  smoke: { series: 20, pointsPerMessage: 1, format: 'json', rate: 2000, durationSeconds: 12, stages: 'alerts', anomalies: 4, workers: 2, partitions: 2 },
  default: { series: 1000, pointsPerMessage: 1, format: 'json', rate: 20000, durationSeconds: 60, stages: 'alerts', anomalies: 20, workers: 2, partitions: 4 },
  drain: { series: 1000, pointsPerMessage: 1, format: 'json', rate: 0, points: 400_000, stages: 'alerts', anomalies: 0, workers: 2, partitions: 4 },
  batched: { series: 1000, pointsPerMessage: 100, format: 'influx', rate: 0, points: 1_600_000, stages: 'alerts', anomalies: 0, workers: 2, partitions: 4 },
  // Issue 18: 100 tenants, t0 with half the series (half the points), live at the default's rate.
  tenants: { series: 1000, pointsPerMessage: 1, format: 'json', rate: 20000, durationSeconds: 60, stages: 'alerts', anomalies: 0, workers: 2, partitions: 4, tenants: 100 },
};

/** Buckets an injected incident's shift lasts. */
const INCIDENT_BUCKETS = 30;

/** Rules of the `alerts` stage: a probe rule the harness times, plus the predefined rules. */
const PROBE_METRIC = 'bench.probe';
const PROBE_RULES = `rules:
  - id: bench-probe
    expr: "${PROBE_METRIC} > 50 for 0s"
    keepFiringFor: 0s
`;
/** The alerts stage scores and evaluates 10 s buckets with 1 s of lateness, so an alert can come within ~11 s of its cause. */
const ALERT_ENV = { VIGIL_ROLLUPS_WIDTHS_SECONDS: '10,60', VIGIL_MODELS_WIDTH_SECONDS: '10', VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '1000', VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '2000' };

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
  /** With `tenants`: the noisy tenant's figures and the spread of the others'. */
  tenants: TenantFigures | null;
  /**
   * Produce→alert: from producing a probe series' first point above its rule's threshold to the
   * alert event arriving on the alerts topic (live runs with the alerts stage). The bucket width
   * (10 s) and the lateness (1 s) are its floor: a rule decides on closed buckets.
   */
  alertLatencyMs: { probes: number; p50: number; p95: number; p99: number; max: number } | null;
  /** Detection quality on the injected labelled anomalies, read back from `anomalies_dedup`. */
  quality: (Pick<Quality, 'events' | 'detected' | 'falseAlarms' | 'precision' | 'recall' | 'f1' | 'fpPerThousand' | 'meanDelayBuckets'> & { buckets: number; workloadBuckets: number }) | null;
  /**
   * The pipeline's forecasts of the forecast workload (min(4, anomalies) labelled series of
   * FORECAST_DAYS days, before the labelled workload), issued in its last day, four seasons ahead,
   * scored against what came with the seasonal naive and naive forecasts in the same run.
   */
  forecast: ForecastQuality | null;
  /** The pipeline's incidents (`incidents_dedup`) against the correlated incidents injected into the labelled workload. */
  incidents: IncidentQuality | null;
  cpuSeconds: { vigil: number; kafka: number | null; clickhouse: number | null };
  vigilRssMaxMiB: number;
  timeline: { t: number; rowsPerSecond: number; lag: number }[];
  reference: { name: 'kcat -C | clickhouse-client'; seconds: number; pointsPerSecond: number };
  /**
   * What a user would set up instead: ClickHouse's Kafka table engine with a materialized view into
   * a MergeTree table, reading the same topic (bench/kafka-engine.ts; tags kept). Null when it failed.
   */
  kafkaEngine: { seconds: number; pointsPerSecond: number; notes: string } | null;
  /** Vigil's rows/s out over the Kafka engine's points/s (drain runs). */
  ratioToKafkaEngine: number | null;
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

export interface TenantFigure {
  tenant: string;
  /** Its share of the produced points. */
  share: number;
  rows: number;
  /** Its rows over the run's seconds. */
  pointsPerSecond: number;
  /** Live runs: produce→ClickHouse of its points (its share of the produced curve against its stored rows). */
  latencyMs: { p50: number; p99: number } | null;
}

export interface TenantFigures {
  count: number;
  noisy: TenantFigure;
  /** The other tenants: points/s and p99 latency, least / median / most. */
  others: { pointsPerSecond: [number, number, number]; latencyP99Ms: [number, number, number] | null };
}

/** Rows stored per tenant now, appended to each tenant's curve. */
async function sampleTenants(ch: ClickHouseClient, db: string, t: number, curves: Map<string, [number, number][]>): Promise<void> {
  const rs = await ch.query({ query: `SELECT tenant, count() AS n FROM ${db}.points GROUP BY tenant`, format: 'JSONEachRow' }).catch(() => null);
  if (!rs) return;
  for (const { tenant, n } of await rs.json<{ tenant: string; n: string }>()) curves.get(tenant)?.push([t, Number(n)]);
}

/** Least, median and most. */
function spread(values: number[]): [number, number, number] {
  const v = [...values].sort((a, b) => a - b);
  return [v[0] ?? 0, v[Math.floor(v.length / 2)] ?? 0, v[v.length - 1] ?? 0];
}

export async function runBench(config: VigilConfig, o: BenchOptions): Promise<BenchResult> {
  const runId = Date.now().toString(36);
  const topic = `bench_${runId}`;
  const db = `bench_${runId}`;
  const clients = await benchClients(config);
  const { kafka, ch, admin } = clients;
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
    intervalMs: live ? Math.max(1, Math.round((o.series * 1000) / o.rate)) : (o.intervalMs ?? 1000),
    tenants: o.tenants ?? 0,
  };
  // Each tenant's share of the produced points (round-robin over the series).
  const shares = new Map<string, number>();
  for (let i = 0; i < o.series && (o.tenants ?? 0) > 0; i++) {
    const t = tenantOf(i, o.tenants ?? 0);
    shares.set(t, (shares.get(t) ?? 0) + 1 / o.series);
  }
  /** Per tenant, [seconds, rows stored] samples. */
  const tenantVisible = new Map<string, [number, number][]>([...shares.keys()].map((t) => [t, [[0, 0]]]));
  // A drain's event time span: its points per series, spaced by the interval.
  const spanMs = Math.ceil(o.points / o.series) * gen.intervalMs;
  // The labelled history ends now and goes first, so the main workload's event times follow it.
  let labelled: { points: number; labels: { series: number; kind: string; startMs: number; endMs: number }[]; widthMs: number; buckets: number; workload: LabelledWorkload } | undefined;
  const scored = o.stages === 'scoring' || o.stages === 'alerts';
  let forecastWorkload: LabelledWorkload | undefined;
  let forecastPoints = 0;
  let injected: InjectedIncident[] = [];
  // Its buckets are the scored width, its season 240 buckets (the seasonal detector is told), five seasons long.
  const widthMs = o.stages === 'alerts' ? 10_000 : 60_000;
  const periodMs = 240 * widthMs;
  if (o.anomalies > 0) {
    const buckets = 5 * 240;
    const startMs = Math.floor(Date.now() / widthMs) * widthMs - buckets * widthMs - (live ? 0 : spanMs + 120_000);
    const workload = labelledWorkload(defaultLabelledOptions({ series: o.anomalies, buckets, widthMs, periodMs, startMs, anomaliesPerSeries: 4 }));
    if (scored) {
      // Before it (event time goes forward per partition): the forecast workload, a point per bucket.
      const days = FORECAST_DAYS * 86_400_000;
      forecastWorkload = labelledWorkload(defaultLabelledOptions({ series: Math.min(4, o.anomalies), buckets: days / widthMs, widthMs, periodMs, startMs: startMs - days, anomaliesPerSeries: 2, seed: 5 }));
      forecastPoints = (await produceLabelled(kafka, { topic, workload: forecastWorkload, format: 'ndjson', pointsPerBucket: 1, metric: FORECAST_METRIC })).points;
      // Three correlated incidents after the learning period (576 buckets), 3-6 series each (labelled: detection counts them too).
      injected = injectIncidents(workload, mulberry32(7919), { count: 3, firstAt: 640, spacing: 180, jitter: 40, maxLag: 3, minSize: 3, maxSize: 6, buckets: INCIDENT_BUCKETS, label: true });
    }
    // ndjson: the kcat|clickhouse-client baseline reads newline-delimited objects.
    const r = await produceLabelled(kafka, { topic, workload, format: 'ndjson', pointsPerBucket: 2 });
    // Buckets with data (dropouts have none): what Vigil should have scored.
    const present = workload.series.reduce((n, x) => n + x.values.filter((v) => !Number.isNaN(v)).length, 0);
    labelled = { points: r.points, labels: r.labels, widthMs, buckets: present, workload };
  }
  let prefilled: Awaited<ReturnType<typeof produce>> | undefined;
  if (!live) {
    prefilled = await produce(kafka, { ...gen, points: o.points, durationMs: 0, startMs: Date.now() - spanMs - 60_000 });
  }

  const pipeline = await PipelineProcess.start({
    VIGIL_KAFKA_TOPICS: topic,
    VIGIL_KAFKA_GROUP_ID: `bench_${runId}`,
    VIGIL_KAFKA_DLQ_TOPIC: `${topic}_dlq`,
    VIGIL_KAFKA_ALERTS_TOPIC: `${topic}_alerts`,
    VIGIL_CLICKHOUSE_DATABASE: db,
    VIGIL_PIPELINE_WORKERS: String(o.workers),
    VIGIL_ROLLUPS_ENABLED: String(o.stages !== 'raw'),
    VIGIL_MODELS_ENABLED: String(o.stages === 'scoring' || o.stages === 'alerts'),
    VIGIL_MODELS_SEASONAL_PERIODS_SECONDS: String(periodMs / 1000),
    // The forecast workload's series, four seasons ahead, every hour; incidents grouped every 2 s
    // at a window of 10 buckets (the default's at 60 s).
    ...(forecastWorkload ? { VIGIL_FORECASTS_SERIES: FORECAST_METRIC, VIGIL_FORECASTS_HORIZON_SECONDS: String((4 * periodMs) / 1000), VIGIL_FORECASTS_STEP_SECONDS: '60', VIGIL_FORECASTS_REFRESH_SECONDS: '3600' } : {}),
    ...(scored ? { VIGIL_INCIDENTS_INTERVAL_MS: '2000', VIGIL_INCIDENTS_WINDOW_SECONDS: String((10 * widthMs) / 1000) } : {}),
    VIGIL_KAFKA_REPARTITION: o.repartition ?? 'auto',
    ...(shares.size > 0 ? { VIGIL_TENANTS_TAG: 'tenant' } : {}),
    VIGIL_KAFKA_REPARTITION_TOPIC: `${topic}_repartition`,
    ...(o.stages === 'alerts' ? { ...ALERT_ENV, VIGIL_ALERTS_RULES_FILE: rulesFile() } : {}),
    // BENCH_PROFILE_DIR=DIR: V8 CPU profiles of the pipeline's threads (main and workers) there;
    // BENCH_NODE_ARGS: more node flags for the pipeline (e.g. --trace-gc, with BENCH_PIPELINE_LOG).
  }, [
    ...(process.env['BENCH_PROFILE_DIR'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_PROFILE_DIR']}`] : []),
    ...(process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a.length > 0),
  ]);
  /** Every record on the repartition topic received (asked only when there is one: not under `never`). */
  const secondStageCaughtUp = async (): Promise<boolean> => {
    const ends = await admin.fetchTopicOffsets(`${topic}_repartition`).catch(() => []);
    const records = ends.reduce((n, p) => n + Number(p.high), 0);
    return (await pipeline.metric('vigil_messages_received_total', { topic: `${topic}_repartition` })) >= records;
  };
  const kafkaPid = servicePid(config, 'kafka');
  const chPid = servicePid(config, 'clickhouse');
  const cpu0 = { vigil: pipeline.cpuSeconds(), kafka: kafkaPid ? cpuSecondsOf(kafkaPid) : 0, ch: chPid ? cpuSecondsOf(chPid) : 0 };
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const visible: [number, number][] = [[0, 0]];
  const timeline: BenchResult['timeline'] = [];
  let rssMax = pipeline.rss();
  const extra = (labelled?.points ?? 0) + forecastPoints;
  let target = prefilled ? prefilled.points + extra : Infinity;
  const probes = live && o.stages === 'alerts' ? startProbes(kafka, topic, `${topic}_alerts`, o.durationSeconds) : undefined;

  const producing = live
    ? produce(kafka, { ...gen, points: 0, durationMs: o.durationSeconds * 1000, startMs: Date.now(), onProgress: (sent) => produced.push([elapsed(), sent + extra]) })
    : Promise.resolve(prefilled);
  if (!live) produced.push([0, target]);
  else if (extra > 0) produced.push([0, extra]);
  let lastSample = 0;
  let lastTenantSample = 0;
  let done = false;
  // Probe points share the topic: the target counts them once the probes have stopped.
  void Promise.all([producing, probes?.producing]).then(([s, probePoints]) => (target = (s?.points ?? 0) + extra + (probePoints ?? 0)));
  while (!done) {
    await new Promise((r) => setTimeout(r, 100));
    const rows = await countRows(ch, `${db}.points`).catch(() => (visible[visible.length - 1] as [number, number])[1]);
    const t = elapsed();
    visible.push([t, rows]);
    rssMax = Math.max(rssMax, pipeline.rss());
    // Per tenant every 250 ms (a GROUP BY over the stored points: the granularity of its latencies).
    if (shares.size > 0 && t - lastTenantSample >= 0.25) {
      lastTenantSample = t;
      await sampleTenants(ch, db, t, tenantVisible);
    }
    if (t - lastSample >= 1) {
      const prev = timeline.length ? (visible.find(([vt]) => vt >= lastSample) as [number, number]) : ([0, 0] as [number, number]);
      const lag = await pipeline.metric('vigil_consumer_lag_messages');
      timeline.push({ t: Math.round(t * 10) / 10, rowsPerSecond: Math.round((rows - prev[1]) / (t - prev[0] || 1)), lag });
      lastSample = t;
      o.progress?.(`${t.toFixed(0)} s  produced ${produced.length ? (produced[produced.length - 1] as [number, number])[1] : 0}  stored ${rows}  lag ${lag}  rss ${Math.round(pipeline.rss() / 2 ** 20)} MiB`);
    }
    // Stored is not done while the second stage still has forwarded points to read.
    done = rows >= target && ((o.repartition ?? 'auto') === 'never' || (await secondStageCaughtUp()));
    if (t > o.durationSeconds + 300) throw new Error(`bench: only ${rows} of ${target} rows after ${t.toFixed(0)} s`);
  }
  const seconds = elapsed();
  const sent = (await producing) as NonNullable<Awaited<typeof producing>>;
  // Vigil's CPU counts the work the last points still cause after they are stored (rollups, scores,
  // rules, the second stage): it is read once the pipeline has settled (under 5 % of a core over
  // half a second, at most 30 s). Until 2026-11-27 a run's CPU stopped at the last stored point
  // under `never` and after `vigil_in_flight_bytes` fell to 0 otherwise (an open bucket's idle
  // timeout), which made `never` look half the CPU of `auto` on the same keyed input.
  for (let last = pipeline.cpuSeconds(), waited = 0; waited < 30_000; waited += 500) {
    await new Promise((r) => setTimeout(r, 500));
    const now = pipeline.cpuSeconds();
    if (now - last < 0.025) break;
    last = now;
  }
  const cpu = {
    vigil: pipeline.cpuSeconds() - cpu0.vigil,
    kafka: kafkaPid ? cpuSecondsOf(kafkaPid) - cpu0.kafka : null,
    clickhouse: chPid ? cpuSecondsOf(chPid) - cpu0.ch : null,
  };
  const deadLetters = await pipeline.metric('vigil_dead_letters_total');
  const alertLatencyMs = probes ? await probes.finish() : null;
  const quality = labelled ? await readQuality(ch, db, labelled) : null;
  const forecast = forecastWorkload ? await readForecastQuality(ch, db, forecastWorkload) : null;
  let incidents: IncidentQuality | null = null;
  if (labelled && injected.length > 0) {
    // Two more passes of the incidents job over what is stored now.
    const runs = await pipeline.metric('vigil_incidents_runs_total', { result: 'ok' });
    for (let waited = 0; waited < 30_000 && (await pipeline.metric('vigil_incidents_runs_total', { result: 'ok' })) < runs + 2; waited += 250) await new Promise((r) => setTimeout(r, 250));
    incidents = await readIncidentQuality(ch, db, 'synthetic.value', labelled.workload, injected, INCIDENT_BUCKETS, (10 * widthMs) / 1000);
  }
  pipeline.kill('SIGTERM');
  await pipeline.exited;

  let latencyMs: BenchResult['latencyMs'] = null;
  if (live) {
    const samples: number[] = [];
    for (let q = 1; q <= 200; q++) {
      const k = extra + Math.ceil((q / 200) * sent.points);
      const tp = firstTimeAtLeast(produced, k);
      const tv = firstTimeAtLeast(visible, k);
      if (tp !== undefined && tv !== undefined) samples.push(Math.max(0, (tv - tp) * 1000));
    }
    samples.sort((a, b) => a - b);
    latencyMs = { p50: Math.round(percentile(samples, 0.5)), p95: Math.round(percentile(samples, 0.95)), p99: Math.round(percentile(samples, 0.99)), max: Math.round(samples[samples.length - 1] ?? 0) };
  }

  let tenants: TenantFigures | null = null;
  if (shares.size > 0) {
    await sampleTenants(ch, db, seconds, tenantVisible);
    const figures = [...shares].map(([tenant, share]): TenantFigure => {
      const curve = tenantVisible.get(tenant) ?? [[0, 0]];
      const rows = (curve[curve.length - 1] as [number, number])[1];
      let latency: TenantFigure['latencyMs'] = null;
      if (live) {
        const samples: number[] = [];
        const mine = Math.round(share * sent.points);
        for (let q = 1; q <= 50; q++) {
          const k = Math.ceil((q / 50) * mine);
          const tp = firstTimeAtLeast(produced, extra + Math.ceil(k / share));
          const tv = firstTimeAtLeast(curve, k);
          if (tp !== undefined && tv !== undefined) samples.push(Math.max(0, (tv - tp) * 1000));
        }
        samples.sort((a, b) => a - b);
        latency = { p50: Math.round(percentile(samples, 0.5)), p99: Math.round(percentile(samples, 0.99)) };
      }
      return { tenant, share, rows, pointsPerSecond: rows / seconds, latencyMs: latency };
    });
    const noisy = figures.find((f) => f.tenant === 't0') as TenantFigure;
    const others = figures.filter((f) => f !== noisy);
    tenants = {
      count: figures.length,
      noisy,
      others: { pointsPerSecond: spread(others.map((f) => f.pointsPerSecond)), latencyP99Ms: live ? spread(others.map((f) => f.latencyMs?.p99 ?? 0)) : null },
    };
  }

  const probePoints = probes ? await probes.producing : 0;
  const total = sent.points + extra + probePoints;
  const refSeconds = await kcatReference(config, ch, db, topic, o.format !== 'influx', total);
  const engine = await kafkaEngineReference(config, ch, db, topic, o.format, total).then(
    (r) => ({ seconds: r.seconds, pointsPerSecond: total / r.seconds, notes: r.notes }),
    (err: unknown) => {
      o.progress?.(`Kafka engine baseline failed: ${(err as Error).message}`);
      return null;
    },
  );
  // BENCH_KEEP=1 keeps the database and topics for a look afterwards.
  if (!process.env['BENCH_KEEP']) await ch.command({ query: `DROP DATABASE ${db}` });
  if (!process.env['BENCH_KEEP']) await admin.deleteTopics({ topics: [topic, `${topic}_dlq`, `${topic}_alerts`, `${topic}_repartition`] }).catch(() => undefined);
  await clients.close();

  const { progress: _p, outDir: _o, compare: _c, ...options } = o;
  const rowsStored = (visible[visible.length - 1] as [number, number])[1];
  const result: BenchResult = {
    version: 1,
    startedAt: new Date(Date.now() - seconds * 1000).toISOString(),
    options,
    pointsProduced: sent.points + extra + probePoints,
    rowsStored,
    deadLetters,
    seconds,
    pointsPerSecondIn: live ? sent.points / (sent.elapsedMs / 1000) : (sent.points + extra) / seconds,
    rowsPerSecondOut: rowsStored / seconds,
    latencyMs,
    tenants,
    cpuSeconds: cpu,
    vigilRssMaxMiB: Math.round(rssMax / 2 ** 20),
    timeline,
    reference: { name: 'kcat -C | clickhouse-client', seconds: refSeconds, pointsPerSecond: (sent.points + extra + probePoints) / refSeconds },
    ratioToReference: live ? null : rowsStored / seconds / ((sent.points + extra + probePoints) / refSeconds),
    kafkaEngine: engine,
    ratioToKafkaEngine: live || !engine ? null : rowsStored / seconds / engine.pointsPerSecond,
    alertLatencyMs,
    quality,
    forecast,
    incidents,
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
  if (previous.ratioToKafkaEngine && current.ratioToKafkaEngine) check('ratio to Kafka engine (rows/s out)', previous.ratioToKafkaEngine, current.ratioToKafkaEngine, true);
  if (previous.latencyMs && current.latencyMs) check('latency p99 ms', previous.latencyMs.p99, current.latencyMs.p99, false);
  if (previous.alertLatencyMs && current.alertLatencyMs) check('alert latency p99 ms', previous.alertLatencyMs.p99, current.alertLatencyMs.p99, false);
  if (previous.quality && current.quality) check('detection F1', previous.quality.f1, current.quality.f1, true);
  if (previous.forecast && current.forecast) check('forecast MAE / seasonal naive', previous.forecast.relativeMae, current.forecast.relativeMae, false);
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
    `Workload: ${o.series} series, ${o.pointsPerMessage} point(s) per message, ${o.format}, ${o.rate > 0 ? `${o.rate} points/s for ${o.durationSeconds} s` : `${o.points} points pre-filled, drained`}; stages: ${o.stages}; ${o.anomalies > 0 ? `labelled anomaly workload of ${o.anomalies} series first; ` : ''}${o.workers} workers; ${o.partitions} partitions.`,
    '',
    '| figure | value |',
    '|---|---|',
    `| points produced / rows stored | ${fmt(r.pointsProduced)} / ${fmt(r.rowsStored)} |`,
    `| points/s in | ${fmt(r.pointsPerSecondIn)} |`,
    `| rows/s out | ${fmt(r.rowsPerSecondOut)} |`,
    `| reference (${r.reference.name.replace('|', '\\|')}) points/s | ${fmt(r.reference.pointsPerSecond)} |`,
    `| **ratio to reference** (drain runs) | **${r.ratioToReference === null ? '– (live run)' : fmt(r.ratioToReference, 2)}** |`,
    `| ClickHouse Kafka engine + materialized view points/s | ${r.kafkaEngine ? fmt(r.kafkaEngine.pointsPerSecond) : '– (failed)'} |`,
    `| **ratio to Kafka engine** (drain runs) | **${r.ratioToKafkaEngine === null ? '–' : fmt(r.ratioToKafkaEngine, 2)}** |`,
    `| latency produce→ClickHouse p50 / p95 / p99 / max (ms) | ${r.latencyMs ? `${r.latencyMs.p50} / ${r.latencyMs.p95} / ${r.latencyMs.p99} / ${r.latencyMs.max}` : '– (drain run)'} |`,
    `| tenants: the noisy one's share, points/s, latency p50 / p99 (ms); the ${r.tenants ? r.tenants.count - 1 : 0} others' points/s and p99 (ms), least / median / most | ${r.tenants ? `${fmt(100 * r.tenants.noisy.share)} %, ${fmt(r.tenants.noisy.pointsPerSecond)}, ${r.tenants.noisy.latencyMs ? `${r.tenants.noisy.latencyMs.p50} / ${r.tenants.noisy.latencyMs.p99}` : '–'}; ${r.tenants.others.pointsPerSecond.map((v) => fmt(v)).join(' / ')}, ${r.tenants.others.latencyP99Ms ? r.tenants.others.latencyP99Ms.join(' / ') : '– (drain run)'}` : '– (no --tenants)'} |`,
    `| latency produce→alert p50 / p95 / p99 / max (ms), probes | ${r.alertLatencyMs ? `${r.alertLatencyMs.p50} / ${r.alertLatencyMs.p95} / ${r.alertLatencyMs.p99} / ${r.alertLatencyMs.max}, ${r.alertLatencyMs.probes}` : '– (needs a live run with the alerts stage)'} |`,
    `| detection on injected anomalies: precision / recall / F1, false buckets per 1,000, delay (buckets) | ${r.quality ? `${fmt(r.quality.precision, 3)} / ${fmt(r.quality.recall, 3)} / ${fmt(r.quality.f1, 3)}, ${fmt(r.quality.fpPerThousand, 2)}, ${fmt(r.quality.meanDelayBuckets, 1)} (${r.quality.detected}/${r.quality.events} events, ${fmt(r.quality.buckets)} buckets)` : '– (no anomalies injected, or scoring off)'} |`,
    `| forecasts (forecast workload, last day, 4 seasons ahead): MAE / seasonal naive's (naive's), MASE (seasonal naive's), 80 / 95 % intervals hold | ${r.forecast ? `${fmt(r.forecast.relativeMae, 2)} (${fmt(r.forecast.naiveRelativeMae, 2)}), ${fmt(r.forecast.mase, 2)} (${fmt(r.forecast.seasonalNaiveMase, 2)}), ${fmt(100 * r.forecast.covered80, 1)} / ${fmt(100 * r.forecast.covered95, 1)} % (${r.forecast.forecasts} forecasts of ${r.forecast.series} series, ${fmt(r.forecast.buckets)} buckets)` : '– (no anomalies injected, or scoring off)'} |`,
    `| incidents (window ${r.incidents ? fmt(r.incidents.windowSeconds) : '–'} s): injected grouped whole / seen, purity, members flagged, other onsets in an incident of 2+ series | ${r.incidents ? `${r.incidents.right} / ${r.incidents.seen} of ${r.incidents.injected}, ${fmt(100 * r.incidents.purity)} %, ${fmt(100 * r.incidents.flagged)} %, ${fmt(100 * r.incidents.joined)} % of ${r.incidents.others}` : '– (no anomalies injected, or scoring off)'} |`,
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

function rulesFile(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'vigil-bench-rules-')), 'rules.yaml');
  writeFileSync(path, PROBE_RULES);
  return path;
}

/**
 * Probe series for produce→alert latency: every 2 s a new probe series gets points above the
 * probe rule's threshold (one a second for 3 s, then below it); the time from producing its
 * first high point to its firing event on the alerts topic is one sample.
 */
function startProbes(kafka: Kafka, topic: string, alertsTopic: string, durationSeconds: number) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const consumer = kafka.consumer({ groupId: `${alertsTopic}_probe`, maxWaitTimeInMs: 100 });
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let stop = false;
  let points = 0;
  const running = (async () => {
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topics: [alertsTopic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const e = JSON.parse(message.value?.toString() ?? '{}') as { status?: string; rule?: { id?: string }; series?: { tags?: Record<string, string> } };
        const probe = e.series?.tags?.['probe'];
        const at = probe === undefined ? undefined : sentAt.get(probe);
        if (e.status === 'firing' && e.rule?.id === 'bench-probe' && at !== undefined) {
          latencies.push(Date.now() - at);
          sentAt.delete(probe as string);
        }
      },
    });
    const t0 = Date.now();
    const active: { id: string; left: number }[] = [];
    let n = 0;
    for (let tick = 0; !stop && Date.now() - t0 < durationSeconds * 1000; tick++) {
      if (tick % 2 === 0) active.push({ id: String(n++), left: 6 });
      const now = Date.now();
      const messages = active.map((p) => ({
        key: `probe-${p.id}`,
        value: JSON.stringify({ metric_id: PROBE_METRIC, value: p.left > 3 ? 100 : 0, timestamp: new Date(now).toISOString(), tags: { probe: p.id } }),
      }));
      for (const p of active) if (p.left === 6) sentAt.set(p.id, now);
      await producer.send({ topic, acks: -1, messages });
      points += messages.length;
      for (const p of active) p.left--;
      while (active.length && (active[0] as { left: number }).left <= 0) active.shift();
      await new Promise((r) => setTimeout(r, 1000));
    }
    return points;
  })();
  return {
    /** Resolves with the probe points produced, when the probes stop. */
    producing: running,
    async finish(): Promise<NonNullable<BenchResult['alertLatencyMs']>> {
      stop = true;
      await running;
      // Alerts of the last probes may still be on their way: wait for their buckets to close.
      const deadline = Date.now() + 15_000;
      while (sentAt.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      await Promise.allSettled([consumer.disconnect(), producer.disconnect()]);
      const sorted = [...latencies].sort((a, b) => a - b);
      const pick = (p: number) => (sorted.length ? percentile(sorted, p) : Number.NaN);
      return { probes: sorted.length, p50: pick(0.5), p95: pick(0.95), p99: pick(0.99), max: sorted[sorted.length - 1] ?? Number.NaN };
    },
  };
}

/** Detection quality of the injected workload, from the flags Vigil wrote to `anomalies_dedup`. */
async function readQuality(ch: ClickHouseClient, db: string, l: { labels: { series: number; kind: string; startMs: number; endMs: number }[]; widthMs: number; buckets: number }): Promise<BenchResult['quality']> {
  const rs = await ch
    .query({
      query: `SELECT tags.value[indexOf(tags.key, 'series')] AS s, toUInt32(bucket_start) AS b, anomaly FROM ${db}.anomalies_dedup WHERE metric = 'synthetic.value' AND width_s = ${l.widthMs / 1000}`,
      format: 'JSONEachRow',
    })
    .catch(() => null);
  if (!rs) return null;
  const rows = await rs.json<{ s: string; b: number; anomaly: number }>();
  if (rows.length === 0) return null;
  const q = evaluate(
    rows.map((r) => ({ series: r.s, tsMs: Number(r.b) * 1000, flagged: Number(r.anomaly) === 1 })),
    l.labels.map((x) => ({ series: `s${x.series}`, kind: x.kind, startMs: x.startMs, endMs: x.endMs })),
    l.widthMs,
  );
  return { events: q.events, detected: q.detected, falseAlarms: q.falseAlarms, precision: q.precision, recall: q.recall, f1: q.f1, fpPerThousand: q.fpPerThousand, meanDelayBuckets: q.meanDelayBuckets, buckets: rows.length, workloadBuckets: l.buckets };
}
