/**
 * The piscina worker module: every thread of every shard pool loads it. Tasks are selected by
 * name (`pool.run(task, { name })`): `ingest` runs on any thread, `track` on the thread that
 * owns the shard.
 */
import { Piscina } from 'piscina';
import { prepareModels, track as trackShard } from './shard.js';
import type { ShardResult, ShardTask } from './shard-task.js';

export { default as ingest } from './ingest.js';

/** The shard stage; its insert bodies are transferred back, not copied. */
export async function track(task: ShardTask): Promise<ShardResult> {
  if (task.models) await prepareModels(task.models);
  const result = trackShard(task);
  const movable = {
    get [Piscina.transferableSymbol]() {
      return [result.rollupBody.buffer, result.anomalyBody.buffer, result.stateBody.buffer];
    },
    get [Piscina.valueSymbol]() {
      return result;
    },
  };
  return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]) as unknown as ShardResult;
}
