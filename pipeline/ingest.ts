import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { ClickHouseSink } from '../sinks/clickhouse/index.js';
import { DLQ_HEADERS, type DeadLetter, type DeadLetterProducer } from '../sinks/kafka/dlq.js';
import { SKIPPED, type IngestResult, type IngestTask } from '../workers/ingest-task.js';
import { batchBuffers } from '../workers/shard-task.js';
import type { ShardedPool } from './pool.js';
import type { VigilConfig } from './config/index.js';
import { isVigilError, VigilError, type ErrorCode } from './errors.js';
import type { Readiness } from './http.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { OffsetTracker, type OffsetRange } from './offsets.js';

/** One worker task's worth of messages and what is still owed before its offsets may move. */
interface Work {
  range: OffsetRange;
  messages: KafkaMessage[];
  bytes: number;
  startedAt: number;
  /** Outputs not yet acknowledged: the ClickHouse insert, the dead letters, the shard stage. */
  pending: number;
  /** Set when the ingest task returned; shard shares wait for the partition's earlier tasks. */
  result?: IngestResult;
}

interface Rejection {
  message: number;
  code: ErrorCode;
  reason: string;
  line?: number;
  element?: number;
  bytes?: Uint8Array;
}

export interface IngestStats {
  messages: number;
  points: number;
  rowsInserted: number;
  deadLetters: number;
  lag: number;
  inFlightBytes: number;
  paused: boolean;
}

/**
 * The ingestion path (DESIGN.md §1, §7): a kafkajs consumer hands each fetched batch, cut into
 * tasks, to the worker pool; results are grouped into large ClickHouse inserts (one in flight at
 * a time) and their dead letters produced with acks=all; offsets are committed only over ranges
 * whose every output is acknowledged. The main thread parses no points.
 */
