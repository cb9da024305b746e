/**
 * The contract of the shard stage (workers/shard.ts). A series belongs to exactly one shard
 * (its series id mod the shard count) and each shard's state lives in one pinned thread. The
 * ingest task splits its points by shard; the main thread hands each share, in offset order
 * per partition, to the shard's thread.
 */
export interface ShardBatch {
  count: number;
  seriesIds: BigUint64Array;
  tsMs: Float64Array;
  values: Float64Array;
  types: Uint8Array;
  /**
   * Highest event time of the whole task (every shard's points, in message order) up to and
   * including this point: with the partition's maximum before the task, it gives the partition
   * watermark at this point independently of how points were split across shards.
   */
  runMaxMs: Float64Array;
}

export interface ShardTask {
  topic: string;
  partition: number;
  /** Highest event time of the partition before this task (-Infinity when none). */
  partitionMaxBeforeMs: number;
  batch: ShardBatch;
  nowMs: number;
  seriesIdleMs: number;
}

export interface ShardResult {
  /** Series this shard holds state for, after eviction. */
  series: number;
  /** Approximate bytes of that state. */
  stateBytes: number;
  evicted: number;
}

/** Growable per-shard columns filled by the ingest task. */
export class ShardCollector {
  count = 0;
  seriesIds = new BigUint64Array(256);
  tsMs = new Float64Array(256);
  values = new Float64Array(256);
  types = new Uint8Array(256);
  runMaxMs = new Float64Array(256);

  add(id: bigint, tsMs: number, value: number, type: number, runMaxMs: number): void {
    if (this.count === this.tsMs.length) this.grow();
    const i = this.count++;
    this.seriesIds[i] = id;
    this.tsMs[i] = tsMs;
    this.values[i] = value;
    this.types[i] = type;
    this.runMaxMs[i] = runMaxMs;
  }

  private grow(): void {
    const n = this.tsMs.length * 2;
    const grow = <T extends BigUint64Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a as never);
      return b;
    };
    this.seriesIds = grow(this.seriesIds, (k) => new BigUint64Array(k));
    this.tsMs = grow(this.tsMs, (k) => new Float64Array(k));
    this.values = grow(this.values, (k) => new Float64Array(k));
    this.types = grow(this.types, (k) => new Uint8Array(k));
    this.runMaxMs = grow(this.runMaxMs, (k) => new Float64Array(k));
  }

  /** Exact-length copies, ready to transfer. */
  finish(): ShardBatch {
    const n = this.count;
    return {
      count: n,
      seriesIds: this.seriesIds.slice(0, n),
      tsMs: this.tsMs.slice(0, n),
      values: this.values.slice(0, n),
      types: this.types.slice(0, n),
      runMaxMs: this.runMaxMs.slice(0, n),
    };
  }
}

export function batchBuffers(b: ShardBatch): ArrayBuffer[] {
  return [b.seriesIds.buffer, b.tsMs.buffer, b.values.buffer, b.types.buffer, b.runMaxMs.buffer] as ArrayBuffer[];
}
