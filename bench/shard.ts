/**
 * `npm run bench:shard` (issue 15): CPU per point of the shard stage in this thread, without
 * Kafka, the pool or ClickHouse: rollups, bucket closes, the anomaly ensemble and the alert rules
 * as one shard thread runs them (workers/shard.ts `track`), the counterpart of `bench:worker` for
 * the ingest stage. The harness's drain workload as one of its two shards sees it: 500 of the
 * generator's series, a point every 10 s each (`vigil bench --preset batched`), in tasks of
 * 10,000 points; stages added one at a time. `node --cpu-prof dist/bench/shard.js --stages all`
 * gives the profile of exactly this work.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config/index.js';
import { modelSettings } from '../pipeline/shards.js';
import { prepareModels, resetShardState, track } from '../workers/shard.js';
import { ShardCollector, type ShardTask } from '../workers/shard-task.js';
import { MetricType } from '../workers/decode/types.js';
import { seriesId, sortTags } from '../workers/series.js';
import { makeSeries, nextValue, rng } from './generator.js';

const { values } = parseArgs({ options: { points: { type: 'string' }, stages: { type: 'string' }, runs: { type: 'string' }, 'state-interval': { type: 'string' } } });
const points = Number(values.points ?? 400_000);
const runs = Number(values.runs ?? 3);
const SERIES = 500;
const STEP_MS = 10_000;
const TASK_POINTS = 10_000;
const config = loadConfig({ env: {} });
// --state-interval S: models.stateIntervalSeconds (default the configuration's; 0 writes state after every task).
const stateIntervalMs = Number(values['state-interval'] ?? config.models.stateIntervalSeconds) * 1000;
const rollups = { widthsMs: config.rollups.widthsSeconds.map((s) => s * 1000), latenessMs: config.rollups.allowedLatenessMs, retentionMs: config.rollups.lateRetentionMs };
const rulesFile = new URL('../../rules/example.yaml', import.meta.url).pathname;
const rulesText = readFileSync(rulesFile, 'utf8');

type Stages = 'rollups' | 'scoring' | 'all';

/** The tasks of the workload: the generator's series and values, in time order. */
function tasks(): { batch: ShardTask['batch']; maxBefore: number; maxAfter: number }[] {
  const series = makeSeries(SERIES * 2).filter((_, i) => i % 2 === 0);
  const ids = series.map((s) => seriesId(s.metric, sortTags(Object.entries(s.tags).flat())));
  const tags = series.map((s) => sortTags(Object.entries(s.tags).flat()));
  const rand = rng(1);
  const counters = new Float64Array(SERIES);
  const t0 = Math.floor((Date.now() - (points / SERIES) * STEP_MS) / 60_000) * 60_000;
  const out: { batch: ShardTask['batch']; maxBefore: number; maxAfter: number }[] = [];
  let c = new ShardCollector();
  let maxTs = -Infinity;
  let maxBefore = -Infinity;
  for (let k = 0; k < points; k++) {
    const i = k % SERIES;
    const step = Math.floor(k / SERIES);
    const s = series[i] as (typeof series)[number];
    const v = nextValue(s, i, step, rand, counters[i] as number);
    counters[i] = v;
    const ts = t0 + step * STEP_MS;
    c.add(ids[i] as bigint, s.metric, tags[i] as string[], ts, v, s.type === 'counter' ? MetricType.counter : MetricType.gauge, k, 0, maxTs);
    if (ts > maxTs) maxTs = ts;
    if ((k + 1) % TASK_POINTS === 0 || k === points - 1) {
      out.push({ batch: c.finish(), maxBefore, maxAfter: maxTs });
      maxBefore = maxTs;
      c = new ShardCollector();
    }
  }
  return out;
}

async function run(stages: Stages, work: ReturnType<typeof tasks>): Promise<{ cpuUs: number; wallMs: number; closed: number; scored: number }> {
  resetShardState();
  const models = stages === 'rollups' ? null : modelSettings(config);
  if (models) await prepareModels(models);
  const alerts = stages === 'all' ? { hash: 'bench', text: rulesText, file: rulesFile, active: [] } : null;
  let closed = 0;
  let scored = 0;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  work.forEach((w, n) => {
    const task: ShardTask = {
      kind: 'data',
      topic: 'bench',
      partition: 0,
      partitionMaxBeforeMs: w.maxBefore,
      partitionMaxAfterMs: w.maxAfter,
      idleWatermarkMs: -Infinity,
      batch: w.batch,
      nowMs: Date.now(),
      seriesIdleMs: 3_600_000,
      stateIntervalMs,
      maxSeries: Infinity, maxTenantSeries: Infinity,
      rollups,
      models,
      alerts: alerts && n > 0 ? { ...alerts, text: null, active: null } : alerts,
      alertWidthMs: config.models.widthSeconds * 1000,
    };
    const r = track(task);
    closed += r.closed;
    scored += r.scored;
  });
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: cpu.user + cpu.system, wallMs: performance.now() - wall0, closed, scored };
}

const all: Stages[] = values.stages ? [values.stages as Stages] : ['rollups', 'scoring', 'all'];
const work = tasks();
console.log(`${points} points, ${SERIES} series, a point every ${STEP_MS / 1000} s, widths ${config.rollups.widthsSeconds.join(', ')} s, scoring at ${config.models.widthSeconds} s\n`);
console.log('| stages | CPU µs per point (median) | buckets closed | scored |\n|---|---|---|---|');
for (const stages of all) {
  const results: Awaited<ReturnType<typeof run>>[] = [];
  for (let r = 0; r < runs; r++) results.push(await run(stages, work));
  results.sort((a, b) => a.cpuUs - b.cpuUs);
  const mid = results[Math.floor(results.length / 2)] as Awaited<ReturnType<typeof run>>;
  console.log(`| ${stages} | ${(mid.cpuUs / points).toFixed(2)} | ${mid.closed} | ${mid.scored} |`);
}
