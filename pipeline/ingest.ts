import { setTimeout as sleep } from 'node:timers/promises';
import type { IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { VigilConfig } from '../core/config/index.js';
import { isVigilError, VigilError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { retry, type RetryPolicy } from '../core/retry.js';
import { InsertBatcher, isAfter, rowsOf, splitRows, type ClickHouseSink, type InsertTable, type PointMark, type RefusedRow } from '../sinks/clickhouse/index.js';
import { cardinalityLetter, deadLetterFor, DLQ_HEADERS, refusedRowsLetter, type DeadLetter, type DeadLetterOutcome, type DeadLetterProducer, type Rejected } from '../sinks/kafka/dlq.js';
import type { Transition } from '../workers/alerts/evaluator.js';
import { SKIPPED, type IngestResult, type IngestTask, type TaskTenancy } from '../workers/ingest-task.js';
import { emptyBatch, lowerHold, type HeldOffset, type RefusedPoints } from '../workers/shard-task.js';
import type { Alerting } from './alerts/index.js';
import { AlertPublishQueue } from './alerts/queue.js';
import { Committer, partitionKey, type CommitMeta } from './commit.js';
import { PartitionConsumer } from './consumer.js';
import type { Readiness } from './http.js';
import type { Metrics } from './metrics.js';
import type { OffsetRange } from './offsets.js';
import type { ShardedPool } from './pool.js';
import { ShardStage, shardOutputs } from './shards.js';
import { ALL_POINTS, forwardHeaders, forwards, header as headerOf, progressHeaders, SourceLog, withTenant } from './repartition.js';
import type { ForwardRecord, RepartitionProducer } from '../sinks/kafka/repartition.js';

/** No point of the partition is known to be stored. */
const NO_MARK: PointMark = [-1, -1];

/** The repartition topic, when kafka.repartition is not `never` (pipeline/repartition.ts). */
export interface Repartition {
  producer: RepartitionProducer;
  topic: string;
  partitions: number;
  /** The metric topics' partitions (`topic/partition`) when the pipeline started. */
  sources: readonly string[];
}


/** One worker task's worth of messages and the outputs owed before its offsets may move. */
interface Work {
  /** The consumer group generation it was fetched in. */
  epoch: number;
  range: OffsetRange;
  /** What its dead letters need of its messages (the values went to the worker). */
  origins: MessageOrigins;
  /** Its last message's Kafka timestamp (forwarded records carry it). */
  lastTimestamp: number;
  bytes: number;
  startedAt: number;
  /** Each output's acknowledgement: the points insert, the dead letters, rollup, anomaly and state inserts, alert events. */
  outputs: Promise<void>[];
  /** Set when the ingest task returned; shard shares wait for the partition's earlier tasks. */
  result?: IngestResult;
  /** The partition's highest event time after this task (recorded with a commit). */
  maxAfterMs: number;
  /** The lowest bucket offset the shards still held after this task (null: none). */
  held: HeldOffset | null;
  /** Some of its messages' points go to the repartition topic. */
  forwarding: boolean;
  /** Its dead letters, when it has some: its points are written after them (dispatchShards). */
  letters?: Promise<void>;
}

/** A message's folded rejects (workers/rejects.ts), or the main thread's own (too large). */
interface Rejection extends Rejected {
  message: number;
  /** The whole message, when it is the letter. */
  value?: Uint8Array;
}

/**
 * A task's messages as its dead letters need them once their values went to the worker: keys
 * (copied out, or they would keep kafkajs' fetch buffers alive), headers (only the non-empty ones)
 * and offsets. Holding the kafkajs messages of every task queued for the pool held a drain's
 * whole in-flight window in the main thread's heap: 630 against 444–474 MiB RSS (`--preset drain`).
 */
export class MessageOrigins {
  private readonly keys: Uint8Array;
  /** Per message: key start and end in `keys` (-1: no key). */
  private readonly keyBounds: Int32Array;
  private readonly headers = new Map<number, IHeaders>();
  private readonly offsets: string[];

  constructor(messages: readonly KafkaMessage[]) {
    let total = 0;
    for (const m of messages) total += m.key?.length ?? 0;
    this.keys = new Uint8Array(total);
    this.keyBounds = new Int32Array(messages.length * 2);
    this.offsets = new Array<string>(messages.length);
    let pos = 0;
    messages.forEach((m, i) => {
      this.offsets[i] = m.offset;
      if (m.key) {
        this.keys.set(m.key, pos);
        this.keyBounds[2 * i] = pos;
        pos += m.key.length;
        this.keyBounds[2 * i + 1] = pos;
      } else {
        this.keyBounds[2 * i] = -1;
      }
      if (m.headers) for (const _ in m.headers) {
        this.headers.set(i, m.headers);
        break;
      }
    });
  }

  /** The message as a dead letter sees it, with `value` (a worker's copy, or the message's own). */
  message(i: number, value: Uint8Array | undefined): Pick<KafkaMessage, 'key' | 'value' | 'headers' | 'offset'> {
    const from = this.keyBounds[2 * i] as number;
    const key = from < 0 ? null : Buffer.from(this.keys.buffer, this.keys.byteOffset + from, (this.keyBounds[2 * i + 1] as number) - from);
    return { key, value: value ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : null, headers: this.headers.get(i) ?? {}, offset: this.offsets[i] as string };
  }
}

/** Per partition and generation, in offset order: works whose shard shares wait for earlier ones, the event-time maximum so far. */
interface PartitionState {
  topic: string;
  partition: number;
  epoch: number;
  queue: Work[];
  maxTsMs: number;
  /** Messages before this offset had every output stored by an earlier run: not written again. */
  storedUpTo: number;
  /** The furthest point `points` holds of this partition (its marks, read at the generation's start): not written again. */
  pointsAfter: PointMark;
  /** A repartition-topic partition: its sources' marks and watermark. */
  sources: SourceLog | null;
  /** The partition's forwarded records, produced one task after the other. */
  forwarded: Promise<void>;
  /** A metric-topic partition under forwarding: when its last record went to every repartition partition, and the maximum it carried. */
  progressAt: number;
  progressMaxMs: number;
  /** A metric-topic partition: its idle record went out after its last forward (repartition.ts). */
  idleSent: boolean;
  /** Tasks handed to the shards whose outputs are not yet queued for their sinks. */
  shardsPending: number;
  /** Resolves once the partition's last points body went to the insert batcher (they go in offset order). */
  pointsQueued: Promise<void>;
}

export interface IngestStats {
  messages: number;
  points: number;
  rowsInserted: number;
  rollupRows: number;
  anomalyRows: number;
  /** Scored buckets at or above models.threshold. */
  anomalies: number;
  deadLetters: number;
  lag: number;
  inFlightBytes: number;
  paused: boolean;
  /** Consumer group (re)joins, and consumer crashes kafkajs reported. */
  rebalances: number;
  consumerCrashes: number;
}

/**
 * The ingestion path (DESIGN.md §1, §4, §7), as stages with one job each:
 *
 * - the consumer (pipeline/consumer.ts) fetches, cuts batches into tasks, pauses and resumes, and
 *   announces each consumer group generation;
 * - this class hands each task to the worker pool (decode, validate, encode points), then each
 *   task's shard shares to the shard stage (pipeline/shards.ts) strictly in offset order per
 *   partition, and gathers every output of the task as one promise;
 * - the sinks own their batching and retries: ClickHouse inserts (sinks/clickhouse/batcher.ts),
 *   dead letters, alert events;
 * - the commit stage (pipeline/commit.ts) moves a partition's offset only past tasks whose outputs
 *   are all acknowledged and no bucket the shards still hold, with the watermark base in the
 *   commit metadata, so a replay rebuilds the same rows.
 *
 * The main thread parses no points.
 */
export class Ingestor {
  private readonly consumer: PartitionConsumer<PartitionState>;
  private readonly committer: Committer;
  private readonly shards: ShardStage;
  private readonly inserts: InsertBatcher;
  /** Partitions of the current generation. */
  private readonly partitions = new Map<string, PartitionState>();
  /** Metric-topic partitions of this generation whose idle record went out before any message (announceSources). */
  private readonly idleSentUnopened = new Set<string>();
  private checkingUnopened = false;
  /** Alert events on their way to the alerts topic and table, in order (pipeline/alerts/queue.ts). */
  private readonly alertQueue: AlertPublishQueue;
  private unopenedCheckedAt = 0;
  /** The shard threads' preparation for the latest generation (after the previous one's). */
  private prepared: Promise<void> = Promise.resolve();
  /** The points marks of the metric topics' partitions, read at the start of the generation. */
  private marks = new Map<string, PointMark>();
  private readonly counts = { messages: 0, points: 0, rowsInserted: 0, rollupRows: 0, anomalyRows: 0, deadLetters: 0, inFlightBytes: 0 };
  private commitScheduled = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Wall time after which retries give up (set by stop()). */
  private deadline = Infinity;
  /** Ingest tasks handed to the pool and not yet returned. */
  private tasksInFlight = 0;
  /** Works given up (an output failed at the shutdown deadline or after a fatal error): never committed. */
  private abandoned = 0;
  private fatal: Error | undefined;
  /** Last time nothing waited (no lag, nothing in flight): a stall is measured from there or from the last commit. */
  private lastIdleAt = Date.now();

  constructor(
    private readonly config: VigilConfig,
    kafka: Kafka,
    private readonly pool: ShardedPool,
    private readonly sink: ClickHouseSink,
    private readonly dlq: DeadLetterProducer,
    private readonly metrics: Metrics,
    private readonly readiness: Readiness,
    private readonly log: Logger,
    private readonly onFatal: (err: Error) => void,
    private readonly alerting: Alerting | null = null,
    private readonly repartition: Repartition | null = null,
  ) {
    this.shards = new ShardStage(config, pool, sink, alerting, metrics, log);
    this.consumer = new PartitionConsumer<PartitionState>(
      config,
      kafka,
      {
        onGeneration: (generation, assignment) => this.onGeneration(generation, assignment),
        openPartition: (topic, partition, generation, meta) => this.openPartition(topic, partition, generation, meta),
        dispatch: (state, messages, bytes) => this.dispatch(state, messages, bytes),
        hasRoom: () => this.tasksInFlight < config.pipeline.maxTasksInFlight,
        onFatal: (err) => this.die(err),
      },
      metrics,
      readiness,
      log,
    );
    this.alertQueue = new AlertPublishQueue({
      epoch: () => this.committer.epoch,
      settledGeneration: () => this.consumer.settledGeneration(),
      retry: (op) => this.retrySink('alerts', op),
      publish: (events, stored) => (alerting as Alerting).publish(events, stored),
      withdraw: (events) => alerting?.withdraw(events),
    });
    this.committer = new Committer(
      {
        commitOffsets: (offsets) => this.consumer.commitOffsets(offsets),
        sourcesAt: (key, offset) => this.partitions.get(key)?.sources?.marksBefore(offset),
        committed: (key, offset) => this.partitions.get(key)?.sources?.committed(offset),
      },
      log,
    );
    const gzip = config.clickhouse.compression === 'gzip';
    this.inserts = new InsertBatcher({
      maxRows: config.pipeline.insertMaxRows,
      lingerMs: config.pipeline.insertLingerMs,
      retryInitialMs: config.pipeline.retryInitialMs,
      retryMaxMs: config.pipeline.retryMaxMs,
      // Points bodies are gzip-compressed by the workers when clickhouse.compression asks for it;
      // the parts of a split insert are plain rows.
      insert: (table, body, plain) => this.sink.insert(table, body, gzip && table === 'points' && !plain),
      rows: (table, body) => splitRows(table, body, gzip && table === 'points'),
      refused: (table, rows) => this.sendRefusedRows(table, rows),
      deadline: () => (this.fatal ? 0 : this.deadline),
      onRetry: (err, retryInMs) => this.sinkFailed('clickhouse', err, retryInMs),
      // A points insert whose answer was lost is asked after before it is sent again: a server
      // that took it has its marks (the same INSERT), and it must not be stored twice. Not on a
      // cluster: there the insert's views each drop a block they already hold (schema.ts
      // migration 10), so the same body sent again fills exactly what the first attempt missed,
      // whatever order the server ran the views in; marks that landed say nothing of the others.
      landed: config.clickhouse.cluster ? undefined : async (marks) => {
        const topics = [...new Set([...marks.keys()].map((k) => k.slice(0, k.lastIndexOf('/'))))];
        const stored = await this.sink.readPointsMarks(topics);
        const yes = [...marks].every(([key, point]) => {
          const mark = stored.get(key);
          return mark !== undefined && !isAfter(point, mark);
        });
        if (yes) this.log.warn({ partitions: marks.size }, 'a points insert whose answer was lost had landed: not sent again');
        return yes;
      },
      onStored: (table, rows, seconds) => {
        this.readiness.set('clickhouse', true);
        this.metrics.insertSeconds.observe({ table }, seconds);
        this.metrics.rowsInserted.inc({ table }, rows);
        if (table === 'points') this.counts.rowsInserted += rows;
        else if (table === 'rollups') this.counts.rollupRows += rows;
        else if (table === 'anomalies') this.counts.anomalyRows += rows;
      },
    });
  }

  get stats(): IngestStats {
    return { ...this.counts, anomalies: this.shards.flagged, lag: this.consumer.lag, paused: this.consumer.paused, rebalances: this.consumer.rebalances, consumerCrashes: this.consumer.crashes };
  }

  async start(): Promise<void> {
    if (this.shards.rollups) {
      this.idleTimer = setInterval(() => {
        const idle = this.consumer.idle(this.config.rollups.idleTimeoutMs);
        this.closeIdlePartitions(idle);
        this.announceSources(idle);
        if (!this.stopping) void this.publishAlerts([])?.catch(() => undefined);
      }, Math.min(1000, this.config.rollups.idleTimeoutMs));
      this.idleTimer.unref();
    }
    await this.consumer.start();
  }

  /**
   * A (re)join of the consumer group: a new generation. kafkajs re-delivers every assigned
   * partition, kept or new, from its committed offset, so every partition starts over exactly as
   * after a restart: offsets and partition state forgotten, the shard threads' series state
   * dropped (behind the tasks already queued for them) and the detectors' restored, the firing
   * alerts restored from the alerts table. Work of the old generation still finishes, but moves
   * no offset, reaches no shard and publishes no alert.
   */
  private onGeneration(generation: number, assignment: Record<string, number[]>): Promise<void> {
    this.committer.reset(generation);
    this.partitions.clear();
    this.idleSentUnopened.clear();
    // Events still queued for publishing are withdrawn now, before the replay re-derives them.
    this.alertQueue.endGeneration();
    const previous = this.prepared;
    const policy = this.retryPolicy((err, retryInMs) => this.log.warn({ err, retryInMs }, 'preparing the shards for a new generation failed; retrying'));
    this.prepared = (async () => {
      await previous;
      // The publish under way (if any) ends first, published or withdrawn: then the events the
      // lifecycle counts as published are on the topic.
      await this.alertQueue.settled();
      this.marks = await this.readMarks(generation, assignment, policy);
      // The series state first, the firing alerts after it: a state is written once its task's
      // alert events are durable, so the alerts read next know every episode the state has seen
      // begin (read the other way round, an owner still publishing could fire an episode between
      // the two reads: restored as firing, unknown to the lifecycle, its resolve dropped).
      const states = await this.shards.readState(assignment, policy);
      const alerting = this.alerting;
      let seeds: Awaited<ReturnType<Alerting['restore']>> | null = null;
      if (alerting) seeds = await retry(() => alerting.restore(), policy);
      await this.shards.prepare(seeds, states);
    })().catch((err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `preparing the shards after a rebalance failed: ${(err as Error).message}`, { cause: err })));
    return this.prepared;
  }

  /**
   * Insert-time deduplication of `points` (issue 19): the points of an earlier generation still
   * queued are taken back and the insert in flight awaited, so nothing of theirs lands after this;
   * then the marks of the assigned metric-topic partitions say up to which point each is stored.
   * A replay from the committed offset writes only the points after that.
   */
  private async readMarks(generation: number, assignment: Record<string, number[]>, policy: RetryPolicy): Promise<Map<string, PointMark>> {
    const withdrawn = await this.inserts.withdraw('points', generation);
    if (withdrawn > 0) this.log.info({ rows: withdrawn, generation }, 'points of the last generation not sent: the partitions\' owners write them');
    const topics = Object.keys(assignment).filter((t) => t !== this.repartition?.topic && (assignment[t]?.length ?? 0) > 0);
    const [marks, ends] = await retry(() => Promise.all([this.sink.readPointsMarks(topics), Promise.all(topics.map((t) => this.consumer.endOffsets(t)))]), policy);
    // A mark at or past its partition's end belongs to an earlier topic of that name (deleted and
    // made again): trusting it would skip the new topic's points.
    topics.forEach((topic, i) => {
      for (const [partition, end] of ends[i] as Map<number, number>) {
        const key = partitionKey(topic, partition);
        const mark = marks.get(key);
        if (mark && mark[0] >= end) {
          this.log.warn({ topic, partition, mark: mark[0], end }, 'a points mark lies past the end of its partition (a topic deleted and made again?): ignored');
          marks.delete(key);
        }
      }
    });
    return marks;
  }

  private openPartition(topic: string, partition: number, epoch: number, meta: CommitMeta): PartitionState {
    const sources = topic === this.repartition?.topic ? new SourceLog(meta.sources, meta.maxEventTimeMs, this.repartition?.sources ?? []) : null;
    const key = partitionKey(topic, partition);
    const state: PartitionState = {
      topic,
      partition,
      epoch,
      queue: [],
      maxTsMs: meta.maxEventTimeMs,
      storedUpTo: meta.storedUpTo,
      pointsAfter: this.marks.get(key) ?? NO_MARK,
      sources,
      forwarded: Promise.resolve(),
      pointsQueued: Promise.resolve(),
      progressAt: Date.now(),
      progressMaxMs: meta.maxEventTimeMs,
      idleSent: this.idleSentUnopened.has(key),
      shardsPending: 0,
    };
    this.partitions.set(key, state);
    return state;
  }

  /** A task's tenant sources (config `tenants`): null when every point of it is the default tenant's. */
  private tenancyOf(topic: string, messages: KafkaMessage[]): TaskTenancy | null {
    const { tag, header, topics } = this.config.tenants;
    let headers: string[] | null = null;
    if (header !== '') {
      messages.forEach((m, i) => {
        const claim = headerOf(m, header) ?? '';
        if (claim === '') return;
        headers ??= new Array<string>(messages.length).fill('');
        headers[i] = claim;
      });
    }
    const own = Object.hasOwn(topics, topic) ? (topics[topic] as string) : '';
    if (tag === '' && own === '' && headers === null) return null;
    return { tag, topic: own, header, headers };
  }

  private dispatch(state: PartitionState, messages: KafkaMessage[], bytes: number): void {
    const { pipeline, kafka } = this.config;
    const { topic, partition } = state;
    const range = this.committer.register({
      topic,
      partition,
      first: Number((messages[0] as KafkaMessage).offset),
      last: Number((messages[messages.length - 1] as KafkaMessage).offset),
    });
    const origins = new MessageOrigins(messages);
    const lastTimestamp = Number((messages[messages.length - 1] as KafkaMessage).timestamp);
    const work: Work = { epoch: state.epoch, range, origins, lastTimestamp, bytes, startedAt: performance.now(), outputs: [], maxAfterMs: -Infinity, held: null, forwarding: false };
    state.queue.push(work);
    this.counts.inFlightBytes += bytes;
    this.counts.messages += messages.length;
    this.metrics.inFlightBytes.set(this.counts.inFlightBytes);
    this.metrics.messagesReceived.inc({ topic }, messages.length);
    this.metrics.bytesReceived.inc({ topic }, bytes);
    // Backpressure: past maxInFlightBytes every partition pauses until half of it is done.
    if (this.counts.inFlightBytes > pipeline.maxInFlightBytes && !this.consumer.paused) this.setPaused(true);

    // One copy per task into a fresh, transferable buffer; oversized and null values stay behind.
    const mainRejects: Rejection[] = [];
    let total = 0;
    for (const m of messages) if (m.value && m.value.length <= pipeline.maxMessageBytes) total += m.value.length;
    const data = new Uint8Array(total);
    const bounds = new Uint32Array(messages.length * 2);
    const offsets = new Float64Array(messages.length);
    const timestamps = new Float64Array(messages.length);
    let pos = 0;
    messages.forEach((m, i) => {
      offsets[i] = Number(m.offset);
      timestamps[i] = Number(m.timestamp);
      bounds[2 * i] = pos;
      if (m.value && m.value.length > pipeline.maxMessageBytes) {
        bounds[2 * i] = SKIPPED;
        if (Number(m.offset) >= state.storedUpTo) {
          mainRejects.push({
            message: i,
            code: 'VIGIL_ERR_DECODE_TOO_LARGE',
            reason: `message of ${m.value.length} bytes exceeds pipeline.maxMessageBytes = ${pipeline.maxMessageBytes}`,
            count: 1,
            value: m.value,
          });
        }
      } else if (m.value) {
        data.set(m.value, pos);
        pos += m.value.length;
      }
      bounds[2 * i + 1] = pos;
    });
    // First stage: which messages' points go to the repartition topic. Second stage (the
    // repartition topic itself): what each record repeats, and the watermark before it.
    let forward: Uint8Array | null = null;
    let forwarded: IngestTask['forwarded'];
    if (state.sources) {
      const skipThrough = new Float64Array(messages.length * 2);
      const watermarks = new Float64Array(messages.length);
      const tenantColumn = new Uint8Array(messages.length);
      messages.forEach((m, i) => {
        const a = (state.sources as SourceLog).admit(Number(m.offset), m);
        skipThrough[2 * i] = a.skipOffset;
        skipThrough[2 * i + 1] = a.skipIndex;
        watermarks[i] = a.watermarkBefore;
        tenantColumn[i] = withTenant(m) ? 1 : 0;
      });
      forwarded = { skipThrough, watermarks, watermarkAfter: state.sources.watermarkNow, withTenant: tenantColumn };
    } else if (this.repartition) {
      const flags = new Uint8Array(messages.length);
      messages.forEach((m, i) => (flags[i] = forwards(kafka.repartition, m) ? 1 : 0));
      if (flags.includes(1)) {
        forward = flags;
        work.forwarding = true;
      }
    }
    const task: IngestTask = {
      topic,
      partition,
      format: state.sources ? 'repartition' : (kafka.topicFormats[topic] ?? 'auto'),
      data,
      bounds,
      offsets,
      timestamps,
      nowMs: Date.now(),
      maxFutureMs: pipeline.maxFutureMs,
      watermarkMaxAheadMs: pipeline.watermarkMaxAheadMs,
      limits: this.config.limits,
      compression: this.config.clickhouse.compression,
      shards: this.pool.shards,
      storeFromOffset: state.storedUpTo,
      pointsAfter: state.pointsAfter,
      repartitions: this.repartition?.partitions ?? 1,
      forward,
      ...(forwarded ? { forwarded } : {}),
      tenancy: state.sources ? null : this.tenancyOf(topic, messages),
    };
    this.tasksInFlight++;
    this.pool
      .runIngest(task, [data.buffer, bounds.buffer, offsets.buffer, timestamps.buffer] as ArrayBuffer[])
      .finally(() => this.tasksInFlight--)
      .then(
        (result: IngestResult) => this.onResult(work, result, mainRejects, state),
        (err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `ingest task for ${topic}/${partition} ${range.first}-${range.last} failed: ${(err as Error).message}`, { cause: err })),
      );
  }

  private onResult(work: Work, result: IngestResult, mainRejects: Rejection[], state: PartitionState): void {
    this.metrics.workerTaskSeconds.observe(result.workerMs / 1000);
    work.result = result;
    // Fetched before a rebalance: the new generation re-reads it from the committed offset, so
    // it writes nothing (dispatchShards lets it go in order).
    if (work.epoch === this.committer.epoch) {
      this.metrics.pointsProcessed.inc(result.rows);
      this.counts.points += result.rows;
      const rejects: Rejection[] = [...mainRejects, ...result.rejects];
      if (rejects.length > 0) work.outputs.push((work.letters = this.sendDeadLetters(work, rejects)));
      if (result.alreadyStored > 0) this.metrics.pointsAlreadyStored.inc(result.alreadyStored);
    }
    this.dispatchShards(state);
  }

  /**
   * Hands every shard its share of the partition's finished ingest tasks, strictly in offset
   * order (ingest tasks finish in any order), with the partition's event-time maximum before
   * and after each task: the watermark every shard judges and closes buckets by.
   */
  private dispatchShards(state: PartitionState): void {
    while (state.queue.length > 0 && (state.queue[0] as Work).result) {
      const work = state.queue.shift() as Work;
      const result = work.result as IngestResult;
      work.result = undefined;
      if (state.epoch !== this.committer.epoch) {
        // The shards were reset for a new generation: an old share would apply twice.
        this.seal(work);
        continue;
      }
      const points = this.queuePoints(state, work, result);
      if (points) work.outputs.push(points);
      const before = state.maxTsMs;
      if (result.maxTsMs > state.maxTsMs) state.maxTsMs = result.maxTsMs;
      work.maxAfterMs = state.maxTsMs;
      if (work.forwarding) work.outputs.push(this.forward(state, work, result, before));
      const shares = result.shardBatches.map((batch, shard) => ({ batch, shard })).filter(({ batch }) => this.shards.rollups || batch.count > 0);
      if (shares.length === 0) {
        this.seal(work);
        continue;
      }
      const out = shardOutputs();
      const runs = shares.map(({ batch, shard }) =>
        this.shards.run(shard, this.shards.task(shard, 'data', state.topic, state.partition, batch, before, state.maxTsMs)).then((r) => {
          out.add(r);
          work.held = lowerHold(work.held, r.held);
          // A replay below storedUpTo refuses the same points again: their letter went out then.
          if (r.refused && r.refused.lastOffset >= state.storedUpTo && work.epoch === this.committer.epoch) work.outputs.push(this.sendRefused(work, shard, r.refused));
          for (const t of r.tenantRefused) if (t.lastOffset >= state.storedUpTo && work.epoch === this.committer.epoch) work.outputs.push(this.sendRefused(work, shard, t));
        }),
      );
      state.shardsPending++;
      Promise.all(runs).then(
        () => {
          const anomalies: Promise<void>[] = [];
          for (const insert of out.inserts()) {
            const written = this.inserts.write(insert.table, insert.body, insert.rows);
            work.outputs.push(written);
            if (insert.table === 'anomalies') anomalies.push(written);
          }
          // Transitions of a generation that ended are not the lifecycle's to see: whoever owns the
          // partition now re-derives them from its committed offset, after restoring the firing
          // alerts (a late firing here would be a second one for the same episode).
          const alerts = work.epoch === this.committer.epoch ? this.publishAlerts(out.transitions, Promise.all(anomalies).catch(() => undefined)) : null;
          if (alerts) work.outputs.push(alerts);
          const series = out.state();
          if (series) work.outputs.push(this.writeState(work.epoch, series));
          state.shardsPending--;
          this.seal(work);
        },
        (err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `shard task for ${state.topic}/${state.partition} ${work.range.first}-${work.range.last} failed: ${(err as Error).message}`, { cause: err })),
      );
    }
  }

  /**
   * Queues a task's points for their insert (null: it has none and no dead letters), in offset
   * order per partition (tasks finish in any order), so that a partition's mark in ClickHouse
   * says every earlier point is stored too. A task with dead letters holds its points and the
   * partition's later ones until the letters are produced: a replay skips every point up to the
   * mark, and a point rejected by the clock (too far in the future) may pass then, so its letter
   * must be out before a later point raises the mark. A task of a generation that ended meanwhile
   * writes nothing (the partition's owner writes it).
   */
  private queuePoints(state: PartitionState, work: Work, result: IngestResult): Promise<void> | null {
    const write = () =>
      result.rows > 0 && work.epoch === this.committer.epoch
        ? this.inserts.write('points', result.body, result.rows, work.epoch, { key: partitionKey(state.topic, state.partition), point: result.lastRow })
        : Promise.resolve();
    const before = state.pointsQueued;
    if (!work.letters) return result.rows > 0 ? before.then(write) : null;
    let queued!: () => void;
    state.pointsQueued = new Promise<void>((resolve) => (queued = resolve));
    // A failed letter leaves the partition's later points unwritten: its work is never committed.
    return Promise.all([before, work.letters]).then(() => {
      const stored = write();
      queued();
      return stored;
    });
  }

  /**
   * Produces a task's forwarded points to the repartition topic, after the partition's earlier
   * tasks' (offset order: the second stage's duplicate check relies on it): each repartition
   * partition's batches in order, the last stamped with the task's last offset, and a record
   * without points for every partition that got none, so each learns this source's progress.
   */
  private forward(state: PartitionState, work: Work, result: IngestResult, maxBeforeMs: number): Promise<void> {
    const r = this.repartition as Repartition;
    const source = partitionKey(state.topic, state.partition);
    const timestamp = work.lastTimestamp;
    const lastOf = new Map<number, number>();
    result.forwards.forEach((f, i) => lastOf.set(f.partition, i));
    const records: ForwardRecord[] = [];
    result.forwards.forEach((f, i) => {
      const last = lastOf.get(f.partition) === i;
      const [offset, index] = last ? [work.range.last, ALL_POINTS] : [f.lastOffset, f.lastIndex];
      // A batch cut inside the task carries the source's maximum through its own last point, not
      // the whole task's: the second stage judges the next batch's points by it.
      const maxMs = last ? state.maxTsMs : Math.max(maxBeforeMs, f.maxTsMs);
      records.push({ partition: f.partition, value: Buffer.from(f.body.buffer, f.body.byteOffset, f.body.byteLength), headers: forwardHeaders(source, offset, index, maxMs), timestamp });
    });
    for (let p = 0; p < r.partitions; p++) {
      if (!lastOf.has(p)) records.push({ partition: p, value: Buffer.alloc(0), headers: forwardHeaders(source, work.range.last, ALL_POINTS, state.maxTsMs), timestamp });
    }
    const points = result.forwards.reduce((n, f) => n + f.points, 0);
    const bytes = records.reduce((n, x) => n + x.value.length, 0);
    state.idleSent = false;
    state.progressAt = Date.now();
    state.progressMaxMs = state.maxTsMs;
    const sent = state.forwarded.then(async () => {
      if (work.epoch !== this.committer.epoch) return;
      await this.retrySink('repartition', () => r.producer.send(records));
      this.metrics.pointsForwarded.inc(points);
      this.metrics.bytesForwarded.inc(bytes);
    });
    // A failed send stops the chain: a later task's records must not move this source's marks
    // past points that never arrived (the second stage would skip them as duplicates on replay).
    state.forwarded = sent;
    return sent;
  }

  /** Every output of the work is known: when all are acknowledged, its range is done. */
  private seal(work: Work): void {
    Promise.all(work.outputs).then(
      () => this.finish(work, true),
      // Only a fatal error or the shutdown deadline ends a retry: the range is never done, and
      // a restart re-reads it.
      () => this.finish(work, false),
    );
  }

  private finish(work: Work, durable: boolean): void {
    if (durable) this.committer.done(work.epoch, work.range, { maxAfterMs: work.maxAfterMs, held: work.held });
    else this.abandoned++;
    this.counts.inFlightBytes -= work.bytes;
    this.metrics.inFlightBytes.set(this.counts.inFlightBytes);
    this.metrics.batchSeconds.observe((performance.now() - work.startedAt) / 1000);
    if (this.consumer.paused && !this.stopping && this.counts.inFlightBytes <= this.config.pipeline.maxInFlightBytes / 2) this.setPaused(false);
    if (durable) this.commit();
  }

  /**
   * Partitions idle (not merely unread, see PartitionConsumer.idle) for rollups.idleTimeoutMs
   * close their buckets by wall time minus the allowed lateness, once their earlier work has
   * reached the shards. Idle closes only emit (the buckets stay held), so they never move a
   * commit; their rows are queued before any later task's, and inserts are FIFO.
   */
  private closeIdlePartitions(idlePartitions: readonly PartitionState[]): void {
    if (!this.shards.rollups || this.stopping) return;
    const watermark = Date.now() - this.config.rollups.allowedLatenessMs;
    const idle = new Set(idlePartitions);
    // A repartition partition whose every source said it is idle is idle too (their repeated idle
    // records keep it from looking unread).
    if (!this.consumer.paused) for (const state of this.partitions.values()) if (state.sources?.allIdle) idle.add(state);
    for (const state of idle) {
      // Not while a task's shard results are still coming: one shard may have finished its share
      // while another still works on it, and the idle close, queued behind that share on the
      // fast shard, would queue its series state (which skips those buckets on a restore) before
      // the task's anomaly rows. A kill between the two lost the rows for good.
      if (state.queue.length > 0 || state.shardsPending > 0 || state.epoch !== this.committer.epoch) continue;
      for (let shard = 0; shard < this.shards.count; shard++) {
        const task = this.shards.task(shard, 'idle', state.topic, state.partition, emptyBatch(), state.maxTsMs, state.maxTsMs, watermark);
        this.shards.run(shard, task).then(
          (r) => {
            if (state.epoch !== this.committer.epoch) return;
            const out = shardOutputs();
            out.add(r);
            const written = Promise.all(out.inserts().map((insert) => this.inserts.write(insert.table, insert.body, insert.rows))).catch(() => undefined);
            const alerts = this.publishAlerts(out.transitions, written);
            const rows = out.state();
            if (rows) void this.writeState(state.epoch, rows).catch(() => undefined);
            void alerts?.catch(() => undefined);
          },
          (err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `idle close of ${state.topic}/${state.partition} on shard ${shard} failed: ${(err as Error).message}`, { cause: err })),
        );
      }
    }
  }

  /**
   * First stage, under forwarding: what each repartition partition needs to know of the
   * metric-topic partitions this instance owns when they forward nothing (repartition.ts), in
   * records without points behind their earlier forwards.
   * - Progress: a partition whose messages are keyed (`auto`) forwards nothing, yet its event-time
   *   maximum must reach the second stage or it would hold the watermark back. Every
   *   rollups.idleTimeoutMs it goes out, as of the tasks whose forwards are already queued.
   * - Idle: a partition with nothing to read (caught up, no message for rollups.idleTimeoutMs;
   *   or, before its first message in this generation, none between its commit and its end, as
   *   the broker says) stops holding the watermark back until it sends again; said again every
   *   rollups.idleTimeoutMs while it lasts.
   * A source that stops without saying so (its instance killed, slow, or rebalancing) keeps
   * holding it back until its next owner replays it: the reader's wall clock decides nothing.
   */
  private announceSources(idlePartitions: readonly PartitionState[]): void {
    const r = this.repartition;
    if (!r || this.stopping) return;
    const idleMs = this.config.rollups.idleTimeoutMs;
    const epoch = this.committer.epoch;
    const now = Date.now();
    const idle = new Set(idlePartitions);
    for (const state of this.partitions.values()) {
      if (state.sources || state.epoch !== epoch) continue;
      const quiet = idle.has(state) && state.queue.length === 0;
      const repeat = now - state.progressAt >= idleMs;
      // Idle: said at once, then repeated (a resuming source wakes the idle ones); progress: when it moved.
      const due = quiet ? !state.idleSent || repeat : repeat && state.maxTsMs > state.progressMaxMs;
      if (!due) continue;
      state.idleSent = quiet;
      state.progressAt = now;
      state.progressMaxMs = state.maxTsMs;
      const maxMs = state.maxTsMs;
      state.forwarded = state.forwarded.then(() => this.sendProgress(r, epoch, state.topic, state.partition, maxMs, quiet));
      void state.forwarded.catch(() => undefined);
    }
    if (this.checkingUnopened || now - this.unopenedCheckedAt < idleMs) return;
    this.checkingUnopened = true;
    this.unopenedCheckedAt = now;
    this.consumer
      .emptyUnopened((topic) => topic !== r.topic)
      .then(async (empty) => {
        for (const { topic, partition } of empty) {
          if (epoch !== this.committer.epoch) return;
          this.idleSentUnopened.add(partitionKey(topic, partition));
          await this.sendProgress(r, epoch, topic, partition, -Infinity, true);
        }
      })
      .catch((err: unknown) => this.log.warn({ err }, 'looking up source partitions with nothing to read failed; retrying'))
      .finally(() => (this.checkingUnopened = false));
  }

  private async sendProgress(r: Repartition, epoch: number, topic: string, partition: number, maxMs: number, idle: boolean): Promise<void> {
    if (epoch !== this.committer.epoch) return;
    const headers = progressHeaders(partitionKey(topic, partition), maxMs, idle);
    const records = Array.from({ length: r.partitions }, (_, p) => ({ partition: p, value: Buffer.alloc(0), headers, timestamp: Date.now() }));
    await this.retrySink('repartition', () => r.producer.send(records));
  }

  /**
   * Writes series state once every alert event made before it is durable (its task's, and those of
   * earlier tasks still queued: a series' state can be past an episode's start made by an earlier
   * task). Not when the task's generation has ended, nor once a publish was given up: those events
   * may have been withdrawn, never made or never published, and a state past an episode's start or
   * end whose event was not published keeps the partition's next owner from ever deriving it (the
   * whole episode lost, seen in the chaos test with publishes slowed).
   */
  private async writeState(epoch: number, rows: { body: Uint8Array[]; rows: number }): Promise<void> {
    const durable = await this.alertQueue.durable();
    if (durable && epoch === this.committer.epoch) await this.inserts.write('detector_state', rows.body, rows.rows);
  }

  /**
   * Turns shard transitions (plus any loose events: repeats, resolves of removed rules) into alert
   * events and queues them for publishing (AlertPublishQueue: in order, withdrawn when their
   * generation ends first); null when there is nothing to publish.
   */
  private publishAlerts(transitions: readonly Transition[], stored?: Promise<unknown>): Promise<void> | null {
    const alerting = this.alerting;
    if (!alerting) return null;
    const alerts = alerting.handle(transitions);
    if (alerts.length === 0) return null;
    return this.alertQueue.push(alerts, stored);
  }

  private async sendDeadLetters(work: Work, rejects: Rejection[]): Promise<void> {
    const { topic, partition } = work.range;
    const letters = rejects.map((r) => deadLetterFor(work.origins.message(r.message, r.value), r, topic, partition));
    await this.produceDeadLetters(letters);
    for (const r of rejects) {
      this.metrics.deadLetters.inc({ code: r.code });
      this.metrics.rejectedItems.inc({ code: r.code }, r.count);
    }
    this.counts.deadLetters += rejects.length;
  }

  /** Produces dead letters (retrying while the broker is away); counts and logs the ones it refused for good. */
  private async produceDeadLetters(letters: DeadLetter[]): Promise<void> {
    let outcome: DeadLetterOutcome | undefined;
    await this.retrySink('dlq', async () => {
      outcome = await this.dlq.send(letters);
    });
    if (outcome && outcome.cut > 0) this.metrics.deadLettersSetAside.inc({ outcome: 'cut' }, outcome.cut);
    for (const letter of outcome?.dropped ?? []) {
      this.metrics.deadLettersSetAside.inc({ outcome: 'dropped' });
      const h = letter.headers;
      this.log.error(
        { topic: h[DLQ_HEADERS.topic], partition: h[DLQ_HEADERS.partition], offset: h[DLQ_HEADERS.offset], code: h[DLQ_HEADERS.code], cut: h[DLQ_HEADERS.cut] },
        'the broker refused a dead letter even cut to 1 KiB; it is set aside (the source offset is committed)',
      );
    }
  }

  /**
   * Rows ClickHouse refused for good (the batcher bisected their insert): one letter per refused
   * insert, produced before the batch resolves, so their source offsets commit only after it.
   */
  private async sendRefusedRows(table: InsertTable, refused: readonly RefusedRow[]): Promise<void> {
    if (refused.length === 0) return;
    const codec = rowsOf(table);
    const letter = refusedRowsLetter(
      table,
      refused.map((r) => ({ row: codec.render(r.row), error: r.error.message })),
    );
    this.log.error({ table, rows: refused.length, reason: letter.headers[DLQ_HEADERS.reason] }, 'ClickHouse refused rows for good; they are dead-lettered and the rest of their insert is stored');
    await this.produceDeadLetters([letter]);
    this.metrics.deadLetters.inc({ code: 'VIGIL_ERR_CLICKHOUSE_REJECTED' });
    this.metrics.rejectedItems.inc({ code: 'VIGIL_ERR_CLICKHOUSE_REJECTED' }, refused.length);
    this.counts.deadLetters++;
  }

  /** One VIGIL_ERR_LIMIT_CARDINALITY letter per shard and task: counts, and the first refused points. */
  private async sendRefused(work: Work, shard: number, refused: RefusedPoints): Promise<void> {
    const { topic, partition } = work.range;
    const tenant = refused.tenant;
    const letter = cardinalityLetter(refused, shard, tenant === undefined ? this.config.limits.maxSeriesPerShard : this.config.tenants.maxSeriesPerShard, topic, partition);
    await this.produceDeadLetters([letter]);
    const code = tenant === undefined ? 'VIGIL_ERR_LIMIT_CARDINALITY' : 'VIGIL_ERR_LIMIT_TENANT_SERIES';
    this.metrics.deadLetters.inc({ code });
    this.metrics.rejectedItems.inc({ code }, refused.points);
    if (tenant === undefined) this.metrics.seriesRefused.inc({ shard: String(shard) }, refused.series);
    else this.metrics.tenantSeriesRefused.inc({ tenant }, refused.series);
    this.counts.deadLetters++;
  }

  private retryPolicy(onRetry: RetryPolicy['onRetry']): RetryPolicy {
    return {
      initialMs: this.config.pipeline.retryInitialMs,
      maxMs: this.config.pipeline.retryMaxMs,
      deadline: () => (this.fatal ? 0 : this.deadline),
      ...(onRetry ? { onRetry } : {}),
    };
  }

  private sinkFailed(sink: 'clickhouse' | 'dlq' | 'alerts' | 'repartition', err: unknown, retryInMs: number | null): void {
    this.metrics.sinkErrors.inc({ sink, code: isVigilError(err) ? err.code : sink === 'clickhouse' ? 'VIGIL_ERR_CLICKHOUSE_UNAVAILABLE' : 'VIGIL_ERR_KAFKA_PRODUCE' });
    this.readiness.set(sink === 'clickhouse' ? 'clickhouse' : 'kafka', false);
    if (retryInMs !== null) this.log.warn({ err, sink, retryInMs }, 'sink write failed; retrying');
  }

  /**
   * Retries a Kafka-side output with backoff until it succeeds, the pipeline dies, or the shutdown
   * deadline passes (then it rejects: what it owed stays uncommitted).
   */
  private async retrySink(sink: 'dlq' | 'alerts' | 'repartition', op: () => Promise<unknown>): Promise<void> {
    try {
      await retry(op, this.retryPolicy((err, retryInMs) => this.sinkFailed(sink, err, retryInMs)));
    } catch (err) {
      if (this.fatal) throw this.fatal;
      this.sinkFailed(sink, err, null);
      throw new VigilError('VIGIL_ERR_SHUTDOWN_TIMEOUT', `${sink} write still failing at the shutdown deadline`, { cause: err });
    }
    this.readiness.set('kafka', true);
  }

  /** Per partition of this generation, the offset before which every output was stored by an earlier run. */
  private readonly storedUpTo = (key: string): number => this.partitions.get(key)?.storedUpTo ?? -1;

  /** Asks for a commit; the requests of one turn of the event loop make one. */
  private commit(): void {
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    setImmediate(() => {
      this.commitScheduled = false;
      void this.committer.commit(this.storedUpTo);
    });
  }

  /**
   * True while input waits (lag or work in flight) and no commit has moved for `stallMs`: the
   * pipeline is alive but not making progress (readiness reports it).
   */
  stalled(stallMs: number): boolean {
    const now = Date.now();
    if (this.consumer.lag === 0 && this.counts.inFlightBytes === 0) this.lastIdleAt = now;
    return now - Math.max(this.lastIdleAt, this.committer.lastProgressAt) > stallMs;
  }

  private setPaused(paused: boolean): void {
    this.consumer.pause(paused);
    this.log.info({ inFlightBytes: this.counts.inFlightBytes, paused }, paused ? 'backpressure: partitions paused' : 'backpressure: partitions resumed');
  }

  private die(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.log.error({ err }, 'fatal pipeline error; exiting without committing unfinished work');
    this.onFatal(err);
  }

  /**
   * After a drain: every owned partition's unsaved series state (models.stateIntervalSeconds) is
   * written, and its commit released to what the rollups alone still hold; otherwise the next start
   * would re-read and judge again up to that interval of buckets. A partition whose state could
   * not be written keeps its hold: its replay is longer, never wrong.
   */
  private async saveSeriesState(): Promise<void> {
    if (!this.shards.rollups) return;
    const epoch = this.committer.epoch;
    const owned = [...this.partitions.values()].filter((state) => state.epoch === epoch);
    await Promise.all(
      owned.map(async (state) => {
        const { topic, partition } = state;
        try {
          const out = shardOutputs();
          let held: HeldOffset | null = null;
          await Promise.all(
            Array.from({ length: this.shards.count }, (_, shard) =>
              this.shards.run(shard, this.shards.task(shard, 'save', topic, partition, emptyBatch(), state.maxTsMs, state.maxTsMs)).then((r) => {
                out.add(r);
                held = lowerHold(held, r.held);
              }),
            ),
          );
          const rows = out.state();
          if (rows && !(await this.alertQueue.durable())) throw new Error('an alert publish was given up');
          if (rows) await this.inserts.write('detector_state', rows.body, rows.rows);
          this.committer.release(epoch, topic, partition, held);
        } catch (err) {
          this.log.warn({ err, topic, partition }, 'series state not written at shutdown: the next start judges its unsaved buckets again');
        }
      }),
    );
  }

  /**
   * Stops fetching, drains what is in flight, commits, leaves the group. False when the drain did
   * not finish by `timeoutMs` (retries give up at that deadline).
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    this.deadline = this.fatal ? Date.now() : Date.now() + timeoutMs;
    clearInterval(this.idleTimer);
    this.consumer.quiesce();
    this.inserts.drain();
    while ((this.counts.inFlightBytes > 0 || this.inserts.pending > 0) && Date.now() < this.deadline && !this.fatal) await sleep(20);
    // Drained: everything in flight stored, not merely given up at the deadline.
    const drained = this.counts.inFlightBytes === 0 && this.inserts.pending === 0 && this.abandoned === 0 && !this.fatal;
    if (drained) await this.saveSeriesState();
    await this.inserts.close();
    if (drained) {
      await this.committer.commit(this.storedUpTo);
      await this.committer.settled();
    }
    await this.consumer.disconnect(Math.max(1000, this.deadline - Date.now()));
    return drained;
  }
}

