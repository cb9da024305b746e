import type { ShardResult, ShardTask } from './shard-task.js';

/**
 * Per-series state of this thread's shard. Today it is the series registry (last seen, point
 * count); rollup buckets and detector state join it here. Module scope is per thread, and a
 * thread serves exactly one shard (pipeline/pool.ts), so nothing here is shared.
 */
interface SeriesState {
  lastSeenMs: number;
  lastTsMs: number;
  points: number;
}

/** Rough per-series bytes: a Map entry, its bigint key and the state object. */
const BYTES_PER_SERIES = 120;
const series = new Map<bigint, SeriesState>();
let lastSweepMs = 0;

export function track(task: ShardTask): ShardResult {
  const { batch, nowMs } = task;
  for (let i = 0; i < batch.count; i++) {
    const id = batch.seriesIds[i] as bigint;
    const ts = batch.tsMs[i] as number;
    const s = series.get(id);
    if (s) {
      s.lastSeenMs = nowMs;
      if (ts > s.lastTsMs) s.lastTsMs = ts;
      s.points++;
    } else {
      series.set(id, { lastSeenMs: nowMs, lastTsMs: ts, points: 1 });
    }
  }
  let evicted = 0;
  // Eviction sweeps at most once a second: state of a series silent for seriesIdleMs goes.
  if (nowMs - lastSweepMs >= 1000) {
    lastSweepMs = nowMs;
    for (const [id, s] of series) {
      if (nowMs - s.lastSeenMs > task.seriesIdleMs) {
        series.delete(id);
        evicted++;
      }
    }
  }
  return { series: series.size, stateBytes: series.size * BYTES_PER_SERIES, evicted };
}

/** Test hook: forget every series (a fresh thread has none). */
export function resetShardState(): void {
  series.clear();
  lastSweepMs = 0;
}
