import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { ClickHouseSink, InsertTable } from '../sinks/clickhouse/index.js';
import { DLQ_HEADERS, type DeadLetter, type DeadLetterProducer } from '../sinks/kafka/dlq.js';
import { SKIPPED, type IngestResult, type IngestTask } from '../workers/ingest-task.js';
import { batchBuffers, emptyBatch, type HeldOffset, type ModelSettings, type RollupSettings, type ShardResult, type ShardTask } from '../workers/shard-task.js';
import type { VigilConfig } from './config/index.js';
import { isVigilError, VigilError, type ErrorCode } from './errors.js';
import type { Readiness } from './http.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { OffsetTracker, type OffsetRange } from './offsets.js';
import type { Alerting } from './alerts/index.js';
import type { Transition } from '../workers/alerts.js';
import type { ShardedPool } from './pool.js';

/** One worker task's worth of messages and what is still owed before its offsets may move. */
interface Work {
  range: OffsetRange;
  messages: KafkaMessage[];
  bytes: number;
  startedAt: number;
  /** Outputs not yet acknowledged: the points insert, the dead letters, the shard stage (and its rollup rows). */
  pending: number;
  /** Set when the ingest task returned; shard shares wait for the partition's earlier tasks. */
  result?: IngestResult;
  /** The partition's highest event time after this task (recorded with a commit). */
  maxAfterMs: number;
  /** The lowest bucket offset the shards still held after this task (null: none). */
  held: HeldOffset | null;
}

/** What a commit needs to know of the last durable task before it. */
interface DoneMeta {
  maxAfterMs: number;
  held: HeldOffset | null;
}

interface Rejection {
  message: number;
  code: ErrorCode;
  reason: string;
  line?: number;
  element?: number;
  bytes?: Uint8Array;
}

/** A body waiting for its insert; `work` is absent for rows of idle closes. */
interface PendingInsert {
  table: InsertTable;
  body: Uint8Array;
  rows: number;
  work: Work | undefined;
}

/** Per partition, in offset order: works whose shard shares wait for earlier ones, the event-time maximum so far. */
interface PartitionState {
  topic: string;
  partition: number;
  queue: Work[];
  maxTsMs: number;
  lastMessageAt: number;
  /** Messages before this offset had every output stored by an earlier run: not written again. */
  storedUpTo: number;
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
}

/**
 * Kafka commit metadata, per partition: the highest event time before the committed offset (the
 * watermark base a replay resumes with) and the offset up to which every output is already
 * stored (a replay re-reads from the committed offset to rebuild bucket state, but does not
 * write those messages' points and dead letters again).
 */
export interface CommitMeta {
  maxEventTimeMs: number;
  storedUpTo: number;
}

export function commitMetadata(meta: CommitMeta): string {
  return JSON.stringify({ v: 1, maxEventTimeMs: Number.isFinite(meta.maxEventTimeMs) ? meta.maxEventTimeMs : null, storedUpTo: meta.storedUpTo });
}

export function parseCommitMetadata(metadata: string | null | undefined): CommitMeta {
  const none = { maxEventTimeMs: -Infinity, storedUpTo: -1 };
  if (!metadata) return none;
  try {
    const parsed = JSON.parse(metadata) as { maxEventTimeMs?: number | null; storedUpTo?: number };
    return {
      maxEventTimeMs: typeof parsed.maxEventTimeMs === 'number' ? parsed.maxEventTimeMs : -Infinity,
      storedUpTo: typeof parsed.storedUpTo === 'number' ? parsed.storedUpTo : -1,
    };
  } catch {
    return none;
  }
}

/**
 * The ingestion path (DESIGN.md §1, §4, §7): a kafkajs consumer hands each fetched batch, cut
 * into tasks, to the worker pool; each task's points go to their shards (rollup buckets) in
 * offset order; points and rollup rows are grouped into large ClickHouse inserts (one flush at a
 * time) and dead letters produced with acks=all. An offset is committed only when every output of
 * the messages before it is acknowledged and no shard still holds a bucket that began before it;
 * the commit records the partition's watermark base so a replay rebuilds the same rows.
 * The main thread parses no points.
 */
