import { EventEmitter } from 'node:events';
import type { EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../core/config/index.js';
import { rootLogger } from '../../../core/log.js';
import { commitMetadata, type CommitMeta } from '../../../pipeline/commit.js';
import { PartitionConsumer, type ConsumerHandlers } from '../../../pipeline/consumer.js';
import { Readiness } from '../../../pipeline/http.js';
import { createMetrics } from '../../../pipeline/metrics.js';

/**
 * The consumer stage's own logic (generations, task cutting, re-delivery, idleness) against a
 * stand-in for kafkajs' consumer that delivers exactly the batches and events a test gives it.
 * What kafkajs and the broker do is covered by the integration tests (scaleout, faults).
 */
const EVENTS = { GROUP_JOIN: 'join', REBALANCING: 'rebalancing', FETCH: 'fetch', CRASH: 'crash', DISCONNECT: 'disconnect' };

function fakeKafka(committed: { offset: string; metadata: string | null }) {
  const emitter = new EventEmitter();
  let eachBatch: ((p: EachBatchPayload) => Promise<void>) | undefined;
  const paused: string[] = [];
  const consumer = {
    events: EVENTS,
    on: (e: string, fn: (ev: unknown) => void) => emitter.on(e, fn),
    connect: async () => undefined,
    disconnect: async () => undefined,
    subscribe: async () => undefined,
    run: async (o: { eachBatch: (p: EachBatchPayload) => Promise<void> }) => void (eachBatch = o.eachBatch),
    pause: (t: { topic: string; partitions: number[] }[]) => paused.push(...t.flatMap((x) => x.partitions.map((p) => `${x.topic}/${p}`))),
    resume: () => (paused.length = 0),
    commitOffsets: async () => undefined,
  };
  const admin = { connect: async () => undefined, disconnect: async () => undefined, fetchOffsets: async () => [{ topic: 't', partitions: [{ partition: 0, ...committed }] }] };
  const kafka = { consumer: () => consumer, admin: () => admin } as unknown as Kafka;
  let stale = false;
  return {
    kafka,
    paused,
    join: (assignment: Record<string, number[]>) => emitter.emit('join', { payload: { memberAssignment: assignment } }),
    rebalancing: () => emitter.emit('rebalancing', {}),
    fetch: () => emitter.emit('fetch', {}),
    setStale: (v: boolean) => (stale = v),
    batch: (first: number, count: number, lag = 0) => {
      const messages = Array.from({ length: count }, (_, i) => ({ offset: String(first + i), value: Buffer.from('x'), timestamp: '0', key: null, headers: {} }) as unknown as KafkaMessage);
      const payload = { batch: { topic: 't', partition: 0, messages, offsetLag: () => String(lag) }, isRunning: () => true, isStale: () => stale, heartbeat: async () => undefined } as unknown as EachBatchPayload;
      return (eachBatch as (p: EachBatchPayload) => Promise<void>)(payload);
    },
  };
}

function setup(overrides: Record<string, unknown> = {}, committed = { offset: '-1', metadata: null as string | null }) {
  const config = loadConfig({ env: {}, overrides: { 'pipeline.taskMaxMessages': 4, ...overrides } });
  const k = fakeKafka(committed);
  const tasks: { generation: number; offsets: number[] }[] = [];
  const opened: CommitMeta[] = [];
  let ready: () => void = () => undefined;
  const generations: number[] = [];
  let room = true;
  const handlers: ConsumerHandlers<{ generation: number }> = {
    onGeneration: (generation) => {
      generations.push(generation);
      return new Promise<void>((r) => (ready = r));
    },
    openPartition: (_t, _p, generation, meta) => (opened.push(meta), { generation }),
    dispatch: (state, messages) => tasks.push({ generation: state.generation, offsets: messages.map((m) => Number(m.offset)) }),
    hasRoom: () => room,
    onFatal: (err) => {
      throw err;
    },
  };
  const c = new PartitionConsumer(config, k.kafka, handlers, createMetrics(), new Readiness(), rootLogger('silent'));
  return { c, k, tasks, opened, generations, ready: () => ready(), setRoom: (v: boolean) => (room = v) };
}

describe('PartitionConsumer', () => {
  it('cuts batches into tasks of taskMaxMessages, only once the generation is prepared, with the commit metadata of the partition', async () => {
    const { c, k, tasks, opened, generations, ready } = setup({}, { offset: '3', metadata: commitMetadata({ maxEventTimeMs: 1234, storedUpTo: 9 }) });
    await c.start();
    k.join({ t: [0] });
    expect(generations).toEqual([1]);
    const batch = k.batch(3, 10);
    await new Promise((r) => setTimeout(r, 10));
    expect(tasks).toEqual([]);
    ready();
    await batch;
    expect(opened).toEqual([{ maxEventTimeMs: 1234, storedUpTo: 9 }]);
    expect(tasks).toEqual([
      { generation: 1, offsets: [3, 4, 5, 6] },
      { generation: 1, offsets: [7, 8, 9, 10] },
      { generation: 1, offsets: [11, 12] },
    ]);
  });

  it('skips offsets this generation already dispatched, and dispatches them again in the next generation (kafkajs re-delivers from the commit)', async () => {
    const { c, k, tasks, ready } = setup();
    await c.start();
    k.join({ t: [0] });
    ready();
    await k.batch(0, 4);
    await k.batch(2, 4);
    expect(tasks.map((t) => t.offsets)).toEqual([
      [0, 1, 2, 3],
      [4, 5],
    ]);
    k.rebalancing();
    k.join({ t: [0] });
    expect(c.generation).toBe(2);
    ready();
    await k.batch(0, 2);
    expect(tasks.at(-1)).toEqual({ generation: 2, offsets: [0, 1] });
  });

  it('drops a batch that turned stale (a rebalance) while it waited', async () => {
    const { c, k, tasks, ready } = setup();
    await c.start();
    k.join({ t: [0] });
    k.setStale(true);
    ready();
    await k.batch(0, 4);
    expect(tasks).toEqual([]);
  });

  it('calls a partition idle only when caught up and fetches kept coming without data for it; never while rebalancing or paused', async () => {
    const { c, k, ready } = setup();
    await c.start();
    k.join({ t: [0] });
    ready();
    await k.batch(0, 1, 5);
    const idleMs = 20;
    await new Promise((r) => setTimeout(r, idleMs + 15));
    k.fetch();
    // Lag at its last fetch: unread, not idle.
    expect(c.idle(idleMs)).toEqual([]);
    await k.batch(1, 1, 0);
    await new Promise((r) => setTimeout(r, idleMs + 15));
    // Caught up, but no fetch since: the consumer may be stalled.
    expect(c.idle(idleMs)).toEqual([]);
    k.fetch();
    expect(c.idle(idleMs)).toEqual([{ generation: 1 }]);
    c.pause(true);
    expect(k.paused).toEqual(['t/0']);
    expect(c.idle(idleMs)).toEqual([]);
    c.pause(false);
    k.rebalancing();
    expect(c.idle(idleMs)).toEqual([]);
  });

  it('does not call a partition idle while a batch it got still waits for room in the pool (messages not yet dispatched)', async () => {
    const { c, k, ready, setRoom, tasks } = setup();
    await c.start();
    k.join({ t: [0] });
    ready();
    setRoom(false);
    const handing = k.batch(0, 6, 0);
    const idleMs = 20;
    await new Promise((r) => setTimeout(r, idleMs + 15));
    k.fetch();
    expect(tasks).toEqual([]);
    expect(c.idle(idleMs)).toEqual([]);
    setRoom(true);
    await handing;
    expect(tasks.flatMap((t) => t.offsets)).toEqual([0, 1, 2, 3, 4, 5]);
    await new Promise((r) => setTimeout(r, idleMs + 15));
    k.fetch();
    expect(c.idle(idleMs)).toEqual([{ generation: 1 }]);
  });

  it('settledGeneration: at once outside a rebalance; during one, not before the member has rejoined (its new generation begun) or disconnects', async () => {
    const { c, k, generations } = setup();
    await c.start();
    k.join({ t: [0] });
    await c.settledGeneration();
    k.rebalancing();
    let settled = 0;
    void c.settledGeneration().then(() => settled++);
    void c.settledGeneration().then(() => settled++);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(0);
    k.join({ t: [0] });
    let seenGeneration = 0;
    await c.settledGeneration().then(() => (seenGeneration = generations.length));
    await new Promise((r) => setImmediate(r));
    expect([settled, seenGeneration]).toEqual([2, 2]);
    k.rebalancing();
    const waiting = c.settledGeneration().then(() => 'settled');
    await c.disconnect(1000);
    expect(await waiting).toBe('settled');
  });
});
