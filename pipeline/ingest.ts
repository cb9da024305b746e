import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { ClickHouseSink, InsertTable } from '../sinks/clickhouse/index.js';
import { DLQ_HEADERS, type DeadLetter, type DeadLetterProducer } from '../sinks/kafka/dlq.js';
import { SKIPPED, type IngestResult, type IngestTask } from '../workers/ingest-task.js';
import { batchBuffers, emptyBatch, stateKey, type HeldOffset, type ModelSettings, type RollupSettings, type ShardResult, type ShardTask } from '../workers/shard-task.js';
import type { VigilConfig } from '../core/config/index.js';
import { isVigilError, VigilError, type ErrorCode } from '../core/errors.js';
import { retry } from '../core/retry.js';
import type { Readiness } from './http.js';
import type { Logger } from '../core/log.js';
import type { Metrics } from './metrics.js';
import { Committer, parseCommitMetadata, partitionKey } from './commit.js';
import { concat, InsertBatcher } from '../sinks/clickhouse/index.js';
import type { OffsetRange } from './offsets.js';
import type { Alerting } from './alerts/index.js';
import type { Transition } from '../workers/alerts/evaluator.js';
import type { ShardedPool } from './pool.js';

/** One worker task's worth of messages and the outputs owed before its offsets may move. */
interface Work {
  /** The consumer group generation it was fetched in (Committer.epoch). */
  epoch: number;
  range: OffsetRange;
  messages: KafkaMessage[];
  bytes: number;
  startedAt: number;
  /** Each output's acknowledgement: the points insert, the dead letters, rollup and anomaly inserts, alert events. */
  outputs: Promise<void>[];
  /** Set when the ingest task returned; shard shares wait for the partition's earlier tasks. */
  result?: IngestResult;
  /** The partition's highest event time after this task (recorded with a commit). */
  maxAfterMs: number;
  /** The lowest bucket offset the shards still held after this task (null: none). */
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

/** Per partition and generation, in offset order: works whose shard shares wait for earlier ones, the event-time maximum so far. */
interface PartitionState {
  topic: string;
  partition: number;
  epoch: number;
  queue: Work[];
  maxTsMs: number;
  lastMessageAt: number;
  /** Messages before this offset had every output stored by an earlier run: not written again. */
  storedUpTo: number;
  /** Next offset not yet dispatched in this generation: a re-delivered message below it is skipped. */
  nextOffset: number;
  /** Messages behind the partition's end at the last fetch: a partition with lag is not idle. */
  lag: number;
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

export { commitMetadata, parseCommitMetadata, type CommitMeta } from './commit.js';

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
  readonly stats: IngestStats = {
    messages: 0,
    points: 0,
    rowsInserted: 0,
    rollupRows: 0,
    anomalyRows: 0,
    anomalies: 0,
    deadLetters: 0,
    lag: 0,
    inFlightBytes: 0,
    paused: false,
    rebalances: 0,
    consumerCrashes: 0,
  };
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private readonly committer: Committer;
  private readonly assigned = new Map<string, number[]>();
  private readonly lagByPartition = new Map<string, number>();
  /** Partitions of the current generation. */
  private readonly partitions = new Map<string, PartitionState>();
  /** Seeding of a partition's watermark from its commit metadata (once per generation). */
  private readonly seeding = new Map<string, Promise<PartitionState | null>>();
  /** Shard state reset and alert state restored for the current generation; batches wait for it. */
  private assignmentReady: Promise<void> = Promise.resolve();
  private readonly rollupSettings: RollupSettings | null;
  private readonly modelSettings: ModelSettings | null;
  private readonly inserts: InsertBatcher;
  private commitScheduled = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Wall time after which retries give up (set by stop()). */
  private deadline = Infinity;
  /** Ingest tasks handed to the pool and not yet returned. */
  private tasksInFlight = 0;
  private readonly maxTasks: number;
  private fatal: Error | undefined;
  /** Last time nothing waited (no lag, nothing in flight): a stall is measured from there or from the last commit. */
  private lastIdleAt = Date.now();
  /** Wall time of the last completed fetch, and whether a rebalance is under way (no idle closes then). */
  private lastFetchAt = 0;
  private rebalancing = false;

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
    this.committer = new Committer({ commitOffsets: (offsets) => this.consumer.commitOffsets(offsets) }, log);
    const gzip = config.clickhouse.compression === 'gzip';
    this.inserts = new InsertBatcher({
      maxRows: config.pipeline.insertMaxRows,
      lingerMs: config.pipeline.insertLingerMs,
      retryInitialMs: config.pipeline.retryInitialMs,
      retryMaxMs: config.pipeline.retryMaxMs,
      // Points bodies are gzip-compressed by the workers when clickhouse.compression asks for it.
      insert: (table, body) => this.sink.insert(table, body, gzip && table === 'points'),
      deadline: () => (this.fatal ? 0 : this.deadline),
      onRetry: (err, retryInMs) => {
        this.metrics.sinkErrors.inc({ sink: 'clickhouse', code: isVigilError(err) ? err.code : 'VIGIL_ERR_CLICKHOUSE_UNAVAILABLE' });
        this.readiness.set('clickhouse', false);
        this.log.warn({ err, sink: 'clickhouse', retryInMs }, 'sink write failed; retrying');
      },
      onStored: (table, rows, seconds) => {
        this.readiness.set('clickhouse', true);
        this.metrics.insertSeconds.observe({ table }, seconds);
        this.metrics.rowsInserted.inc({ table }, rows);
        if (table === 'points') this.stats.rowsInserted += rows;
        else if (table === 'rollups') this.stats.rollupRows += rows;
        else if (table === 'anomalies') this.stats.anomalyRows += rows;
      },
    });
    const { GROUP_JOIN, CRASH, DISCONNECT, FETCH, REBALANCING } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, (e) => this.onAssignment(e.payload.memberAssignment));
    this.consumer.on(REBALANCING, () => {
      this.rebalancing = true;
      // Nothing fetched from here on belongs to the old generation; what is durable is committed
      // while the broker still takes the old generation's commits.
      this.log.info('consumer group rebalancing');
      void this.committer.commit((key) => this.partitions.get(key)?.storedUpTo ?? -1);
    });
    this.consumer.on(FETCH, () => {
      this.lastFetchAt = Date.now();
      this.readiness.set('kafka', true);
    });
    this.consumer.on(CRASH, (e) => {
      this.stats.consumerCrashes++;
      this.metrics.consumerCrashes.inc({ restart: String(e.payload.restart) });
      this.readiness.set('kafka', false);
      this.log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
      // kafkajs restarts the consumer itself for retriable errors; otherwise this process can no
      // longer consume and exits for its supervisor to restart it.
      if (!e.payload.restart && !this.stopping) this.die(new VigilError('VIGIL_ERR_KAFKA_CONSUMER', `the Kafka consumer stopped: ${e.payload.error.message}`, { cause: e.payload.error }));
    });
    this.consumer.on(DISCONNECT, () => this.readiness.set('kafka', false));
  }

  async start(): Promise<void> {
    const { kafka, pipeline } = this.config;
    await this.admin.connect();
    await this.consumer.connect();
    const topics = kafka.topicPattern ? [new RegExp(kafka.topicPattern)] : [...kafka.topics];
    await this.consumer.subscribe({ topics, fromBeginning: kafka.fromBeginning });
    if (this.rollupSettings) {
      this.idleTimer = setInterval(() => {
        this.closeIdlePartitions();
        if (!this.stopping) void this.publishAlerts([]);
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
   * A (re)join of the consumer group: a new generation. kafkajs re-delivers every assigned
   * partition, kept or new, from its committed offset, so every partition starts over exactly as
   * after a restart: offsets and partition state forgotten, the shard threads' series state
   * dropped (behind the tasks already queued for them), the firing alerts restored from the
   * alerts table. Work of the old generation still finishes, but moves no offset and reaches no
   * shard.
   */
  private onAssignment(assignment: Record<string, number[]>): void {
    const epoch = this.committer.reset();
    this.rebalancing = false;
    this.stats.rebalances++;
    this.metrics.rebalances.inc();
    this.assigned.clear();
    for (const [topic, partitions] of Object.entries(assignment)) this.assigned.set(topic, [...partitions]);
    this.partitions.clear();
    this.seeding.clear();
    for (const key of [...this.lagByPartition.keys()]) {
      const [topic, partition] = splitKey(key);
      if (!this.assigned.get(topic)?.includes(partition)) this.lagByPartition.delete(key);
    }
    for (const topic of this.assigned.keys()) this.updateLag(topic);
    this.readiness.set('kafka', true);
    this.log.info({ assignment, generation: epoch }, 'joined consumer group');
    const previous = this.assignmentReady;
    this.assignmentReady = (async () => {
      await previous;
      const alerting = this.alerting;
      let seeds: Awaited<ReturnType<Alerting['restore']>> | null = null;
      if (alerting) await this.retry('alerts', async () => void (seeds = await alerting.restore())).catch(() => undefined);
      await Promise.all(Array.from({ length: this.pool.shards }, (_, shard) => this.pool.runShard(shard, resetTask(seeds), [])));
      await this.restoreDetectorState(assignment);
    })().catch((err: unknown) => this.die(new VigilError('VIGIL_ERR_WORKER_FAILED', `resetting shard state after a rebalance failed: ${(err as Error).message}`, { cause: err })));
    if (this.stats.paused) this.setPaused(true);
  }

  /**
   * Detector state of the assigned partitions' series, read back from `detector_state` and handed
   * to their shards before the generation's first data: scores continue where the last owner (or
   * this process before a restart) left them, instead of warming up again.
   */
  private async restoreDetectorState(assignment: Record<string, number[]>): Promise<void> {
    const settings = this.modelSettings;
    if (!settings) return;
    const key = stateKey(settings);
    const perShard = Array.from({ length: this.pool.shards }, () => ({ ids: [] as bigint[], states: [] as Uint8Array[], bytes: 0 }));
    for (const [topic, partitions] of Object.entries(assignment)) {
      const rows = await retry(() => this.sink.readDetectorState(topic, partitions, settings.widthMs / 1000, key), {
        initialMs: this.config.pipeline.retryInitialMs,
        maxMs: this.config.pipeline.retryMaxMs,
        deadline: () => (this.fatal ? 0 : this.deadline),
        onRetry: (err, retryInMs) => this.log.warn({ err, retryInMs }, 'reading detector state failed; retrying'),
      });
      for (const r of rows) {
        const s = perShard[Number(r.id % BigInt(this.pool.shards))] as (typeof perShard)[number];
        s.ids.push(r.id);
        s.states.push(r.state);
        s.bytes += r.state.length;
      }
    }
    let restored = 0;
    await Promise.all(
      perShard.map((s, shard) => {
        if (s.ids.length === 0) return undefined;
        restored += s.ids.length;
        const data = new Uint8Array(s.bytes);
        const bounds = new Uint32Array(s.ids.length * 2);
        let pos = 0;
        s.states.forEach((b, i) => {
          bounds[2 * i] = pos;
          data.set(b, pos);
          pos += b.length;
          bounds[2 * i + 1] = pos;
        });
        const task: ShardTask = { ...resetTask(null), kind: 'restore', models: settings, restore: { ids: BigUint64Array.from(s.ids), bounds, data } };
        return this.pool.runShard(shard, task, [data.buffer, bounds.buffer] as ArrayBuffer[]);
      }),
    );
    if (restored > 0) this.log.info({ series: restored }, 'detector state restored');
  }

  /**
   * The partition's state in the current generation, its watermark seeded from the committed
   * offset's metadata: a replay starts from the same event-time maximum the crashed run (or the
   * previous owner) had at that offset. Null when the generation changed meanwhile.
   */
  private partitionState(topic: string, partition: number): Promise<PartitionState | null> {
    const key = partitionKey(topic, partition);
    let seeding = this.seeding.get(key);
    if (!seeding) {
      const epoch = this.committer.epoch;
      seeding = (async () => {
        await this.assignmentReady;
        const [committed] = await this.admin.fetchOffsets({ groupId: this.config.kafka.groupId, topics: [topic] });
        const entry = committed?.partitions.find((p) => p.partition === partition);
        const meta = parseCommitMetadata(entry && Number(entry.offset) >= 0 ? entry.metadata : null);
        if (epoch !== this.committer.epoch) return null;
        const state: PartitionState = { topic, partition, epoch, queue: [], maxTsMs: meta.maxEventTimeMs, lastMessageAt: Date.now(), storedUpTo: meta.storedUpTo, nextOffset: -1, lag: 0 };
        this.partitions.set(key, state);
        return state;
      })();
      this.seeding.set(key, seeding);
      // A failed lookup is retried by the next batch.
      seeding.catch(() => this.seeding.get(key) === seeding && this.seeding.delete(key));
    }
    return seeding;
  }

  private async eachBatch({ batch, isRunning, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    if (this.stopping || !isRunning() || isStale() || batch.messages.length === 0) return;
    const { topic, partition } = batch;
    const { pipeline } = this.config;
    const state = await this.partitionState(topic, partition);
    if (!state || state.epoch !== this.committer.epoch || this.stopping || isStale()) return;
    state.lastMessageAt = Date.now();
    state.lag = Number(batch.offsetLag());
    this.lagByPartition.set(partitionKey(topic, partition), state.lag);
    this.updateLag(topic);

    let chunk: KafkaMessage[] = [];
    let chunkBytes = 0;
    const flush = async (): Promise<boolean> => {
      // Checked synchronously right before dispatching, so concurrent batches cannot overfill
      // the pool's finite queues.
      while (this.tasksInFlight >= this.maxTasks) await this.pauseForTasks(heartbeat);
      if (state.epoch !== this.committer.epoch || this.stopping || isStale()) return false;
      if (chunk.length > 0) this.dispatch(state, chunk, chunkBytes);
      chunk = [];
      chunkBytes = 0;
      return true;
    };
    for (const message of batch.messages) {
      // kafkajs may hand a range again (a retried fetch); what this generation dispatched is in flight.
      if (Number(message.offset) < state.nextOffset) continue;
      const size = message.value?.length ?? 0;
      if (chunk.length > 0 && (chunk.length >= pipeline.taskMaxMessages || chunkBytes + size > pipeline.taskMaxBytes)) {
        if (!(await flush())) return;
      }
      chunk.push(message);
      chunkBytes += size;
    }
    if (!(await flush())) return;
    if (this.stats.inFlightBytes > pipeline.maxInFlightBytes && !this.stats.paused) this.setPaused(true);
  }

  private async pauseForTasks(heartbeat: () => Promise<void>): Promise<void> {
    await sleep(5);
    await heartbeat();
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
    state.nextOffset = range.last + 1;
    const work: Work = { epoch: state.epoch, range, messages, bytes, startedAt: performance.now(), outputs: [], maxAfterMs: -Infinity, held: null };
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
        if (Number(m.offset) >= state.storedUpTo) {
          mainRejects.push({
            message: i,
            code: 'VIGIL_ERR_DECODE_TOO_LARGE',
            reason: `message of ${m.value.length} bytes exceeds pipeline.maxMessageBytes = ${pipeline.maxMessageBytes}`,
          });
        }
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
    work.result = result;
    // Fetched before a rebalance: the new generation re-reads it from the committed offset, so
    // it writes nothing (dispatchShards lets it go in order).
    if (work.epoch === this.committer.epoch) {
      this.metrics.pointsProcessed.inc(result.rows);
      this.stats.points += result.rows;
      const rejects: Rejection[] = [...mainRejects, ...result.rejects];
      if (rejects.length > 0) work.outputs.push(this.sendDeadLetters(work, rejects));
      if (result.rows > 0) work.outputs.push(this.enqueueInsert('points', result.body, result.rows));
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
      const before = state.maxTsMs;
      if (result.maxTsMs > state.maxTsMs) state.maxTsMs = result.maxTsMs;
      work.maxAfterMs = state.maxTsMs;
      const shares = result.shardBatches.map((batch, shard) => ({ batch, shard })).filter(({ batch }) => this.rollupSettings || batch.count > 0);
      if (shares.length === 0) {
        this.seal(work);
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
          for (const insert of out.inserts()) work.outputs.push(this.enqueueInsert(insert.table, insert.body, insert.rows));
          // Transitions of a generation that ended are not the lifecycle's to see: whoever owns the
          // partition now re-derives them from its committed offset, after restoring the firing
          // alerts (a late firing here would be a second one for the same episode).
          const alerts = work.epoch === this.committer.epoch ? this.publishAlerts(out.transitions) : null;
          if (alerts) work.outputs.push(alerts);
          this.seal(work);
        });
      }
    }
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
    this.stats.inFlightBytes -= work.bytes;
    this.metrics.inFlightBytes.set(this.stats.inFlightBytes);
    this.metrics.batchSeconds.observe((performance.now() - work.startedAt) / 1000);
    if (this.stats.paused && !this.stopping && this.stats.inFlightBytes <= this.config.pipeline.maxInFlightBytes / 2) this.setPaused(false);
    if (durable) this.commit();
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
   * (minus the allowed lateness). Only once its earlier work has reached the shards, and only
   * when the partition is idle rather than unread: it was caught up at its last fetch, and the
   * consumer kept fetching for the idle time without getting anything for it. While a rebalance
   * is under way, partitions are paused by backpressure, or fetches stall (a broker down), nothing
   * is idle: buckets then close by their data, as in a run without the pause.
   */
  private closeIdlePartitions(): void {
    if (!this.rollupSettings || this.stopping || this.rebalancing || this.stats.paused) return;
    const now = Date.now();
    const idleMs = this.config.rollups.idleTimeoutMs;
    for (const state of this.partitions.values()) {
      if (state.queue.length > 0 || state.lag > 0 || now - state.lastMessageAt < idleMs || this.lastFetchAt - state.lastMessageAt < idleMs) continue;
      const watermark = now - this.config.rollups.allowedLatenessMs;
      for (let shard = 0; shard < this.pool.shards; shard++) {
        const task = this.shardTask(shard, 'idle', state, emptyBatch(), state.maxTsMs, state.maxTsMs, watermark);
        // Idle closes only emit (the buckets stay held), so they never move a commit; their rows
        // are queued before any later task's, and inserts are FIFO.
        this.runShard(shard, task, (r) => {
          if (state.epoch !== this.committer.epoch) return;
          const out = shardOutputs();
          out.add(r);
          for (const insert of out.inserts()) void this.enqueueInsert(insert.table, insert.body, insert.rows).catch(() => undefined);
          void this.publishAlerts(out.transitions)?.catch(() => undefined);
        });
      }
    }
  }

  /**
   * Turns shard transitions (plus any loose events: repeats, resolves of removed rules) into alert
   * events and makes them durable, retrying; null when there is nothing to publish.
   */
  private publishAlerts(transitions: readonly Transition[]): Promise<void> | null {
    const alerting = this.alerting;
    if (!alerting) return null;
    const alerts = alerting.handle(transitions);
    if (alerts.length === 0) return null;
    return this.retry('alerts', () => alerting.publish(alerts));
  }

  private enqueueInsert(table: InsertTable, body: Uint8Array, rows: number): Promise<void> {
    return this.inserts.write(table, body, rows);
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
  }

  /**
   * Retries a sink operation with exponential backoff until it succeeds, the pipeline dies, or
   * the shutdown deadline passes (then it rejects: what it owed stays uncommitted).
   */
  private async retry(sink: 'clickhouse' | 'dlq' | 'alerts', op: () => Promise<unknown>): Promise<void> {
    const check = sink === 'clickhouse' ? 'clickhouse' : 'kafka';
    try {
      await retry(op, {
        initialMs: this.config.pipeline.retryInitialMs,
        maxMs: this.config.pipeline.retryMaxMs,
        deadline: () => (this.fatal ? 0 : this.deadline),
        onRetry: (err, retryInMs) => {
          this.metrics.sinkErrors.inc({ sink, code: isVigilError(err) ? err.code : 'VIGIL_ERR_KAFKA_PRODUCE' });
          this.readiness.set(check, false);
          this.log.warn({ err, sink, retryInMs }, 'sink write failed; retrying');
        },
      });
    } catch (err) {
      if (this.fatal) throw this.fatal;
      this.metrics.sinkErrors.inc({ sink, code: isVigilError(err) ? err.code : 'VIGIL_ERR_KAFKA_PRODUCE' });
      throw new VigilError('VIGIL_ERR_SHUTDOWN_TIMEOUT', `${sink} write still failing at the shutdown deadline`, { cause: err });
    }
    this.readiness.set(check, true);
  }

  /** Asks for a commit; the requests of one turn of the event loop make one. */
  private commit(): void {
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    setImmediate(() => {
      this.commitScheduled = false;
      void this.committer.commit((key) => this.partitions.get(key)?.storedUpTo ?? -1);
    });
  }

  /**
   * True while input waits (lag or work in flight) and no commit has moved for `stallMs`: the
   * pipeline is alive but not making progress (readiness reports it).
   */
  stalled(stallMs: number): boolean {
    const now = Date.now();
    if (this.stats.lag === 0 && this.stats.inFlightBytes === 0) this.lastIdleAt = now;
    return now - Math.max(this.lastIdleAt, this.committer.lastProgressAt) > stallMs;
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

  /**
   * Stops fetching, drains what is in flight, commits, leaves the group. False when the drain did
   * not finish by `timeoutMs` (retries give up at that deadline).
   */
  async stop(timeoutMs: number): Promise<boolean> {
    this.stopping = true;
    this.deadline = this.fatal ? Date.now() : Date.now() + timeoutMs;
    clearInterval(this.idleTimer);
    this.setPaused(true);
    this.inserts.drain();
    while ((this.stats.inFlightBytes > 0 || this.inserts.pending > 0) && Date.now() < this.deadline && !this.fatal) await sleep(20);
    const drained = this.stats.inFlightBytes === 0 && this.inserts.pending === 0 && !this.fatal;
    await this.inserts.close();
    if (drained) {
      await this.committer.commit((key) => this.partitions.get(key)?.storedUpTo ?? -1);
      await this.committer.settled();
    }
    // Leaving the group needs the broker; past the deadline nobody waits for it.
    const left = Math.max(1000, this.deadline - Date.now());
    await withTimeout(this.consumer.disconnect(), left);
    await withTimeout(this.admin.disconnect(), 1000);
    return drained;
  }
}

function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf('/');
  return [key.slice(0, i), Number(key.slice(i + 1))];
}

function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    p.then(
      () => (clearTimeout(t), resolve()),
      () => (clearTimeout(t), resolve()),
    );
  });
}