export class Ingestor {
  readonly stats: IngestStats = { messages: 0, points: 0, rowsInserted: 0, rollupRows: 0, anomalyRows: 0, anomalies: 0, deadLetters: 0, lag: 0, inFlightBytes: 0, paused: false };
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private readonly tracker = new OffsetTracker<DoneMeta>();
  private readonly assigned = new Map<string, number[]>();
  private readonly lagByPartition = new Map<string, number>();
  private readonly partitions = new Map<string, PartitionState>();
  /** Seeding of a partition's watermark from its commit metadata (once per assignment). */
  private readonly seeding = new Map<string, Promise<void>>();
  /** Last committed offset and stored-up-to offset per partition. */
  private readonly committed = new Map<string, { offset: number; storedUpTo: number }>();
  private readonly rollupSettings: RollupSettings | null;
  private readonly modelSettings: ModelSettings | null;
  private pendingInserts: PendingInsert[] = [];
  private pendingRows = 0;
  private firstPendingAt = 0;
  private wake: (() => void) | undefined;
  private flusher: Promise<void> | undefined;
  private commitChain: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Ingest tasks handed to the pool and not yet returned. */
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
    private readonly alerting: Alerting | null = null,
  ) {
    this.maxTasks = config.pipeline.maxTasksInFlight;
    const r = config.rollups;
    this.rollupSettings = r.enabled ? { widthsMs: r.widthsSeconds.map((s) => s * 1000), latenessMs: r.allowedLatenessMs, retentionMs: r.lateRetentionMs } : null;
    this.modelSettings = this.rollupSettings ? modelSettings(config) : null;
    const maxBytes = Math.max(1 << 20, Math.min(10 << 20, Math.floor(config.pipeline.maxInFlightBytes / 4)));
    this.admin = kafka.admin();
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
      for (const [key, p] of this.partitions) {
        if (!this.assigned.get(p.topic)?.includes(p.partition)) {
          this.partitions.delete(key);
          this.committed.delete(key);
        }
      }
      this.seeding.clear();
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
    await this.admin.connect();
    await this.consumer.connect();
    const topics = kafka.topicPattern ? [new RegExp(kafka.topicPattern)] : [...kafka.topics];
    await this.consumer.subscribe({ topics, fromBeginning: kafka.fromBeginning });
    this.flusher = this.flushLoop();
    if (this.rollupSettings) {
      this.idleTimer = setInterval(() => {
        this.closeIdlePartitions();
        if (!this.stopping) this.publishAlerts([], undefined);
      }, Math.min(1000, this.config.rollups.idleTimeoutMs));
      this.idleTimer.unref();
    }
    await this.consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: Math.max(1, pipeline.workers * 2),
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  /**
   * The partition's state, its watermark seeded from the committed offset's metadata: a replay
   * starts from the same event-time maximum the crashed run had at that offset.
   */
  private async partitionState(topic: string, partition: number): Promise<PartitionState> {
    const key = `${topic}/${partition}`;
    let seeding = this.seeding.get(key);
    if (!seeding) {
      seeding = (async () => {
        let meta = parseCommitMetadata(null);
        const [committed] = await this.admin.fetchOffsets({ groupId: this.config.kafka.groupId, topics: [topic] });
        const entry = committed?.partitions.find((p) => p.partition === partition);
        if (entry && Number(entry.offset) >= 0) meta = parseCommitMetadata(entry.metadata);
        if (!this.partitions.has(key)) {
          this.partitions.set(key, { topic, partition, queue: [], maxTsMs: meta.maxEventTimeMs, lastMessageAt: Date.now(), storedUpTo: meta.storedUpTo });
        }
      })();
      this.seeding.set(key, seeding);
    }
    await seeding;
    return this.partitions.get(key) as PartitionState;
  }

  private async eachBatch({ batch, isRunning, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    if (this.stopping || !isRunning() || isStale() || batch.messages.length === 0) return;
    const { topic, partition } = batch;
    const { pipeline } = this.config;
    const state = await this.partitionState(topic, partition);
    state.lastMessageAt = Date.now();
    this.lagByPartition.set(`${topic}/${partition}`, Number(batch.offsetLag()));
    this.updateLag(topic);

    let chunk: KafkaMessage[] = [];
    let chunkBytes = 0;
    for (const message of batch.messages) {
      const size = message.value?.length ?? 0;
      if (chunk.length > 0 && (chunk.length >= pipeline.taskMaxMessages || chunkBytes + size > pipeline.taskMaxBytes)) {
        // Checked synchronously right before dispatching, so concurrent batches cannot overfill
        // the pool's finite queues.
        while (this.tasksInFlight >= this.maxTasks) await this.pauseForTasks(heartbeat);
        this.dispatch(state, chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
      }
      chunk.push(message);
      chunkBytes += size;
    }
    while (this.tasksInFlight >= this.maxTasks) await this.pauseForTasks(heartbeat);
    this.dispatch(state, chunk, chunkBytes);
    if (this.stats.inFlightBytes > pipeline.maxInFlightBytes && !this.stats.paused) this.setPaused(true);
  }

  private async pauseForTasks(heartbeat: () => Promise<void>): Promise<void> {
    await sleep(5);
    await heartbeat();
  }

  private dispatch(state: PartitionState, messages: KafkaMessage[], bytes: number): void {
    const { pipeline, kafka } = this.config;
    const { topic, partition } = state;
    const range = this.tracker.register({
      topic,
      partition,
      first: Number((messages[0] as KafkaMessage).offset),
      last: Number((messages[messages.length - 1] as KafkaMessage).offset),
    });
    const work: Work = { range, messages, bytes, startedAt: performance.now(), pending: 3, maxAfterMs: -Infinity, held: null };
    state.queue.push(work);
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
        if (Number(m.offset) >= state.storedUpTo) mainRejects.push({
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
      storeFromOffset: state.storedUpTo,
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
    this.metrics.pointsProcessed.inc(result.rows);
    this.stats.points += result.rows;
    work.result = result;
    const rejects: Rejection[] = [...mainRejects, ...result.rejects];
    if (rejects.length > 0) void this.sendDeadLetters(work, rejects);
    else this.partDone(work);
    if (result.rows === 0) this.partDone(work);
    else this.enqueueInsert({ table: 'points', body: result.body, rows: result.rows, work });
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
      const before = state.maxTsMs;
      if (result.maxTsMs > state.maxTsMs) state.maxTsMs = result.maxTsMs;
      work.maxAfterMs = state.maxTsMs;
      const shares = result.shardBatches.map((batch, shard) => ({ batch, shard })).filter(({ batch }) => this.rollupSettings || batch.count > 0);
      if (shares.length === 0) {
        this.partDone(work);
        continue;
      }
      let left = shares.length;
      const out = shardOutputs();
      for (const { batch, shard } of shares) {
        const task = this.shardTask(shard, 'data', state, batch, before, state.maxTsMs);
        this.runShard(shard, task, (r) => {
          out.add(r);
          if (r.held && (!work.held || r.held.offset < work.held.offset)) work.held = r.held;
          if (--left > 0) return;
          const inserts = out.inserts(work);
          this.publishAlerts(out.transitions, work);
          if (inserts.length === 0) this.partDone(work);
          work.pending += Math.max(0, inserts.length - 1);
          for (const insert of inserts) this.enqueueInsert(insert);
        });
      }
    }
  }

  private shardTask(shard: number, kind: ShardTask['kind'], state: PartitionState, batch: ShardTask['batch'], beforeMs: number, afterMs: number, idleWatermarkMs = -Infinity): ShardTask {
    return {
      kind,
      topic: state.topic,
      partition: state.partition,
      partitionMaxBeforeMs: beforeMs,
      partitionMaxAfterMs: afterMs,
      idleWatermarkMs,
      batch,
      nowMs: Date.now(),
      seriesIdleMs: this.config.pipeline.seriesIdleTimeoutMs,
      rollups: this.rollupSettings,
      models: this.modelSettings,
      alerts: this.rollupSettings && this.alerting ? this.alerting.settingsFor(shard) : null,
      alertWidthMs: this.alerting?.widthMs ?? 0,
    };
  }

  private runShard(shard: number, task: ShardTask, then: (r: ShardResult) => void): void {
    this.pool.runShard(shard, task, batchBuffers(task.batch)).then(
      (r) => {
        this.metrics.seriesActive.set({ shard: String(shard) }, r.series);
        this.metrics.stateBytes.set({ shard: String(shard) }, r.stateBytes);
        if (r.evicted > 0) this.metrics.seriesEvicted.inc(r.evicted);
        if (r.closed > 0) this.metrics.bucketsClosed.inc(r.closed);
        if (r.late > 0) this.metrics.latePoints.inc(r.late);
        if (r.counterOutOfOrder > 0) this.metrics.counterOutOfOrder.inc(r.counterOutOfOrder);
        if (r.scored > 0) this.metrics.bucketsScored.inc(r.scored);
        if (r.flagged > 0) this.metrics.anomaliesFlagged.inc(r.flagged);
        this.stats.anomalies += r.flagged;
        then(r);
      },
      (err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `shard ${shard} task for ${task.topic}/${task.partition} failed: ${(err as Error).message}`, { cause: err })),
    );
  }

  /**
   * A partition without messages for rollups.idleTimeoutMs closes its buckets by wall time
   * (minus the allowed lateness). Only once its earlier work has reached the shards.
   */
  private closeIdlePartitions(): void {
    if (!this.rollupSettings || this.stopping) return;
    const now = Date.now();
    for (const state of this.partitions.values()) {
      if (state.queue.length > 0 || now - state.lastMessageAt < this.config.rollups.idleTimeoutMs) continue;
      const watermark = now - this.config.rollups.allowedLatenessMs;
      for (let shard = 0; shard < this.pool.shards; shard++) {
        const task = this.shardTask(shard, 'idle', state, emptyBatch(), state.maxTsMs, state.maxTsMs, watermark);
        // Idle closes only emit (the buckets stay held), so they never move a commit; their rows
        // are queued before any later task's, and inserts are FIFO.
        this.runShard(shard, task, (r) => {
          const out = shardOutputs();
          out.add(r);
          for (const insert of out.inserts(undefined)) this.enqueueInsert(insert);
          this.publishAlerts(out.transitions, undefined);
        });
      }
    }
  }

  /**
   * Turns shard transitions (plus any loose events: repeats, resolves of removed rules) into alert
   * events and makes them durable, retrying. With `work`, the task's offsets wait for them too
   * (acks=all topic, alerts table); idle closes and the idle tick pass none.
   */
  private publishAlerts(transitions: readonly Transition[], work: Work | undefined): void {
    const alerting = this.alerting;
    if (!alerting) return;
    const alerts = alerting.handle(transitions);
    if (alerts.length === 0) return;
    if (work) work.pending++;
    void this.retry('alerts', () => alerting.publish(alerts)).then(
      () => work && this.partDone(work),
      () => undefined,
    );
  }

  private enqueueInsert(entry: PendingInsert): void {
    if (this.pendingInserts.length === 0) this.firstPendingAt = performance.now();
    this.pendingInserts.push(entry);
    this.pendingRows += entry.rows;
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
  private async retry(sink: 'clickhouse' | 'dlq' | 'alerts', op: () => Promise<void>): Promise<void> {
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
      while (take < this.pendingInserts.length && (take === 0 || rows + (this.pendingInserts[take] as PendingInsert).rows <= insertMaxRows)) {
        rows += (this.pendingInserts[take] as PendingInsert).rows;
        take++;
      }
      const batch = this.pendingInserts.splice(0, take);
      this.pendingRows -= rows;
      if (this.pendingInserts.length > 0) this.firstPendingAt = performance.now();
      // Points before rollups and anomalies: a derived row is never visible without its points.
      for (const table of ['points', 'rollups', 'anomalies'] as const) {
        const parts = batch.filter((b) => b.table === table);
        if (parts.length === 0) continue;
        const body = concat(parts.map((b) => b.body));
        const tableRows = parts.reduce((n, b) => n + b.rows, 0);
        const t0 = performance.now();
        try {
          await this.retry('clickhouse', () => this.sink.insert(table, body, table === 'points' && this.config.clickhouse.compression === 'gzip'));
        } catch {
          return; // fatal: the process is going down without committing
        }
        this.metrics.insertSeconds.observe({ table }, (performance.now() - t0) / 1000);
        this.metrics.rowsInserted.inc({ table }, tableRows);
        if (table === 'points') this.stats.rowsInserted += tableRows;
        else if (table === 'rollups') this.stats.rollupRows += tableRows;
        else this.stats.anomalyRows += tableRows;
      }
      for (const b of batch) if (b.work) this.partDone(b.work);
      this.commit();
    }
  }

  private partDone(work: Work): void {
    if (--work.pending > 0) return;
    this.tracker.done(work.range, { maxAfterMs: work.maxAfterMs, held: work.held });
    this.stats.inFlightBytes -= work.bytes;
    this.metrics.inFlightBytes.set(this.stats.inFlightBytes);
    this.metrics.batchSeconds.observe((performance.now() - work.startedAt) / 1000);
    if (this.stats.paused && this.stats.inFlightBytes <= this.config.pipeline.maxInFlightBytes / 2) this.setPaused(false);
    if (this.pendingInserts.length === 0) this.commit();
  }

  /**
   * Commits what became committable: the tracker's position (every output before it durable),
   * held back to the first offset of any bucket the shards still held after that position's
   * last task, with the watermark base at the committed offset. The held state must be the one
   * as of the last durable task: a later task may already have released a bucket whose final row
   * is still waiting for its insert. Commits are serialised so offsets only move forward.
   */
  private commit(): void {
    this.commitChain = this.commitChain.then(async () => {
      const offsets: { topic: string; partition: number; offset: string; metadata: string }[] = [];
      for (const pos of this.tracker.positions()) {
        const key = `${pos.topic}/${pos.partition}`;
        let offset = pos.offset;
        let maxBefore = pos.meta.maxAfterMs;
        const held = pos.meta.held;
        if (held && held.offset < offset) {
          offset = held.offset;
          maxBefore = held.maxBeforeMs;
        }
        const storedUpTo = Math.max(pos.offset, this.partitions.get(key)?.storedUpTo ?? -1);
        const last = this.committed.get(key) ?? { offset: -1, storedUpTo: -1 };
        if (offset > last.offset || storedUpTo > last.storedUpTo) {
          offsets.push({ topic: pos.topic, partition: pos.partition, offset: String(offset), metadata: commitMetadata({ maxEventTimeMs: maxBefore, storedUpTo }) });
        }
      }
      if (offsets.length === 0) return;
      try {
        await this.consumer.commitOffsets(offsets);
        for (const o of offsets) {
          this.committed.set(`${o.topic}/${o.partition}`, { offset: Number(o.offset), storedUpTo: parseCommitMetadata(o.metadata).storedUpTo });
        }
      } catch (err) {
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
    clearInterval(this.idleTimer);
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
    await this.admin.disconnect();
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

/** The insert bodies of one task's shard results, gathered per table. */
function shardOutputs() {
  const parts = { rollups: [] as Uint8Array[], anomalies: [] as Uint8Array[] };
  const rows = { rollups: 0, anomalies: 0 };
  const transitions: Transition[] = [];
  return {
    transitions,
    add(r: ShardResult): void {
      transitions.push(...r.alerts);
      parts.rollups.push(r.rollupBody);
      rows.rollups += r.rollupRows;
      parts.anomalies.push(r.anomalyBody);
      rows.anomalies += r.anomalyRows;
    },
    inserts(work: Work | undefined): PendingInsert[] {
      return (['rollups', 'anomalies'] as const).filter((t) => rows[t] > 0).map((table) => ({ table, body: concat(parts[table]), rows: rows[table], work }));
    },
  };
}

/** What the shard threads need to score closed buckets (models/ensemble.ts). */
export function modelSettings(config: VigilConfig): ModelSettings | null {
  const m = config.models;
  if (!m.enabled) return null;
  return {
    widthMs: m.widthSeconds * 1000,
    lstmModelDir: m.lstmModelDir,
    minScore: m.minScore,
    ensemble: {
      detectors: [...m.detectors],
      threshold: m.threshold,
      topK: m.agreement,
      seasonal: { periodMs: m.seasonalPeriodSeconds * 1000, slots: m.seasonalSlots },
      robust: { window: m.robustWindow },
      ewma: { alpha: m.ewmaAlpha },
      iforest: { trees: m.forestTrees, samples: m.forestSamples, refitEvery: m.forestRefitEvery, reservoir: Math.max(m.forestSamples * 16, 4096), seed: 1 },
    },
  };
}
