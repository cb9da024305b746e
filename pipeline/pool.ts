import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { IngestResult, IngestTask } from '../workers/ingest-task.js';
import type { ShardResult, ShardTask } from '../workers/shard-task.js';

/**
 * Compiled code runs the worker module beside it; under vitest (TypeScript sources) the compiled
 * copy in dist/ is used, since worker threads load JavaScript.
 */
export function workerFile(name: string): string {
  const beside = fileURLToPath(new URL(`../workers/${name}.js`, import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL(`../dist/workers/${name}.js`, import.meta.url));
}

/**
 * One single-thread piscina pool per shard (DESIGN.md §1: a series' state lives in exactly one
 * thread). Shard tasks go to their shard's pool, so its state stays in that thread; ingest tasks,
 * which hold no state, go to the pool with the fewest tasks in flight. One pool per shard rather
 * than a custom piscina loadBalancer: a balancer sees only task metadata, not the shard, and a
 * dedicated pool keeps the thread-to-shard mapping explicit.
 */
export class ShardedPool {
  private readonly pools: Piscina[];
  private readonly inFlight: number[];
  /** Per shard, the previous shard task: the next one is submitted only after it settles. */
  private readonly shardChains: Promise<unknown>[];

  /**
   * `maxHeapMb` caps each thread's V8 old generation (worker resourceLimits): a runaway thread
   * fails its task with ERR_WORKER_OUT_OF_MEMORY (the pipeline exits and restarts from its
   * commits) instead of taking the machine's memory; 0 leaves V8's default.
   */
  constructor(shards: number, maxQueue: number, maxHeapMb = 0) {
    this.pools = Array.from(
      { length: shards },
      (_, shard) =>
        new Piscina({
          filename: workerFile('worker'),
          minThreads: 1,
          maxThreads: 1,
          // The consumer bounds work in flight (tasks and bytes); this finite queue is a second
          // guard so that a bug can never queue without limit.
          maxQueue,
          idleTimeout: Infinity,
          workerData: { shard },
          ...(maxHeapMb > 0 ? { resourceLimits: { maxOldGenerationSizeMb: maxHeapMb } } : {}),
        }),
    );
    this.inFlight = this.pools.map(() => 0);
    this.shardChains = this.pools.map(() => Promise.resolve());
  }

  get shards(): number {
    return this.pools.length;
  }

  private run<T>(i: number, task: unknown, name: string, transferList: ArrayBuffer[]): Promise<T> {
    this.inFlight[i] = (this.inFlight[i] as number) + 1;
    return (this.pools[i] as Piscina).run(task, { name, transferList }).finally(() => {
      this.inFlight[i] = (this.inFlight[i] as number) - 1;
    }) as Promise<T>;
  }

  runIngest(task: IngestTask, transferList: ArrayBuffer[]): Promise<IngestResult> {
    let best = 0;
    for (let i = 1; i < this.inFlight.length; i++) if ((this.inFlight[i] as number) < (this.inFlight[best] as number)) best = i;
    return this.run(best, task, 'ingest', transferList);
  }

  /**
   * Shard tasks must run in submission order (a partition's shares in offset order). A pool's
   * single thread does not guarantee that on its own: piscina may hold a task in a side queue
   * while the thread is busy and run a later one first, so each shard's tasks are chained.
   */
  runShard(shard: number, task: ShardTask, transferList: ArrayBuffer[]): Promise<ShardResult> {
    const next = (this.shardChains[shard] as Promise<unknown>).then(
      () => this.run<ShardResult>(shard, task, 'track', transferList),
      () => this.run<ShardResult>(shard, task, 'track', transferList),
    );
    this.shardChains[shard] = next.catch(() => undefined);
    return next;
  }

  /** Mean busy share of the threads since start (piscina utilization). */
  get utilization(): number {
    return this.pools.reduce((a, p) => a + p.utilization, 0) / this.pools.length;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.destroy()));
  }
}