export class Ingestor {
  readonly stats: IngestStats = { messages: 0, points: 0, rowsInserted: 0, deadLetters: 0, lag: 0, inFlightBytes: 0, paused: false };
  private readonly consumer: Consumer;
  private readonly tracker = new OffsetTracker();
  private readonly assigned = new Map<string, number[]>();
  private readonly lagByPartition = new Map<string, number>();
  /** Per partition: works in offset order whose shard shares are not yet dispatched, and the max event time before them. */
  private readonly shardOrder = new Map<string, { queue: Work[]; maxTsMs: number }>();
  private pendingInserts: { work: Work; result: IngestResult }[] = [];
  private pendingRows = 0;
  private firstPendingAt = 0;
  private wake: (() => void) | undefined;
  private flusher: Promise<void> | undefined;
  private commitChain: Promise<void> = Promise.resolve();
  private stopping = false;
  /** Tasks handed to the pool and not yet returned; kept below the pool's maxQueue. */
  private tasksInFlight = 0;
  private readonly maxTasks: number;
  private fatal: Error | undefined;

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
  ) {
    this.maxTasks = config.pipeline.maxTasksInFlight;
    const maxBytes = Math.max(1 << 20, Math.min(10 << 20, Math.floor(config.pipeline.maxInFlightBytes / 4)));
    this.consumer = kafka.consumer({
      groupId: config.kafka.groupId,
      sessionTimeout: config.kafka.sessionTimeoutMs,
      maxWaitTimeInMs: config.kafka.maxWaitTimeMs,
      maxBytes,
      maxBytesPerPartition: Math.min(maxBytes, Math.max(config.pipeline.taskMaxBytes, 1 << 20)),
      allowAutoTopicCreation: false,
    });
    const { GROUP_JOIN, CRASH, DISCONNECT, FETCH } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, (e) => {
      this.assigned.clear();
      for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) this.assigned.set(topic, [...partitions]);
      this.tracker.retain(this.assigned);
      this.readiness.set('kafka', true);
      this.log.info({ assignment: e.payload.memberAssignment }, 'joined consumer group');
      if (this.stats.paused) this.setPaused(true);
    });
    this.consumer.on(FETCH, () => this.readiness.set('kafka', true));
    this.consumer.on(CRASH, (e) => {
      this.readiness.set('kafka', false);
      this.log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
    });
    this.consumer.on(DISCONNECT, () => this.readiness.set('kafka', false));
  }

  async start(): Promise<void> {
    const { kafka, pipeline } = this.config;
    await this.consumer.connect();
    const topics = kafka.topicPattern ? [new RegExp(kafka.topicPattern)] : [...kafka.topics];
    await this.consumer.subscribe({ topics, fromBeginning: kafka.fromBeginning });
    this.flusher = this.flushLoop();
    await this.consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: Math.max(1, pipeline.workers * 2),
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  private async eachBatch({ batch, isRunning, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    if (this.stopping || !isRunning() || isStale() || batch.messages.length === 0) return;
    const { topic, partition } = batch;
    const { pipeline } = this.config;
    const lag = Number(batch.offsetLag());
    this.lagByPartition.set(`${topic}/${partition}`, lag);
    this.updateLag(topic);

    let chunk: KafkaMessage[] = [];
    let chunkBytes = 0;
    for (const message of batch.messages) {
      const size = message.value?.length ?? 0;
      if (chunk.length > 0 && (chunk.length >= pipeline.taskMaxMessages || chunkBytes + size > pipeline.taskMaxBytes)) {
        while (this.tasksInFlight >= this.maxTasks) await this.pauseForTasks(heartbeat);
        this.dispatch(topic, partition, chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
      }
      chunk.push(message);
      chunkBytes += size;
    }
    while (this.tasksInFlight >= this.maxTasks) await this.pauseForTasks(heartbeat);
    this.dispatch(topic, partition, chunk, chunkBytes);
    if (this.stats.inFlightBytes > pipeline.maxInFlightBytes && !this.stats.paused) this.setPaused(true);
  }

  /**
   * Waits a moment, heartbeating. Callers re-check `tasksInFlight` synchronously right before
   * dispatching, so concurrent batches can never overfill the pool's finite queue.
   */
  private async pauseForTasks(heartbeat: () => Promise<void>): Promise<void> {
    await sleep(5);
    await heartbeat();
  }

  private dispatch(topic: string, partition: number, messages: KafkaMessage[], bytes: number): void {
    const { pipeline, kafka } = this.config;
    const range = this.tracker.register({
      topic,
      partition,
      first: Number((messages[0] as KafkaMessage).offset),
      last: Number((messages[messages.length - 1] as KafkaMessage).offset),
    });
    const work: Work = { range, messages, bytes, startedAt: performance.now(), pending: 3 };
    const key = `${topic}/${partition}`;
    let order = this.shardOrder.get(key);
    if (!order) this.shardOrder.set(key, (order = { queue: [], maxTsMs: -Infinity }));
    order.queue.push(work);
    this.stats.inFlightBytes += bytes;
    this.stats.messages += messages.length;
    this.metrics.inFlightBytes.set(this.stats.inFlightBytes);
    this.metrics.messagesReceived.inc({ topic }, messages.length);
    this.metrics.bytesReceived.inc({ topic }, bytes);

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
        mainRejects.push({
          message: i,
          code: 'VIGIL_ERR_DECODE_TOO_LARGE',
          reason: `message of ${m.value.length} bytes exceeds pipeline.maxMessageBytes = ${pipeline.maxMessageBytes}`,
        });
      } else if (m.value) {
        data.set(m.value, pos);
        pos += m.value.length;
      }
      bounds[2 * i + 1] = pos;
    });
    const task: IngestTask = {
      topic,
      partition,
      format: kafka.topicFormats[topic] ?? 'auto',
      data,
      bounds,
      offsets,
      timestamps,
      nowMs: Date.now(),
      maxFutureMs: pipeline.maxFutureMs,
      compression: this.config.clickhouse.compression,
      shards: this.pool.shards,
    };
    this.tasksInFlight++;
    this.pool
      .runIngest(task, [data.buffer, bounds.buffer, offsets.buffer, timestamps.buffer] as ArrayBuffer[])
      .finally(() => this.tasksInFlight--)
      .then(
        (result: IngestResult) => this.onResult(work, result, mainRejects, order),
        (err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `ingest task for ${topic}/${partition} ${range.first}-${range.last} failed: ${(err as Error).message}`, { cause: err })),
      );
  }

  /**
   * Hands the shard shares of a partition's finished ingest tasks to their shards, strictly in
   * offset order (ingest tasks finish in any order), with the partition's max event time before
   * each task: what per-partition watermarks need.
   */
  private dispatchShards(order: { queue: Work[]; maxTsMs: number }): void {
    while (order.queue.length > 0 && (order.queue[0] as Work).result) {
      const work = order.queue.shift() as Work;
      const result = work.result as IngestResult;
      work.result = undefined;
      const shares = result.shardBatches
        .map((batch, shard) => ({ batch, shard }))
        .filter(({ batch }) => batch.count > 0);
      let left = shares.length;
      const { topic, partition } = work.range;
      for (const { batch, shard } of shares) {
        this.pool
          .runShard(shard, { topic, partition, partitionMaxBeforeMs: order.maxTsMs, batch, nowMs: Date.now(), seriesIdleMs: this.config.pipeline.seriesIdleTimeoutMs }, batchBuffers(batch))
          .then(
            (stats) => {
              this.metrics.seriesActive.set({ shard: String(shard) }, stats.series);
              this.metrics.stateBytes.set({ shard: String(shard) }, stats.stateBytes);
              if (stats.evicted > 0) this.metrics.seriesEvicted.inc(stats.evicted);
              if (--left === 0) this.partDone(work);
            },
            (err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `shard ${shard} task for ${topic}/${partition} failed: ${(err as Error).message}`, { cause: err })),
          );
      }
      if (shares.length === 0) this.partDone(work);
      if (result.maxTsMs > order.maxTsMs) order.maxTsMs = result.maxTsMs;
    }
  }

  private onResult(work: Work, result: IngestResult, mainRejects: Rejection[], order: { queue: Work[]; maxTsMs: number }): void {
    this.metrics.workerTaskSeconds.observe(result.workerMs / 1000);
    work.result = result;
    this.dispatchShards(order);
    this.metrics.pointsProcessed.inc(result.rows);
    this.stats.points += result.rows;
    const rejects: Rejection[] = [...mainRejects, ...result.rejects];
    if (rejects.length > 0) void this.sendDeadLetters(work, rejects);
    else this.partDone(work);
    if (result.rows === 0) {
      this.partDone(work);
      return;
    }
    if (this.pendingInserts.length === 0) this.firstPendingAt = performance.now();
    this.pendingInserts.push({ work, result });
    this.pendingRows += result.rows;
    if (this.pendingRows >= this.config.pipeline.insertMaxRows) this.wake?.();
  }

  private async sendDeadLetters(work: Work, rejects: Rejection[]): Promise<void> {
    const letters: DeadLetter[] = rejects.map((r) => {
      const m = work.messages[r.message] as KafkaMessage;
      const headers: IHeaders = {
        ...(m.headers ?? {}),
        [DLQ_HEADERS.code]: r.code,
        [DLQ_HEADERS.reason]: r.reason,
        [DLQ_HEADERS.topic]: work.range.topic,
        [DLQ_HEADERS.partition]: String(work.range.partition),
        [DLQ_HEADERS.offset]: m.offset,
      };
      if (r.line !== undefined) headers[DLQ_HEADERS.line] = String(r.line);
      if (r.element !== undefined) headers[DLQ_HEADERS.element] = String(r.element);
      const value = r.bytes ? Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength) : (m.value ?? Buffer.alloc(0));
      return { key: m.key, value, headers };
    });
    await this.retry('dlq', () => this.dlq.send(letters));
    for (const r of rejects) this.metrics.deadLetters.inc({ code: r.code });
    this.stats.deadLetters += rejects.length;
    this.partDone(work);
  }

  /** Retries a sink operation with exponential backoff until it succeeds or the pipeline dies. */
  private async retry(sink: 'clickhouse' | 'dlq', op: () => Promise<void>): Promise<void> {
    const { retryInitialMs, retryMaxMs } = this.config.pipeline;
    let delay = retryInitialMs;
    const check = sink === 'clickhouse' ? 'clickhouse' : 'kafka';
    for (;;) {
      try {
        await op();
        this.readiness.set(check, true);
        return;
      } catch (err) {
        if (this.fatal) throw this.fatal;
        const code = isVigilError(err) ? err.code : 'VIGIL_ERR_KAFKA_PRODUCE';
        this.metrics.sinkErrors.inc({ sink, code });
        this.readiness.set(check, false);
        this.log.warn({ err, sink, retryInMs: delay }, 'sink write failed; retrying');
        await sleep(delay);
        delay = Math.min(retryMaxMs, delay * 2);
      }
    }
  }

  private async flushLoop(): Promise<void> {
    const { insertMaxRows, insertLingerMs } = this.config.pipeline;
    while (!(this.stopping && this.pendingInserts.length === 0 && this.stats.inFlightBytes === 0)) {
      if (this.fatal) return;
      const age = performance.now() - this.firstPendingAt;
      const due = this.pendingInserts.length > 0 && (this.pendingRows >= insertMaxRows || age >= insertLingerMs || this.stopping);
      if (!due) {
        const wait = this.pendingInserts.length > 0 ? Math.max(1, insertLingerMs - age) : insertLingerMs || 50;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.wake = () => (clearTimeout(t), resolve());
        });
        this.wake = undefined;
        continue;
      }
      let rows = 0;
      let take = 0;
      while (take < this.pendingInserts.length && (take === 0 || rows + (this.pendingInserts[take] as { result: IngestResult }).result.rows <= insertMaxRows)) {
        rows += (this.pendingInserts[take] as { result: IngestResult }).result.rows;
        take++;
      }
      const batch = this.pendingInserts.splice(0, take);
      this.pendingRows -= rows;
      if (this.pendingInserts.length > 0) this.firstPendingAt = performance.now();
      const body = concat(batch.map((b) => b.result.body));
      const t0 = performance.now();
      try {
        await this.retry('clickhouse', () => this.sink.insertPoints(body, this.config.clickhouse.compression === 'gzip'));
      } catch {
        return; // fatal: the process is going down without committing
      }
      this.metrics.insertSeconds.observe({ table: 'points' }, (performance.now() - t0) / 1000);
      this.metrics.rowsInserted.inc({ table: 'points' }, rows);
      this.stats.rowsInserted += rows;
      for (const b of batch) this.partDone(b.work);
      this.commit();
    }
  }

  private partDone(work: Work): void {
    if (--work.pending > 0) return;
    this.tracker.done(work.range);
    this.stats.inFlightBytes -= work.bytes;
    this.metrics.inFlightBytes.set(this.stats.inFlightBytes);
    this.metrics.batchSeconds.observe((performance.now() - work.startedAt) / 1000);
    if (this.stats.paused && this.stats.inFlightBytes <= this.config.pipeline.maxInFlightBytes / 2) this.setPaused(false);
    if (this.pendingInserts.length === 0) this.commit();
  }

  /** Commits what became committable; commits are serialised so offsets only move forward. */
  private commit(): void {
    this.commitChain = this.commitChain.then(async () => {
      const offsets = this.tracker.takeCommittable();
      if (offsets.length === 0) return;
      try {
        await this.consumer.commitOffsets(offsets);
      } catch (err) {
        this.tracker.commitFailed(offsets);
        this.log.warn({ err }, 'offset commit failed; will retry with the next commit');
      }
    });
  }

  private setPaused(paused: boolean): void {
    const topics = [...this.assigned.entries()].map(([topic, partitions]) => ({ topic, partitions }));
    if (paused) this.consumer.pause(topics);
    else this.consumer.resume(topics);
    this.stats.paused = paused;
    this.metrics.pausedPartitions.set(paused ? topics.reduce((n, t) => n + t.partitions.length, 0) : 0);
    this.log.info({ inFlightBytes: this.stats.inFlightBytes, paused }, paused ? 'backpressure: partitions paused' : 'backpressure: partitions resumed');
  }

  private updateLag(topic: string): void {
    let sum = 0;
    let all = 0;
    for (const [k, v] of this.lagByPartition) {
      all += v;
      if (k.startsWith(`${topic}/`)) sum += v;
    }
    this.metrics.consumerLag.set({ topic }, sum);
    this.stats.lag = all;
  }

  private die(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.log.error({ err }, 'fatal pipeline error; exiting without committing unfinished work');
    this.onFatal(err);
  }

  /** Stops fetching, drains what is in flight, commits, leaves the group. False on timeout. */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    this.setPaused(true);
    this.wake?.();
    const deadline = this.fatal ? 0 : Date.now() + timeoutMs;
    while ((this.stats.inFlightBytes > 0 || this.pendingInserts.length > 0) && Date.now() < deadline && !this.fatal) {
      this.wake?.();
      await sleep(20);
    }
    const drained = this.stats.inFlightBytes === 0 && this.pendingInserts.length === 0;
    if (drained) {
      this.wake?.();
      await this.flusher;
      this.commit();
      await this.commitChain;
    }
    await this.consumer.disconnect();
    return drained;
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
