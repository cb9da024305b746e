import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { VigilConfig } from '../core/config/index.js';
import { VigilError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { repartitionTopicOf } from './repartition.js';
import { parseCommitMetadata, partitionKey, type CommitMeta, type OffsetCommit } from './commit.js';
import type { Readiness } from './http.js';
import type { Metrics } from './metrics.js';

/**
 * The consumer stage: the kafkajs consumer of the group, its rebalance hooks, fetched batches cut
 * into tasks, pause and resume, lag. It knows nothing of what a task becomes; the ingestor does
 * (`ConsumerHandlers`).
 *
 * Generations: every (re)join of the group is one. kafkajs then re-delivers every assigned
 * partition, kept or new, from its committed offset, so a partition's consumption state (its
 * position in this generation, its commit metadata) lives for one generation; `onGeneration`
 * prepares the downstream stages, and no batch is handed on before it has resolved.
 */
export interface ConsumerHandlers<P> {
  /**
   * A new generation and its assignment, called synchronously at the join (before any batch of the
   * generation, and before any later completion of the old one's work); batches of the generation
   * wait until the returned promise resolves.
   */
  onGeneration(generation: number, assignment: Record<string, number[]>): Promise<void>;
  /** The first batch of a partition in a generation: its state, seeded from the commit metadata. */
  openPartition(topic: string, partition: number, generation: number, meta: CommitMeta): P;
  /** One task's messages, in offset order. */
  dispatch(partition: P, messages: KafkaMessage[], bytes: number): void;
  /** False while work in flight is at its limit (the next task waits). */
  hasRoom(): boolean;
  onFatal(err: Error): void;
}

/** A partition's consumption in one generation. */
interface Consumed<P> {
  generation: number;
  state: P;
  /** Next offset not yet dispatched: a re-delivered message below it is skipped. */
  nextOffset: number;
  lastMessageAt: number;
  /** Messages behind the partition's end at the last fetch. */
  lag: number;
  /** A fetched batch is being handed on (it may wait for room in the pool). */
  dispatching: boolean;
}

export class PartitionConsumer<P> {
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private readonly assigned = new Map<string, number[]>();
  private readonly consumed = new Map<string, Consumed<P>>();
  private readonly opening = new Map<string, Promise<Consumed<P> | null>>();
  private generationReady: Promise<unknown> = Promise.resolve();
  private gen = 0;
  private rebalancing = false;
  /** Waiting for the rebalance under way to end (settled at the next join, or at disconnect). */
  private rejoined: { promise: Promise<void>; resolve: () => void } | null = null;
  private lastFetchAt = 0;
  private stopping = false;
  paused = false;
  /** Messages behind the end over every assigned partition, as of their last fetches. */
  lag = 0;
  rebalances = 0;
  crashes = 0;

  constructor(
    private readonly config: VigilConfig,
    kafka: Kafka,
    private readonly handlers: ConsumerHandlers<P>,
    private readonly metrics: Metrics,
    private readonly readiness: Readiness,
    private readonly log: Logger,
  ) {
    const { pipeline } = config;
    const maxBytes = Math.max(1 << 20, Math.min(10 << 20, Math.floor(pipeline.maxInFlightBytes / 4)));
    this.admin = kafka.admin();
    this.consumer = kafka.consumer({
      groupId: config.kafka.groupId,
      sessionTimeout: config.kafka.sessionTimeoutMs,
      maxWaitTimeInMs: config.kafka.maxWaitTimeMs,
      maxBytes,
      maxBytesPerPartition: Math.min(maxBytes, Math.max(pipeline.taskMaxBytes, 1 << 20)),
      allowAutoTopicCreation: false,
    });
    const { GROUP_JOIN, CRASH, DISCONNECT, FETCH, REBALANCING } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, (e) => this.onJoin(e.payload.memberAssignment));
    this.consumer.on(REBALANCING, () => {
      this.rebalancing = true;
      this.log.info('consumer group rebalancing');
    });
    this.consumer.on(FETCH, () => {
      this.lastFetchAt = Date.now();
      this.readiness.set('kafka', true);
    });
    this.consumer.on(CRASH, (e) => {
      this.crashes++;
      this.metrics.consumerCrashes.inc({ restart: String(e.payload.restart) });
      this.readiness.set('kafka', false);
      this.log.error({ err: e.payload.error, restart: e.payload.restart }, 'consumer crashed');
      // kafkajs restarts the consumer itself for retriable errors; otherwise this process can no
      // longer consume and exits for its supervisor to restart it.
      if (!e.payload.restart && !this.stopping) {
        this.handlers.onFatal(new VigilError('VIGIL_ERR_KAFKA_CONSUMER', `the Kafka consumer stopped: ${e.payload.error.message}`, { cause: e.payload.error }));
      }
    });
    this.consumer.on(DISCONNECT, () => this.readiness.set('kafka', false));
  }

  /**
   * Resolves once no rebalance is under way: at once outside one; else when this member has
   * rejoined the group (a new generation) or disconnects. From kafkajs' REBALANCING, emitted as it
   * goes to rejoin, the generation it runs in is over for the group: the others may already own
   * its partitions.
   */
  settledGeneration(): Promise<void> {
    if (!this.rebalancing) return Promise.resolve();
    if (!this.rejoined) {
      let resolve = () => {};
      const promise = new Promise<void>((r) => (resolve = r));
      this.rejoined = { promise, resolve };
    }
    return this.rejoined.promise;
  }

  private settle(): void {
    this.rejoined?.resolve();
    this.rejoined = null;
  }

  /** The current generation (one per join of the group). */
  get generation(): number {
    return this.gen;
  }

  async start(): Promise<void> {
    const { kafka, pipeline } = this.config;
    await this.admin.connect();
    await this.consumer.connect();
    const topics: (string | RegExp)[] = kafka.topicPattern ? [new RegExp(kafka.topicPattern)] : [...kafka.topics];
    await this.consumer.subscribe({ topics, fromBeginning: kafka.fromBeginning });
    // The repartition topic is read by the same group: its partitions are the second stage. From
    // the earliest offset whatever kafka.fromBeginning says: what is on it was forwarded by source
    // offsets already committed, and would otherwise never be applied.
    if (kafka.repartition !== 'never') await this.consumer.subscribe({ topics: [repartitionTopicOf(this.config)], fromBeginning: true });
    await this.consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: Math.max(1, pipeline.workers * 2),
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  /** Each partition's end (the offset its next message gets). */
  async endOffsets(topic: string): Promise<Map<number, number>> {
    return new Map((await this.admin.fetchTopicOffsets(topic)).map((e) => [e.partition, Number(e.high)]));
  }

  commitOffsets(offsets: OffsetCommit[]): Promise<void> {
    return this.consumer.commitOffsets(offsets);
  }

  private onJoin(assignment: Record<string, number[]>): void {
    const generation = ++this.gen;
    this.rebalancing = false;
    this.rebalances++;
    this.metrics.rebalances.inc();
    this.assigned.clear();
    for (const [topic, partitions] of Object.entries(assignment)) this.assigned.set(topic, [...partitions]);
    this.consumed.clear();
    this.opening.clear();
    this.updateLag();
    this.readiness.set('kafka', true);
    this.log.info({ assignment, generation }, 'joined consumer group');
    this.generationReady = this.handlers.onGeneration(generation, assignment);
    // After onGeneration began: the new epoch is set, so what waited sees its generation ended.
    this.settle();
    if (this.paused) this.pause(true);
  }

  /** The partition's consumption in the current generation (null when the generation changed meanwhile). */
  private open(topic: string, partition: number): Promise<Consumed<P> | null> {
    const key = partitionKey(topic, partition);
    let opening = this.opening.get(key);
    if (!opening) {
      const generation = this.gen;
      opening = (async () => {
        await this.generationReady;
        const [committed] = await this.admin.fetchOffsets({ groupId: this.config.kafka.groupId, topics: [topic] });
        const entry = committed?.partitions.find((p) => p.partition === partition);
        const meta = parseCommitMetadata(entry && Number(entry.offset) >= 0 ? entry.metadata : null);
        if (generation !== this.gen) return null;
        const c: Consumed<P> = { generation, state: this.handlers.openPartition(topic, partition, generation, meta), nextOffset: -1, lastMessageAt: Date.now(), lag: 0, dispatching: false };
        this.consumed.set(key, c);
        return c;
      })();
      this.opening.set(key, opening);
      // A failed lookup is retried by the next batch.
      opening.catch(() => this.opening.get(key) === opening && this.opening.delete(key));
    }
    return opening;
  }

  private async eachBatch({ batch, isRunning, isStale, heartbeat }: EachBatchPayload): Promise<void> {
    if (this.stopping || !isRunning() || isStale() || batch.messages.length === 0) return;
    const { topic, partition } = batch;
    const c = await this.open(topic, partition);
    const current = () => c !== null && c.generation === this.gen && !this.stopping && !isStale();
    if (!c || !current()) return;
    c.lastMessageAt = Date.now();
    c.lag = Number(batch.offsetLag());
    this.updateLag();

    const { taskMaxMessages, taskMaxBytes } = this.config.pipeline;
    let chunk: KafkaMessage[] = [];
    let chunkBytes = 0;
    const flush = async (): Promise<boolean> => {
      // Checked right before dispatching, so concurrent batches cannot overfill the pool's queues.
      while (!this.handlers.hasRoom()) {
        await sleep(5);
        await heartbeat();
      }
      if (!current()) return false;
      if (chunk.length > 0) {
        this.handlers.dispatch(c.state, chunk, chunkBytes);
        c.nextOffset = Number((chunk[chunk.length - 1] as KafkaMessage).offset) + 1;
      }
      chunk = [];
      chunkBytes = 0;
      return true;
    };
    c.dispatching = true;
    try {
      for (const message of batch.messages) {
        // kafkajs may hand a range again (a retried fetch); what this generation dispatched is in flight.
        if (Number(message.offset) < c.nextOffset) continue;
        const size = message.value?.length ?? 0;
        if (chunk.length > 0 && (chunk.length >= taskMaxMessages || chunkBytes + size > taskMaxBytes)) {
          if (!(await flush())) return;
        }
        chunk.push(message);
        chunkBytes += size;
      }
      await flush();
    } finally {
      c.dispatching = false;
    }
  }

  /**
   * Partitions of the current generation that are idle rather than unread: caught up at their last
   * fetch, and the consumer kept fetching for `idleMs` without getting anything for them, nor
   * still handing on a batch it got (one waiting for room in the pool holds messages not yet
   * dispatched). During a rebalance, under backpressure, or while fetches stall (a broker down),
   * none is.
   */
  idle(idleMs: number): P[] {
    if (this.rebalancing || this.paused || this.stopping) return [];
    const now = Date.now();
    const out: P[] = [];
    for (const c of this.consumed.values()) {
      if (c.generation !== this.gen || c.lag > 0 || c.dispatching || now - c.lastMessageAt < idleMs || this.lastFetchAt - c.lastMessageAt < idleMs) continue;
      out.push(c.state);
    }
    return out;
  }

  /**
   * Assigned partitions of `topics` with nothing to read: no message in the current generation,
   * and, as the broker says, no message between where the group resumes them and their end.
   */
  async emptyUnopened(topics: (topic: string) => boolean): Promise<{ topic: string; partition: number }[]> {
    const generation = this.gen;
    const unopened = () =>
      [...this.assigned].flatMap(([topic, partitions]) =>
        topics(topic) ? partitions.filter((partition) => !this.consumed.has(partitionKey(topic, partition)) && !this.opening.has(partitionKey(topic, partition))).map((partition) => ({ topic, partition })) : [],
      );
    if (this.rebalancing || this.stopping) return [];
    const out: { topic: string; partition: number }[] = [];
    for (const topic of new Set(unopened().map((c) => c.topic))) {
      const [ends, [committed]] = await Promise.all([this.admin.fetchTopicOffsets(topic), this.admin.fetchOffsets({ groupId: this.config.kafka.groupId, topics: [topic] })]);
      for (const end of ends) {
        const offset = Number(committed?.partitions.find((p) => p.partition === end.partition)?.offset ?? -1);
        const from = offset >= 0 ? offset : this.config.kafka.fromBeginning ? Number(end.low) : Number(end.high);
        if (Number(end.high) <= from) out.push({ topic, partition: end.partition });
      }
    }
    if (generation !== this.gen) return [];
    const still = new Set(unopened().map((c) => partitionKey(c.topic, c.partition)));
    return out.filter((c) => still.has(partitionKey(c.topic, c.partition)));
  }

  /** Pauses (backpressure) or resumes every assigned partition. */
  pause(paused: boolean): void {
    const topics = [...this.assigned.entries()].map(([topic, partitions]) => ({ topic, partitions }));
    if (paused) this.consumer.pause(topics);
    else this.consumer.resume(topics);
    this.paused = paused;
    this.metrics.pausedPartitions.set(paused ? topics.reduce((n, t) => n + t.partitions.length, 0) : 0);
  }

  private updateLag(): void {
    const byTopic = new Map<string, number>();
    for (const topic of this.assigned.keys()) byTopic.set(topic, 0);
    for (const [key, c] of this.consumed) {
      const topic = key.slice(0, key.lastIndexOf('/'));
      byTopic.set(topic, (byTopic.get(topic) ?? 0) + c.lag);
    }
    let all = 0;
    for (const [topic, lag] of byTopic) {
      this.metrics.consumerLag.set({ topic }, lag);
      all += lag;
    }
    this.lag = all;
  }

  /** Stops handing on batches (what is in flight stays the ingestor's to drain). */
  quiesce(): void {
    this.stopping = true;
    this.pause(true);
  }

  /** Leaves the group; past `timeoutMs` nobody waits for the broker. */
  async disconnect(timeoutMs: number): Promise<void> {
    this.rebalancing = false;
    this.settle();
    await withTimeout(this.consumer.disconnect(), timeoutMs);
    await withTimeout(this.admin.disconnect(), 1000);
  }
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
