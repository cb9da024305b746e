import { afterAll, describe, expect, it } from 'vitest';
import { ShardedPool } from '../../../pipeline/pool.js';
import { ShardCollector, type ShardTask } from '../../../workers/shard-task.js';

// Runs the compiled worker module (npm test builds first).
describe('ShardedPool', () => {
  const pool = new ShardedPool(1, 10_000);
  afterAll(() => pool.destroy());

  it('runs a shard\'s tasks in submission order under load (regression: piscina reordered a partition\'s shares)', async () => {
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    const results: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      const c = new ShardCollector();
      // Uneven sizes so some tasks take longer than others.
      const n = i % 7 === 0 ? 2000 : 5;
      for (let k = 0; k < n; k++) c.add(BigInt(k % 50), 'm', [], 1_700_000_000_000 + i * 1000 + k, k, 0, i * 10_000 + k, 0, -Infinity);
      const task: ShardTask = { kind: 'data', topic: 'order', partition: 0, partitionMaxBeforeMs: -Infinity, partitionMaxAfterMs: 1_700_000_000_000 + i * 1000, idleWatermarkMs: -Infinity, batch: c.finish(), nowMs: Date.now(), seriesIdleMs: 3_600_000, stateIntervalMs: 0, maxSeries: Infinity, maxTenantSeries: Infinity, rollups, models: null, alerts: null, alertWidthMs: 0 };
      // The worker's rollup state throws when a share arrives behind one already applied.
      results.push(pool.runShard(0, task, []));
    }
    const settled = await Promise.allSettled(results);
    expect(settled.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
  });
});

describe('ShardedPool with a heap cap (worker resourceLimits)', () => {
  it('a thread past its heap cap fails its task with ERR_WORKER_OUT_OF_MEMORY; this process goes on, and the pool runs the next task', async () => {
    const pool = new ShardedPool(1, 100, 32);
    try {
      const task = (series: number, offset: number): ShardTask => {
        const c = new ShardCollector();
        for (let k = 0; k < series; k++) c.add(BigInt(offset + k), `m${offset + k}`, ['tag', `v${k}`], 1_700_000_000_000, k, 0, offset + k, 0, -Infinity);
        return { kind: 'data', topic: 'oom', partition: 0, partitionMaxBeforeMs: -Infinity, partitionMaxAfterMs: 1_700_000_000_000, idleWatermarkMs: -Infinity, batch: c.finish(), nowMs: Date.now(), seriesIdleMs: 3_600_000, stateIntervalMs: 0, maxSeries: Infinity, maxTenantSeries: Infinity, rollups: { widthsMs: [10_000, 60_000], latenessMs: 0, retentionMs: 0 }, models: null, alerts: null, alertWidthMs: 0 };
      };
      // Many tasks of new series: their state outgrows 32 MiB.
      let failure: unknown;
      for (let i = 0; i < 40 && !failure; i++) await pool.runShard(0, task(50_000, i * 50_000), []).catch((err: unknown) => (failure = err));
      expect((failure as { code?: string } | undefined)?.code).toBe('ERR_WORKER_OUT_OF_MEMORY');
      const after = await pool.runShard(0, task(10, 10_000_000), []);
      expect(after.series).toBe(10);
    } finally {
      await pool.destroy();
    }
  }, 120_000);
});
