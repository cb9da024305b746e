import type { DecodeErrorCode, DecodeLimits, Format } from './decode/index.js';
import type { ShardBatch } from './shard-task.js';

/**
 * The contract of the ingest task (workers/ingest.ts, a piscina task module): raw Kafka message values of one topic-partition in,
 * a ready ClickHouse insert body for `points` and the rejects out. The main thread copies the
 * values once into `data` and transfers it; the body comes back transferred.
 */
export interface IngestTask {
  topic: string;
  partition: number;
  /** `repartition`: the repartition topic's records (forwarded points, already stored). */
  format: Format | 'repartition';
  /** Message values concatenated; message i is data[bounds[2i], bounds[2i+1]). */
  data: Uint8Array;
  bounds: Uint32Array;
  offsets: Float64Array;
  timestamps: Float64Array;
  nowMs: number;
  maxFutureMs: number;
  /** Per-point limits (config `limits.*`). */
  limits: DecodeLimits;
  /** A point advances the watermark at most this far past its message's Kafka timestamp. */
  watermarkMaxAheadMs: number;
  compression: 'none' | 'gzip';
  /** Number of shards; a point's shard is its series id mod this. */
  shards: number;
  /**
   * Messages at lower offsets were fully stored by an earlier run: they are decoded and handed
   * to the shards (to rebuild bucket state) but produce no rows and no dead letters.
   */
  storeFromOffset: number;
  /**
   * The furthest point `points` already holds of this partition (offset, index in its message;
   * [-1, -1]: none), from the points marks (pipeline/ingest.ts readMarks): points at or before it are not
   * encoded again (insert-time deduplication of a replay).
   */
  pointsAfter: readonly [offset: number, index: number];
  /** Partitions of the repartition topic (where a forwarded point's series lives). */
  repartitions: number;
  /** Per message, 1 when its points go to the repartition topic instead of this instance's shards (null: none does). */
  forward: Uint8Array | null;
  /** Repartition-topic tasks only; see pipeline/repartition.ts. */
  forwarded?: ForwardedTask;
  /** Where points' tenants come from (issue 18); null: every point is the default tenant's. */
  tenancy: TaskTenancy | null;
}

/**
 * A task's tenant sources (config `tenants`): the topic's tenant, else a message's header, else
 * a point's tag. A point claiming a tenant other than its topic's or its message header's is
 * refused (VIGIL_ERR_DECODE_TENANT): only the topic is trusted, through Kafka's ACLs.
 */
export interface TaskTenancy {
  /** The tag key naming a point's tenant ('': none); the tag leaves the point's tags. */
  tag: string;
  /** The topic's tenant (`tenants.topics`; '': none): every point of the topic is its. */
  topic: string;
  /** The header naming the message's tenant (`tenants.header`), for reasons. */
  header: string;
  /** Per message, the header's value ('': none); null: no message of the task has one. */
  headers: string[] | null;
}

/**
 * What the main thread decided for a repartition-topic task, record by record in offset order:
 * points at or below `skipThrough` (a source offset and point index) were applied from an earlier copy of
 * the record (a first stage that replayed), and `watermarks[i]` is the watermark before record i
 * (the least of the source partitions' event-time maxima); `watermarkAfter` the one after the task.
 */
export interface ForwardedTask {
  /** Source offset and point index (pairs: [offset0, index0, offset1, ...]). */
  skipThrough: Float64Array;
  watermarks: Float64Array;
  watermarkAfter: number;
  /** Per record, 1 when its rows carry the tenant column (pipeline/repartition.ts REPARTITION_HEADERS.layout). */
  withTenant: Uint8Array;
}

/**
 * Points of one task for one repartition partition, as `points` RowBinary rows, at most about
 * FORWARD_CHUNK_BYTES per batch (a partition may get several, in order); the last point's source
 * offset and index.
 */
export interface ForwardBatch {
  partition: number;
  body: Uint8Array;
  points: number;
  lastOffset: number;
  lastIndex: number;
  /** The task's event-time maximum (as the watermark counts it) through the batch's last point. */
  maxTsMs: number;
}

/** A forwarded record stays well below Kafka's default max.message.bytes (1 MiB). */
export const FORWARD_CHUNK_BYTES = 512 * 1024;

/** `bounds[2i]` of a message the main thread already rejected (too large): the worker skips it. */
export const SKIPPED = 0xffffffff;

/** A message's rejects, folded into one (workers/rejects.ts): one dead letter per bad message. */
export interface IngestReject {
  /** Index of the message in the task. */
  message: number;
  /** The first reject's code. */
  code: DecodeErrorCode;
  /** The first few reasons, `; `-joined, with `… and N more`. */
  reason: string;
  /** Bad lines or elements (1 for a whole-message reject). */
  count: number;
  /** The first bad line (1-based) or element (0-based). */
  line?: number;
  element?: number;
  /** The bad lines or elements, newline-joined; absent when the whole message is the letter. */
  bytes?: Uint8Array;
  /**
   * The whole message, when it is the letter (no `bytes`): the main thread no longer holds the
   * messages it handed to a task.
   */
  value?: Uint8Array;
  /** How many of the `count` bad items `bytes` carries (the rest did not fit). */
  items?: number;
}

export interface IngestResult {
  body: Uint8Array;
  rows: number;
  /** Points not encoded because `points` already held them (task.pointsAfter). */
  alreadyStored: number;
  /** The body's last point (offset, index in its message; [-1, -1] when empty): its partition's mark once it is stored. */
  lastRow: [offset: number, index: number];
  /** The task's points split by shard (index = shard). */
  shardBatches: ShardBatch[];
  /** Highest event time of the task's valid points, each capped at its message's Kafka timestamp + watermarkMaxAheadMs (-Infinity when none). */
  maxTsMs: number;
  rejects: IngestReject[];
  /** Points to forward, by repartition partition (only partitions that got some). */
  forwards: ForwardBatch[];
  workerMs: number;
}