/** The shard task that drops a shard's series state at a new generation (seeded with the firing alerts). */
function resetTask(seeds: { fingerprint: string; startsAtMs: number }[] | null): ShardTask {
  return {
    kind: 'reset',
    topic: '',
    partition: -1,
    partitionMaxBeforeMs: -Infinity,
    partitionMaxAfterMs: -Infinity,
    idleWatermarkMs: -Infinity,
    batch: emptyBatch(),
    nowMs: Date.now(),
    seriesIdleMs: 0,
    rollups: null,
    models: null,
    alerts: null,
    alertWidthMs: 0,
    seeds,
  };
}

/** The insert bodies of one task's shard results, gathered per table. */
function shardOutputs() {
  const parts = { rollups: [] as Uint8Array[], anomalies: [] as Uint8Array[], detector_state: [] as Uint8Array[] };
  const rows = { rollups: 0, anomalies: 0, detector_state: 0 };
  const transitions: Transition[] = [];
  return {
    transitions,
    add(r: ShardResult): void {
      transitions.push(...r.alerts);
      parts.rollups.push(r.rollupBody);
      rows.rollups += r.rollupRows;
      parts.anomalies.push(r.anomalyBody);
      rows.anomalies += r.anomalyRows;
      parts.detector_state.push(r.stateBody);
      rows.detector_state += r.stateRows;
    },
    inserts(): { table: InsertTable; body: Uint8Array; rows: number }[] {
      // detector_state last: a state is never durable before the anomalies rows it has scored.
      return (['rollups', 'anomalies', 'detector_state'] as const).filter((t) => rows[t] > 0).map((table) => ({ table, body: concat(parts[table]), rows: rows[table] }));
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
