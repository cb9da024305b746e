import { RollupEncoder } from './encode/rollups.js';
import { RollupState, type ClosedBucketStage } from './rollup.js';
import type { RollupSettings, ShardResult, ShardTask } from './shard-task.js';

/**
 * Per-series state of this thread's shard: the series registry (last seen, for eviction) and the
 * rollup buckets; detector state joins here. Module scope is per thread and a thread serves
 * exactly one shard (pipeline/pool.ts), so nothing here is shared.
 */
interface SeriesState {
  lastSeenMs: number;
}

/** Rough per-series bytes: a Map entry, its bigint key and the state object. */
const BYTES_PER_SERIES = 120;
/** Rough bytes of one bucket (object, map entry, index slots). */
const BYTES_PER_BUCKET = 200;
const series = new Map<bigint, SeriesState>();
let rollups: RollupState | undefined;
let rollupKey = '';
let lastSweepMs = 0;
const stages: ClosedBucketStage[] = [];

/** Registers a consumer of closed buckets (detectors, alert rules) in this thread. */
export function addClosedBucketStage(stage: ClosedBucketStage): void {
  stages.push(stage);
  rollups?.stages.push(stage);
}

function rollupState(settings: RollupSettings): RollupState {
  const key = JSON.stringify(settings);
  if (!rollups || key !== rollupKey) {
    rollups = new RollupState(settings);
    rollups.stages.push(...stages);
    rollupKey = key;
  }
  return rollups;
}

export function track(task: ShardTask): ShardResult {
  const { batch, nowMs } = task;
  for (let i = 0; i < batch.count; i++) {
    const id = batch.seriesIds[i] as bigint;
    const s = series.get(id);
    if (s) s.lastSeenMs = nowMs;
    else series.set(id, { lastSeenMs: nowMs });
  }
  const encoder = new RollupEncoder();
  let closed = 0;
  let late = 0;
  let counterOutOfOrder = 0;
  if (task.rollups) {
    const state = rollupState(task.rollups);
    const out =
      task.kind === 'idle'
        ? state.idle(task.topic, task.partition, task.idleWatermarkMs)
        : state.apply(task.topic, task.partition, batch, task.partitionMaxBeforeMs, task.partitionMaxAfterMs);
    for (const row of out.rows) encoder.add(row);
    ({ closed, late, counterOutOfOrder } = out);
  }
  let evicted = 0;
  // Eviction sweeps at most once a second: state of a series silent for seriesIdleMs goes.
  if (nowMs - lastSweepMs >= 1000) {
    lastSweepMs = nowMs;
    const gone = new Set<bigint>();
    for (const [id, s] of series) if (nowMs - s.lastSeenMs > task.seriesIdleMs) gone.add(id);
    for (const id of gone) series.delete(id);
    if (gone.size > 0) rollups?.forget(gone);
    evicted = gone.size;
  }
  const buckets = rollups?.bucketCount ?? 0;
  return {
    series: series.size,
    stateBytes: series.size * BYTES_PER_SERIES + buckets * BYTES_PER_BUCKET,
    evicted,
    rollupBody: encoder.rows.finish(),
    rollupRows: encoder.count,
    closed,
    late,
    counterOutOfOrder,
    held: task.rollups ? (rollups as RollupState).held(task.topic, task.partition) : null,
  };
}

/** Test hook: forget everything (a fresh thread has nothing). */
export function resetShardState(): void {
  series.clear();
  rollups = undefined;
  rollupKey = '';
  lastSweepMs = 0;
}
