import { gzipSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { decodeMessage, type DecodeContext, type DecodeErrorCode, type MetricTypeCode } from './decode/index.js';
import { PointsEncoder } from './encode/points.js';
import { hashCanonical, canonicalSeries, sortTags } from './series.js';
import { SKIPPED, type IngestReject, type IngestResult, type IngestTask } from './ingest-task.js';
import { batchBuffers, ShardCollector } from './shard-task.js';

export { SKIPPED } from './ingest-task.js';
export type { IngestReject, IngestResult, IngestTask } from './ingest-task.js';


// Series ids (and their shard) are cached by canonical text: most points belong to series seen before.
const SERIES_CACHE_MAX = 100_000;
const seriesCache = new Map<string, { id: bigint; shard: number; shards: number }>();

function seriesOf(metric: string, tags: string[], shards: number): { id: bigint; shard: number; shards: number } {
  const canonical = canonicalSeries(metric, tags);
  let entry = seriesCache.get(canonical);
  if (entry === undefined || entry.shards !== shards) {
    const id = hashCanonical(canonical);
    entry = { id, shard: Number(id % BigInt(shards)), shards };
    if (seriesCache.size >= SERIES_CACHE_MAX) seriesCache.clear();
    seriesCache.set(canonical, entry);
  }
  return entry;
}

export function ingest(task: IngestTask): IngestResult {
  const started = performance.now();
  const encoder = new PointsEncoder(Math.max(1 << 16, task.data.length * 2));
  const rejects: IngestReject[] = [];
  const n = task.offsets.length;
  let message = 0;
  const ctx: DecodeContext = { kafkaTimestampMs: 0, nowMs: task.nowMs, maxFutureMs: task.maxFutureMs };
  const collectors = Array.from({ length: task.shards }, () => new ShardCollector());
  // Event-time maximum of the task's messages before the current one (watermarks are judged per
  // message, so the split of points across shards and tasks cannot change a point's fate).
  let runMax = -Infinity;
  let maxBeforeMessage = -Infinity;
  const points = {
    point(metric: string, tags: string[], value: number, tsMs: number, type: MetricTypeCode, pointIndex: number) {
      // In place: a line-protocol line shares one tags array across its fields, and sorting
      // an already sorted array is a no-op, so later fields of the line see the same order.
      sortTags(tags);
      const series = seriesOf(metric, tags, task.shards);
      const offset = task.offsets[message] as number;
      if (offset >= task.storeFromOffset) encoder.add(series.id, metric, tags, type, tsMs, value, task.topic, task.partition, offset, pointIndex);
      if (tsMs > runMax) runMax = tsMs;
      (collectors[series.shard] as ShardCollector).add(series.id, metric, tags, tsMs, value, type, offset, pointIndex, maxBeforeMessage);
    },
  };
  const rejectSink = {
    reject(code: DecodeErrorCode, reason: string, detail: { bytes?: Uint8Array; line?: number; element?: number }) {
      if ((task.offsets[message] as number) >= task.storeFromOffset) rejects.push({ message, code, reason, ...detail });
    },
  };
  for (; message < n; message++) {
    maxBeforeMessage = runMax;
    if (task.bounds[2 * message] === SKIPPED) continue;
    ctx.kafkaTimestampMs = task.timestamps[message] as number;
    decodeMessage(task.data, task.bounds[2 * message] as number, task.bounds[2 * message + 1] as number, task.format, ctx, points, rejectSink);
  }
  let body = encoder.rows.finish();
  if (task.compression === 'gzip' && body.length > 0) {
    const z = gzipSync(body, { level: 1 });
    body = new Uint8Array(z.buffer, z.byteOffset, z.byteLength).slice();
  }
  return { body, rows: encoder.count, rejects, shardBatches: collectors.map((c) => c.finish()), maxTsMs: runMax, workerMs: performance.now() - started };
}

/** piscina entry: the result is posted back with its body transferred, not copied. */
export default function run(task: IngestTask): IngestResult {
  const result = ingest(task);
  const movable = {
    get [Piscina.transferableSymbol]() {
      return [result.body.buffer, ...result.shardBatches.flatMap(batchBuffers)];
    },
    get [Piscina.valueSymbol]() {
      return result;
    },
  };
  return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]) as unknown as IngestResult;
}
