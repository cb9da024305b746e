import { describe, expect, it } from 'vitest';
import { AlertPublishQueue, type PublishQueueHost } from '../../../../pipeline/alerts/queue.js';
import { AlertLifecycle, type AlertSinks } from '../../../../pipeline/alerts/lifecycle.js';
import type { AlertEvent } from '../../../../sinks/alerts/event.js';
import type { Transition } from '../../../../workers/alerts/evaluator.js';
import { parseRules } from '../../../../workers/alerts/rules.js';

/** A gate a test opens by hand. */
function gate() {
  let open = () => {};
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

const tick = () => new Promise((r) => setImmediate(r));

const event = (id: string) => ({ id }) as AlertEvent;

/** A host whose generation, rebalance and publish outcomes the test drives; it logs what reaches the sinks. */
function host() {
  const log: string[] = [];
  const h = {
    epoch: 1,
    rebalance: null as ReturnType<typeof gate> | null,
    /** Per event id: a gate its publish waits at, or a number of failures before it succeeds. */
    gates: new Map<string, ReturnType<typeof gate>>(),
    failures: new Map<string, number>(),
    giveUpAfter: Infinity,
    /** Held between a failed attempt and the next, when set. */
    backoff: null as ReturnType<typeof gate> | null,
  };
  const impl: PublishQueueHost = {
    epoch: () => h.epoch,
    settledGeneration: () => h.rebalance?.opened ?? Promise.resolve(),
    retry: async (op) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await op();
          return;
        } catch (err) {
          if (attempt >= h.giveUpAfter) throw err;
          await (h.backoff?.opened ?? tick());
        }
      }
    },
    publish: async (events) => {
      const ids = events.map((e) => e.id).join(',');
      await h.gates.get(ids)?.opened;
      const left = h.failures.get(ids) ?? 0;
      if (left > 0) {
        h.failures.set(ids, left - 1);
        log.push(`failed ${ids}`);
        throw new Error('ClickHouse away');
      }
      log.push(`published ${ids}`);
    },
    withdraw: (events) => void log.push(`withdrawn ${events.map((e) => e.id).join(',')}`),
  };
  return { h, log, queue: new AlertPublishQueue(impl) };
}

/** Publishes `a` (held at its send until `slow` opens) and `b` behind it. */
async function twoQueued() {
  const q = host();
  const slow = gate();
  q.h.gates.set('a', slow);
  const a = q.queue.push([event('a')]);
  const b = q.queue.push([event('b')]);
  await tick();
  return { ...q, slow, a, b };
}

describe('AlertPublishQueue', () => {
  it('publishes one after the other, in the order pushed', async () => {
    const { log, slow, a, b } = await twoQueued();
    expect(log).toEqual([]);
    slow.open();
    await Promise.all([a, b]);
    expect(log).toEqual(['published a', 'published b']);
  });

  it('a new generation withdraws the waiting publishes at once, before the one under way ends; that one is published', async () => {
    const { h, log, queue, slow, a, b } = await twoQueued();
    h.epoch = 2;
    queue.endGeneration();
    expect(log).toEqual(['withdrawn b']);
    slow.open();
    await Promise.all([a, b]);
    await queue.settled();
    expect(log).toEqual(['withdrawn b', 'published a']);
  });

  it('a publish retried past its generation\'s end is withdrawn at its next attempt', async () => {
    const { h, log, queue } = host();
    h.failures.set('a', 1);
    h.backoff = gate();
    const a = queue.push([event('a')]);
    while (!log.includes('failed a')) await tick();
    h.epoch = 2;
    h.backoff.open();
    await a;
    expect(log).toEqual(['failed a', 'withdrawn a']);
  });

  it('a turn that comes during a rebalance waits for it to end, and its generation over, is withdrawn', async () => {
    const { h, log, queue } = host();
    h.rebalance = gate();
    const a = queue.push([event('a')]);
    await tick();
    expect(log).toEqual([]);
    h.epoch = 2;
    queue.endGeneration();
    h.rebalance.open();
    await a;
    expect(log).toEqual(['withdrawn a']);
  });

  it('durable(): true once everything queued before is published; false for good after a publish was given up', async () => {
    const { h, queue } = host();
    const slow = gate();
    h.gates.set('a', slow);
    void queue.push([event('a')]);
    let durable: boolean | null = null;
    void queue.durable().then((d) => (durable = d));
    await tick();
    expect(durable).toBe(null);
    slow.open();
    await queue.settled();
    await tick();
    expect(durable).toBe(true);
    h.failures.set('b', 5);
    h.giveUpAfter = 2;
    await expect(queue.push([event('b')])).rejects.toThrow('ClickHouse away');
    expect(await queue.durable()).toBe(false);
  });
});

describe('AlertPublishQueue with the lifecycle: an episode re-derived in the next generation while its first copy still waited', () => {
  const rules = parseRules('rules:\n  - id: cpu-hot\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 90\n', 'rules.yaml');
  const transition = (status: Transition['status'], fingerprint: string, startsAtMs: number, atMs = startsAtMs): Transition => ({ fingerprint, ruleId: 'cpu-hot', status, metric: 'cpu', tags: ['host', 'a'], value: 95, tenant: '', score: null, startsAtMs, atMs, explanation: {} });

  it('is published once, by the replay (the waiting copy withdrawn before the replay made it again)', async () => {
    const topic: string[] = [];
    const slow = gate();
    const sinks = {
      producer: {
        send: async (r: { messages: { value: string }[] }) => {
          const ids = r.messages.map((m) => (JSON.parse(m.value) as AlertEvent).id);
          if (ids.includes('f0-firing-1000')) await slow.opened;
          topic.push(...ids);
        },
      },
      topic: 'alerts',
      clickhouse: { insert: async () => undefined, query: async () => ({ json: async () => [] }) },
      database: 'db',
      others: [],
    } as unknown as AlertSinks;
    const lifecycle = new AlertLifecycle(sinks, () => 1_000_000);
    lifecycle.setRules(rules);
    let epoch = 1;
    const queue = new AlertPublishQueue({
      epoch: () => epoch,
      settledGeneration: async () => undefined,
      retry: async (op) => void (await op()),
      publish: async (events) => void (await lifecycle.publish(events)),
      withdraw: (events) => lifecycle.withdraw(events),
    });
    // Generation 1: an episode of f0 is being published (slow), f1's firing waits behind it.
    const f0 = queue.push(lifecycle.handle([transition('firing', 'f0', 1000)]));
    const f1 = queue.push(lifecycle.handle([transition('firing', 'f1', 2000)]));
    await tick();
    // Generation 2 begins: the queue withdraws, the publish under way ends, then the restore.
    epoch = 2;
    queue.endGeneration();
    slow.open();
    await Promise.all([f0, f1, queue.settled()]);
    await lifecycle.restore();
    // The replay from the committed offset makes both firings again.
    await queue.push(lifecycle.handle([transition('firing', 'f0', 1000), transition('firing', 'f1', 2000)]));
    expect(topic).toEqual(['f0-firing-1000', 'f1-firing-2000']);
  });
});
