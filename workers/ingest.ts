import { gzipSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { decodeMessage, stableTags, type DecodeContext, type DecodeErrorCode, type Format, type MetricTypeCode } from './decode/index.js';
import { readForwarded, type ForwardedPoint } from './decode/repartition.js';
import { PointsEncoder } from './encode/points.js';
import { encodeSeries } from './encode/rowbinary.js';
import { hashCanonical, canonicalSeries, sortTags } from './series.js';
import { FORWARD_CHUNK_BYTES, SKIPPED, type ForwardBatch, type IngestResult, type IngestTask, type TaskTenancy } from './ingest-task.js';
import { RejectCollector } from './rejects.js';
import { TENANT_NAME, TENANT_NAME_EXPECTED } from '../core/tenant.js';
import { batchBuffers, ShardCollector } from './shard-task.js';

export { SKIPPED } from './ingest-task.js';
export type { ForwardBatch, ForwardedTask, IngestReject, IngestResult, IngestTask, TaskTenancy } from './ingest-task.js';

/**
 * The repartition partition of a series: its id's high 32 bits modulo the partition count. Not
 * the low bits, which pick its shard (id mod shards): with both from the same bits, a partition
 * whose count shares a factor with the shards' would feed only some of them.
 */
export function repartitionOf(seriesId: bigint, partitions: number): number {
  return Number((seriesId >> 32n) % BigInt(partitions));
}


/**
 * Series ids (and their shard) cached by the series as it arrives: its metric and its tags in
 * the order the producer wrote them, joined. A known series then costs the join and a lookup
 * instead of sorting its tags, building its canonical text and hashing it (35 % of a worker's
 * time on line protocol at 100 points per message, measured). The join is not an encoding (a tag
 * holding U+0000 could make two series meet in one key), so a hit is checked against the metric
 * and tags it was made from; a mismatch takes the slow path, which is always right.
 */
const SERIES_CACHE_MAX = 100_000;
interface SeriesEntry {
  id: bigint;
  shard: number;
  shards: number;
  /** Its repartition partition (-1: not yet asked). */
  repartition: number;
  metric: string;
  /** '' for the default tenant. */
  tenant: string;
  /** The tags as they arrived (the key's), and sorted by key (what rows carry). */
  arrived: readonly string[];
  tags: string[];
  /** Its series columns in RowBinary (encodeSeries): what its rows start with. */
  encoded: Uint8Array;
}

/** One tenant's series (tenants never share a cache: the same metric and tags are two series). */
interface SeriesCache {
  byKey: Map<string, SeriesEntry>;
  /**
   * The same cache by the tags array itself, then the metric, for arrays a decoder hands out again
   * unchanged (`stableTags`, influx.ts's series sections): found without joining a key. Weak: the
   * arrays go with the decoder's cache.
   */
  byTags: WeakMap<readonly string[], Map<string, SeriesEntry>>;
}
const newCache = (): SeriesCache => ({ byKey: new Map(), byTags: new WeakMap() });
const defaultTenant = newCache();
/** Named tenants' caches; forgotten together past this many tenants (a flood of tenant names costs memory once). */
const TENANT_CACHES_MAX = 10_000;
const tenantCaches = new Map<string, SeriesCache>();

function cacheOf(tenant: string): SeriesCache {
  if (tenant === '') return defaultTenant;
  let c = tenantCaches.get(tenant);
  if (c === undefined) {
    if (tenantCaches.size >= TENANT_CACHES_MAX) tenantCaches.clear();
    tenantCaches.set(tenant, (c = newCache()));
  }
  return c;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The series of a point: its id, shard and sorted tags. `tags` is left as it is. */
export function seriesOf(metric: string, tags: readonly string[], shards: number, tenant = ''): SeriesEntry {
  const cache = cacheOf(tenant);
  let metrics = cache.byTags.get(tags);
  const known = metrics?.get(metric);
  if (known !== undefined && known.shards === shards) return known;
  const entry = seriesByKey(cache, metric, tags, shards, tenant);
  if (!stableTags.has(tags)) return entry;
  if (!metrics) cache.byTags.set(tags, (metrics = new Map()));
  metrics.set(metric, entry);
  return entry;
}

function seriesByKey(cache: SeriesCache, metric: string, tags: readonly string[], shards: number, tenant: string): SeriesEntry {
  const key = tags.length === 0 ? metric : `${metric}\u0000${tags.join('\u0000')}`;
  let entry = cache.byKey.get(key);
  if (entry !== undefined && entry.shards === shards && entry.metric === metric && sameStrings(entry.arrived, tags)) return entry;
  const sorted = sortTags(tags.slice());
  const id = hashCanonical(canonicalSeries(metric, sorted, tenant));
  entry = { id, shard: Number(id % BigInt(shards)), shards, repartition: -1, metric, tenant, arrived: tags.slice(), tags: sorted, encoded: encodeSeries(id, metric, sorted, tenant) };
  if (cache.byKey.size >= SERIES_CACHE_MAX) cache.byKey.clear();
  cache.byKey.set(key, entry);
  return entry;
}


/** A point's tenant tag taken out of its tags: the tenant, and the tags without it. */
interface TenantTag {
  tenant: string;
  rest: string[];
}
/** For arrays a decoder hands out again (`stableTags`): taken out once. */
const tenantTags = new WeakMap<readonly string[], TenantTag | null>();

function tenantTagOf(tag: string, arrived: readonly string[]): TenantTag | null {
  const stable = stableTags.has(arrived);
  if (stable) {
    const known = tenantTags.get(arrived);
    if (known !== undefined) return known;
  }
  let found: TenantTag | null = null;
  for (let i = 0; i < arrived.length; i += 2) {
    if (arrived[i] !== tag) continue;
    const rest = arrived.slice(0, i).concat(arrived.slice(i + 2));
    found = { tenant: arrived[i + 1] as string, rest };
    // The rest is never changed either: the series cache may key by it.
    if (stable) stableTags.add(rest);
    break;
  }
  if (stable) tenantTags.set(arrived, found);
  return found;
}

/**
 * Decodes a task's messages. A message whose decoding throws (a decoder bug, or input past a limit
 * of the runtime such as JSON nesting deeper than the stack) is poison: the pass goes on to find
 * every such message, then the task is decoded again without them, each set aside whole with
 * VIGIL_ERR_DECODE_INTERNAL, so a bad message never fails the task and leaves nothing half-stored.
 * Decoding is deterministic, so the second pass normally finds nothing new; it repeats if it does.
 */
export function ingest(task: IngestTask): IngestResult {
  const format = task.format;
  if (format === 'repartition') return withValues(task, forwardedPass(task));
  const poisoned = new Map<number, string>();
  for (;;) {
    const found = poisoned.size;
    const result = ingestPass(task, format, poisoned);
    if (poisoned.size === found) return withValues(task, result);
  }
}

/** A whole-message reject carries the message's bytes (a copy: a view would post the task's whole buffer back). */
function withValues(task: IngestTask, result: IngestResult): IngestResult {
  for (const r of result.rejects) {
    if (r.bytes !== undefined) continue;
    const from = task.bounds[2 * r.message] as number;
    if (from !== SKIPPED) r.value = task.data.slice(from, task.bounds[2 * r.message + 1] as number);
  }
  return result;
}

function ingestPass(task: IngestTask, format: Format, poisoned: Map<number, string>): IngestResult {
  const started = performance.now();
  const encoder = new PointsEncoder(Math.max(1 << 16, task.data.length * 2));
  const rejects = new RejectCollector();
  const n = task.offsets.length;
  let message = 0;
  const ctx: DecodeContext = { kafkaTimestampMs: 0, nowMs: task.nowMs, maxFutureMs: task.maxFutureMs, limits: task.limits };
  const collectors = Array.from({ length: task.shards }, () => new ShardCollector());
  const forwards = new Map<number, PointsEncoder>();
  const forwarded: ForwardBatch[] = [];
  let forwarding = false;
  // Event-time maximum of the task's messages before the current one (watermarks are judged per
  // message, so the split of points across shards and tasks cannot change a point's fate).
  let runMax = -Infinity;
  let maxBeforeMessage = -Infinity;
  const [markOffset, markIndex] = task.pointsAfter;
  let alreadyStored = 0;
  let lastOffset = -1;
  let lastIndex = -1;
  // The current message's tenant (the topic's, or its header's) and where it came from.
  const tenancy = task.tenancy;
  let messageTenant = '';
  let messageSource = '';
  const points = {
    point(metric: string, arrived: string[], value: number, tsMs: number, type: MetricTypeCode, pointIndex: number): string | null {
      let tenant = messageTenant;
      let tagged = arrived;
      if (tenancy !== null && tenancy.tag !== '') {
        const claim = tenantTagOf(tenancy.tag, arrived);
        if (claim !== null) {
          if (!TENANT_NAME.test(claim.tenant)) return `tag "${tenancy.tag}" = ${JSON.stringify(claim.tenant)}: expected ${TENANT_NAME_EXPECTED}`;
          if (messageTenant !== '' && claim.tenant !== messageTenant) return `tag "${tenancy.tag}" claims tenant ${JSON.stringify(claim.tenant)}, but the ${messageSource} is tenant ${JSON.stringify(messageTenant)}'s`;
          tenant = claim.tenant;
          tagged = claim.rest;
        }
      }
      const series = seriesOf(metric, tagged, task.shards, tenant);
      const tags = series.tags;
      const offset = task.offsets[message] as number;
      if (offset >= task.storeFromOffset) {
        if (offset > markOffset || (offset === markOffset && pointIndex > markIndex)) {
          encoder.addEncoded(series.encoded, type, tsMs, value, task.topic, task.partition, offset, pointIndex);
          lastOffset = offset;
          lastIndex = pointIndex;
        } else alreadyStored++;
      }
      // The watermark trusts a timestamp only up to a little past when the message was produced.
      const kafkaTs = ctx.kafkaTimestampMs;
      const w = kafkaTs > 0 ? Math.min(tsMs, kafkaTs + task.watermarkMaxAheadMs) : tsMs;
      if (w > runMax) runMax = w;
      if (forwarding) {
        if (series.repartition < 0) series.repartition = repartitionOf(series.id, task.repartitions);
        let f = forwards.get(series.repartition);
        if (!f) forwards.set(series.repartition, (f = new PointsEncoder(1 << 14)));
        f.addEncoded(series.encoded, type, tsMs, value, task.topic, task.partition, offset, pointIndex);
        if (f.rows.length >= FORWARD_CHUNK_BYTES) {
          forwarded.push({ partition: series.repartition, body: f.rows.finish(), points: f.count, lastOffset: offset, lastIndex: pointIndex, maxTsMs: runMax });
          forwards.delete(series.repartition);
        }
      } else (collectors[series.shard] as ShardCollector).add(series.id, metric, tags, tsMs, value, type, offset, pointIndex, maxBeforeMessage, series.encoded);
      return null;
    },
  };
  const rejectSink = {
    reject(code: DecodeErrorCode, reason: string, detail: { bytes?: Uint8Array; line?: number; element?: number }) {
      if ((task.offsets[message] as number) >= task.storeFromOffset) rejects.add(message, code, reason, detail);
    },
  };
  for (; message < n; message++) {
    maxBeforeMessage = runMax;
    if (task.bounds[2 * message] === SKIPPED) continue;
    const poison = poisoned.get(message);
    if (poison !== undefined) {
      rejectSink.reject('VIGIL_ERR_DECODE_INTERNAL', `decoding the message threw: ${poison}`, {});
      continue;
    }
    ctx.kafkaTimestampMs = task.timestamps[message] as number;
    forwarding = task.forward !== null && task.forward[message] === 1;
    if (tenancy !== null) {
      const refused = messageTenancy(tenancy, message);
      if (refused !== null) {
        rejectSink.reject('VIGIL_ERR_DECODE_TENANT', refused, {});
        continue;
      }
      messageTenant = tenancy.topic !== '' ? tenancy.topic : (tenancy.headers?.[message] ?? '');
      messageSource = tenancy.topic !== '' ? `topic ${JSON.stringify(task.topic)}` : `header "${tenancy.header}"`;
    }
    try {
      decodeMessage(task.data, task.bounds[2 * message] as number, task.bounds[2 * message + 1] as number, format, ctx, points, rejectSink);
    } catch (err) {
      // This pass's output is now partial for this message; the caller runs another without it.
      poisoned.set(message, err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    }
  }
  let body = encoder.rows.finish();
  if (task.compression === 'gzip' && body.length > 0) {
    const z = gzipSync(body, { level: 1 });
    body = new Uint8Array(z.buffer, z.byteOffset, z.byteLength).slice();
  }
  // The last batch of each partition: the main thread stamps it with the task's last offset.
  for (const [partition, f] of forwards) forwarded.push({ partition, body: f.rows.finish(), points: f.count, lastOffset: -1, lastIndex: -1, maxTsMs: runMax });
  return { body, rows: encoder.count, alreadyStored, lastRow: [lastOffset, lastIndex], rejects: rejects.finish(), shardBatches: collectors.map((c) => c.finish()), maxTsMs: runMax, forwards: forwarded, workerMs: performance.now() - started };
}

/** Why a message's header claim is refused (a bad name, or another tenant than its topic's), or null. */
function messageTenancy(tenancy: TaskTenancy, message: number): string | null {
  const claim = tenancy.headers?.[message] ?? '';
  if (claim === '') return null;
  if (!TENANT_NAME.test(claim)) return `header "${tenancy.header}" = ${JSON.stringify(claim)}: expected ${TENANT_NAME_EXPECTED}`;
  if (tenancy.topic !== '' && claim !== tenancy.topic) return `header "${tenancy.header}" claims tenant ${JSON.stringify(claim)}, but the topic is tenant ${JSON.stringify(tenancy.topic)}'s`;
  return null;
}

/**
 * A repartition-topic task: the forwarded points (stored by the first stage, so no rows here) go
 * to their shards, judged by the watermarks the main thread worked out per record; points a
 * replayed first stage sent again are skipped.
 */
function forwardedPass(task: IngestTask): IngestResult {
  const started = performance.now();
  const f = task.forwarded as NonNullable<IngestTask['forwarded']>;
  const collectors = Array.from({ length: task.shards }, () => new ShardCollector());
  const rejects = new RejectCollector();
  for (let message = 0; message < task.offsets.length; message++) {
    if (task.bounds[2 * message] === SKIPPED) continue;
    const offset = task.offsets[message] as number;
    const skipOffset = f.skipThrough[2 * message] as number;
    const skipIndex = f.skipThrough[2 * message + 1] as number;
    const before = f.watermarks[message] as number;
    // Read whole before any point is handed on: a record that does not parse is set aside whole.
    let read: ForwardedPoint[];
    try {
      read = readForwarded(task.data, task.bounds[2 * message] as number, task.bounds[2 * message + 1] as number, f.withTenant[message] === 1);
    } catch (err) {
      // A replay below storedUpTo set it aside already.
      if (offset >= task.storeFromOffset) rejects.add(message, 'VIGIL_ERR_DECODE_INTERNAL', `a repartition record does not parse: ${(err as Error).message}`, {});
      continue;
    }
    read.forEach((p, i) => {
      if (p.sourceOffset < skipOffset || (p.sourceOffset === skipOffset && p.pointIndex <= skipIndex)) return;
      (collectors[Number(p.seriesId % BigInt(task.shards))] as ShardCollector).add(p.seriesId, p.metric, p.tags, p.tsMs, p.value, p.type, offset, i, before, undefined, p.tenant);
    });
  }
  return { body: new Uint8Array(0), rows: 0, alreadyStored: 0, lastRow: [-1, -1], rejects: rejects.finish(), shardBatches: collectors.map((c) => c.finish()), maxTsMs: f.watermarkAfter, forwards: [], workerMs: performance.now() - started };
}

/** piscina entry: the result is posted back with its body transferred, not copied. */
export default function run(task: IngestTask): IngestResult {
  const result = ingest(task);
  const movable = {
    get [Piscina.transferableSymbol]() {
      return [result.body.buffer, ...result.shardBatches.flatMap(batchBuffers), ...result.forwards.map((f) => f.body.buffer)];
    },
    get [Piscina.valueSymbol]() {
      return result;
    },
  };
  return Piscina.move(movable as unknown as Parameters<typeof Piscina.move>[0]) as unknown as IngestResult;
}
