/**
 * What durable detector state costs (README: Anomaly detection), in one shard thread: CPU per
 * scored bucket of the shard stage as the pipeline runs it (rollups, ensemble, anomalies and
 * detector_state rows), the part of it spent writing snapshots (workers/snapshot.ts, timed alone
 * on the same number of warmed-up states, beside node:v8's serialize that wrote them before), and
 * the bytes of `detector_state` rows per scored bucket.
 * Run: `npm run bench:snapshot [-- --series N --buckets N]`.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_ENSEMBLE } from '../models/ensemble.js';
import { mulberry32 } from '../models/random.js';
import { prepareModels, resetShardState, track } from '../workers/shard.js';
import { ShardCollector, type ShardResult, type ShardTask } from '../workers/shard-task.js';

const { values } = parseArgs({ options: { series: { type: 'string' }, buckets: { type: 'string' } } });
const seriesCount = Number(values.series ?? 2000);
const buckets = Number(values.buckets ?? 200);
const widthMs = 60_000;
const models = { widthMs, ensemble: DEFAULT_ENSEMBLE, lstmModelDir: '', minScore: 0 };
const rollups = { widthsMs: [widthMs], latenessMs: 0, retentionMs: 0 };

async function run(): Promise<{ ms: number; stateBytes: number; stateRows: number; scored: number }> {
  resetShardState();
  await prepareModels(models);
  const rand = mulberry32(1);
  let maxTs = -Infinity;
  let stateBytes = 0;
  let stateRows = 0;
  let scored = 0;
  let ms = 0;
  for (let b = 0; b < buckets; b++) {
    const c = new ShardCollector();
    const ts = b * widthMs;
    for (let i = 0; i < seriesCount; i++) c.add(BigInt(i) * 2654435761n, 'system.cpu.usage_total', ['host', `host-${i}`], ts, 50 + 10 * Math.sin(b / 10 + i) + rand() * 5, 0, b * seriesCount + i, 0, maxTs);
    const before = maxTs;
    maxTs = ts;
    const task: ShardTask = { kind: 'data', topic: 'bench', partition: 0, partitionMaxBeforeMs: before, partitionMaxAfterMs: maxTs, idleWatermarkMs: -Infinity, batch: c.finish(), nowMs: 0, seriesIdleMs: 3_600_000, stateIntervalMs: 0, maxSeries: Infinity, maxTenantSeries: Infinity, rollups, models, alerts: null, alertWidthMs: 0 };
    const t0 = process.cpuUsage();
    const r: ShardResult = track(task);
    const t = process.cpuUsage(t0);
    ms += (t.user + t.system) / 1000;
    stateBytes += r.stateBody.length;
    stateRows += r.stateRows;
    scored += r.scored;
  }
  return { ms, stateBytes, stateRows, scored };
}

const withState = await run();
const { serialize } = await import('node:v8');
const { writeSnapshot } = await import('../workers/snapshot.js');
const { Ensemble } = await import('../models/ensemble.js');
const ensemble = new Ensemble(DEFAULT_ENSEMBLE, null, 1);
const sample = ensemble.init();
for (let i = 0; i < 200; i++) ensemble.step(sample, { tsMs: i * widthMs, widthMs, value: 50 + Math.sin(i), count: 1, min: 50, max: 50, std: 0 });
const snapshot = { lastBucketMs: 0, buckets: 200, models: sample, rules: null };
const n = withState.scored;
/** CPU ms to write `n` snapshots of the warmed-up state with `write`. */
function timed(write: (v: typeof snapshot) => Uint8Array): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) write(snapshot);
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / 1000;
}
// In turn, three times each: what the shard stage writes (V8's native form) and node:v8's serialize (before).
const runs = { native: [] as number[], nodeV8: [] as number[] };
for (let r = 0; r < 3; r++) {
  runs.native.push(timed(writeSnapshot));
  runs.nodeV8.push(timed(serialize));
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1] as number;
const [nativeMs, nodeMs] = [med(runs.native), med(runs.nodeV8)];
const round = (x: number) => Math.round(x * 100) / 100;
console.log(
  JSON.stringify({
    series: seriesCount,
    buckets,
    scoredBuckets: withState.scored,
    cpuMicrosPerScoredBucket: round((withState.ms * 1000) / withState.scored),
    snapshotMicrosPerState: round((nativeMs * 1000) / n),
    nodeV8SerializeMicrosPerState: round((nodeMs * 1000) / n),
    snapshotShareOfShardCpu: Math.round((nativeMs / withState.ms) * 1000) / 1000,
    stateRowBytes: Math.round(withState.stateBytes / withState.stateRows),
    stateBytesPerScoredBucket: Math.round(withState.stateBytes / withState.scored),
  }),
);
