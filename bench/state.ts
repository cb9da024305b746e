/**
 * Bytes of per-series state in one shard thread (issue 5's report): the series registry plus
 * rollup buckets for the default widths, measured as growth of V8's heap and of the array buffers
 * outside it (typed-array capacity, slack included) after GC for N series that
 * each have open and retained buckets: R points per series 30 s apart (default 3). `--models`: with
 * the anomaly ensemble on as configured; a series' detector state grows with the buckets it has
 * seen, so measure it with many rounds (`--series 2000 --rounds 600`: 300 scored minutes). Run:
 * `node --expose-gc dist/bench/state.js [--series N] [--rounds R] [--models]`.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config/index.js';
import { modelSettings } from '../pipeline/shards.js';
import { prepareModels, resetShardState, track } from '../workers/shard.js';
import { ShardCollector, type ShardTask } from '../workers/shard-task.js';

const { values } = parseArgs({ options: { series: { type: 'string' }, rounds: { type: 'string' }, models: { type: 'boolean' } } });
const seriesCount = Number(values.series ?? 200_000);
const rounds = Number(values.rounds ?? 3);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const config = loadConfig({ env: {} });
const models = values.models ? modelSettings(config) : null;
const rollups = { widthsMs: config.rollups.widthsSeconds.map((s) => s * 1000), latenessMs: config.rollups.allowedLatenessMs, retentionMs: config.rollups.lateRetentionMs };

/** V8's heap and the typed arrays outside it (rollup buckets live in those). */
function heap(): { heap: number; arrays: number } {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, arrays: m.arrayBuffers };
}

resetShardState();
// After the reset, which forgets the ensemble too.
if (models) await prepareModels(models);
const before = heap();
const t0 = 1_700_000_000_000;
let offset = 0;
let maxTs = -Infinity;
// Points per series 30 s apart: each series ends with open and closed-but-retained buckets.
for (let round = 0; round < rounds; round++) {
  for (let start = 0; start < seriesCount; start += 10_000) {
    const c = new ShardCollector();
    for (let i = start; i < Math.min(seriesCount, start + 10_000); i++) {
      const ts = t0 + round * 30_000 + (i % 1000);
      c.add(BigInt(i) * 2654435761n, 'system.cpu.usage_total', ['host', `host-${i}`, 'region', 'eu-west-1'], ts, i % 100, 0, offset++, 0, maxTs);
      if (ts > maxTs) maxTs = ts;
    }
    const task: ShardTask = { kind: 'data', topic: 'state', partition: 0, partitionMaxBeforeMs: maxTs, partitionMaxAfterMs: maxTs, idleWatermarkMs: -Infinity, batch: c.finish(), nowMs: Date.now(), seriesIdleMs: 3_600_000, stateIntervalMs: config.models.stateIntervalSeconds * 1000, maxSeries: Infinity, maxTenantSeries: Infinity, rollups, models, alerts: null, alertWidthMs: 0 };
    track(task);
  }
}
const after = heap();
const heapBytes = after.heap - before.heap;
const arrayBytes = after.arrays - before.arrays;
const bytes = heapBytes + arrayBytes;
const perSeries = bytes / seriesCount;
console.log(
  JSON.stringify({
    series: seriesCount,
    rounds,
    models: models !== null,
    widthsSeconds: config.rollups.widthsSeconds,
    bytes,
    heapBytes,
    arrayBytes,
    bytesPerSeries: Math.round(perSeries),
    seriesPerGiB: Math.floor(2 ** 30 / perSeries),
  }),
);
