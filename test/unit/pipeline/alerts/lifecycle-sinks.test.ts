import { describe, expect, it } from 'vitest';
import { KafkaJSProtocolError } from 'kafkajs';
import { AlertLifecycle, MAX_ALERT_REQUEST_BYTES, noteTopicEvent, PUBLISHED_MEMORY_MS, type AlertSinks, type TopicAlerts } from '../../../../pipeline/alerts/lifecycle.js';
import type { AlertEvent } from '../../../../sinks/alerts/event.js';
import type { Transition } from '../../../../workers/alerts/evaluator.js';
import { parseRules } from '../../../../workers/alerts/rules.js';

/**
 * restore() and publish() against in-memory stand-ins for the two calls lifecycle.ts makes of each
 * sink (producer.send, clickhouse.insert/query). These are unit tests of the bookkeeping around
 * them; the real Kafka and ClickHouse round trip is in test/integration/pipeline/alerts.test.ts.
 */

type Row = Record<string, unknown> & { id: string; fingerprint: string; status: string; observed_ms: number; starts_at: number; event: string };

/**
 * The `alerts` table of database `db`, answering the two queries restore() sends as ClickHouse
 * would (JSONEachRow quotes Int64 values); any other statement, table or format throws, as the
 * server would reject it. `alerts_dedup` (the table FINAL) gives the same last event per
 * fingerprint as the raw rows, so both read `rows`. A firing and its resolve published in one batch
 * share observed_ms: the query breaks the tie by the episode start, then the status.
 */
class AlertsTable {
  readonly rows: Row[] = [];

  constructor(private readonly log: string[] = []) {}

  async insert({ table, values, format }: { table: string; values: Row[]; format: string }): Promise<void> {
    if (table !== 'db.alerts' || format !== 'JSONEachRow') throw new Error(`cannot insert into ${table} as ${format}`);
    this.log.push(`clickhouse ${values.map((v) => v.id).join(',')}`);
    this.rows.push(...values);
  }

  async query({ query, format }: { query: string; format: string }): Promise<{ json<T>(): Promise<T[]> }> {
    if (format !== 'JSONEachRow') throw new Error(`unsupported format ${format}`);
    const rows = this.answer(query);
    return { json: async <T>() => rows as T[] };
  }

  private answer(query: string): Record<string, unknown>[] {
    const lastEvents = /^SELECT fingerprint, argMax\(status, \(observed_ms, starts_at, status\)\) AS last, argMax\(event, \(observed_ms, starts_at, status\)\) AS event FROM db\.alerts_dedup GROUP BY fingerprint HAVING last = 'firing' OR max\(observed_ms\) >= (-?\d+)$/.exec(query);
    if (lastEvents) {
      // The tuple order, as ClickHouse compares tuples: observed_ms, then starts_at, then the Enum8's number.
      const key = (r: Row): [number, number, number] => [r.observed_ms, r.starts_at, r.status === 'firing' ? 1 : 2];
      const after = (a: Row, b: Row): boolean => {
        const [x, y] = [key(a), key(b)];
        for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) > (y[i] as number);
        throw new Error(`argMax tie for ${a.fingerprint}: ${JSON.stringify(x)}`);
      };
      const last = new Map<string, Row>();
      for (const r of this.rows) {
        const seen = last.get(r.fingerprint);
        if (!seen || after(r, seen)) last.set(r.fingerprint, r);
      }
      const recent = new Set(this.rows.filter((r) => r.observed_ms >= Number(lastEvents[1])).map((r) => r.fingerprint));
      return [...last.values()].filter((r) => r.status === 'firing' || recent.has(r.fingerprint)).map((r) => ({ fingerprint: r.fingerprint, last: r.status, event: r.event }));
    }
    const ids = /^SELECT id, max\(observed_ms\) AS at FROM db\.alerts WHERE observed_ms >= (-?\d+) GROUP BY id$/.exec(query);
    if (ids) {
      const at = new Map<string, number>();
      for (const r of this.rows) if (r.observed_ms >= Number(ids[1])) at.set(r.id, Math.max(at.get(r.id) ?? -Infinity, r.observed_ms));
      return [...at].map(([id, ms]) => ({ id, at: String(ms) }));
    }
    throw new Error(`unexpected query: ${query}`);
  }
}

function sinksOf(table: AlertsTable, log: string[] = []) {
  const sent: unknown[] = [];
  const delivered: AlertEvent[] = [];
  const producer = {
    send: async (record: { messages: { key: string }[] }) => {
      log.push(`kafka ${record.messages.map((m) => m.key).join(',')}`);
      sent.push(record);
    },
  };
  const other = {
    send: (e: AlertEvent) => {
      log.push(`other ${e.id}`);
      delivered.push(e);
    },
  };
  const sinks = { producer, topic: 'vigil.alerts', clickhouse: table, database: 'db', others: [other] } as unknown as AlertSinks;
  return { sinks, sent, delivered };
}

const RULES = `rules:
  - id: cpu-hot
    kind: threshold
    metric: cpu
    op: ">"
    value: 90
    repeatInterval: 10m
    labels: { team: infra }
    annotations:
      summary: "{{ status }} {{ value }}"
`;
const rules = parseRules(RULES, 'rules.yaml');
const MINUTE = 60_000;
const T0 = 1_700_000_000_500;

function transition(status: Transition['status'], fingerprint: string, startsAtMs: number, atMs = startsAtMs): Transition {
  return { fingerprint, ruleId: 'cpu-hot', status, metric: 'cpu', tags: ['host', 'a', 'dc', 'eu'], value: status === 'firing' ? 95 : 85, tenant: '', score: null, startsAtMs, atMs, explanation: { mean: 95 } };
}

/** A lifecycle on `table` whose clock the test moves. */
function member(table: AlertsTable, start = T0) {
  const clock = { now: start };
  const out = sinksOf(table);
  const l = new AlertLifecycle(out.sinks, () => clock.now);
  l.setRules(rules);
  /** Handles and publishes `transitions` at `now`; the events published. */
  const step = async (now: number, transitions: Transition[]): Promise<AlertEvent[]> => {
    clock.now = now;
    const events = l.handle(transitions);
    await l.publish(events);
    return events;
  };
  return { l, clock, step, ...out };
}

/** An episode of `fingerprint` (firing at 60 s, resolved at 120 s of event time), as the shards replay it. */
const episode = (fingerprint: string): Transition[] => [transition('firing', fingerprint, 60_000), transition('resolved', fingerprint, 60_000, 120_000)];

describe('AlertLifecycle.restore', () => {
  it('a short episode fired and resolved in one publish (one observed_ms) restores as resolved; a later episode in the same publish wins over it', async () => {
    const table = new AlertsTable();
    const a = member(table);
    await a.step(T0, [...episode('f1'), ...episode('f2'), transition('firing', 'f2', 300_000)]);
    expect(new Set(table.rows.map((r) => r.observed_ms))).toEqual(new Set([T0]));
    const b = member(table, T0 + MINUTE);
    expect(await b.l.restore()).toEqual({ active: [{ fingerprint: 'f2', startsAtMs: 300_000 }], resolved: [] });
  });

  it('a restarted member takes the firing set from the table: the replayed firing is not published again, its resolve is', async () => {
    const table = new AlertsTable();
    const before = member(table);
    await before.step(T0, [transition('firing', 'f1', 60_000), transition('firing', 'f2', 120_000)]);
    await before.step(T0 + 1000, [transition('resolved', 'f2', 120_000, 180_000)]);

    const after = member(table, T0 + MINUTE);
    expect(await after.l.restore()).toEqual({ active: [{ fingerprint: 'f1', startsAtMs: 60_000 }], resolved: [] });
    expect(after.l.firing).toBe(1);
    // The shards replay both episodes from their start.
    expect(after.l.handle([transition('firing', 'f1', 60_000), transition('firing', 'f2', 120_000), transition('resolved', 'f2', 120_000, 180_000)])).toEqual([]);
    expect(after.l.handle([transition('resolved', 'f1', 60_000, 240_000)]).map((e) => e.id)).toEqual(['f1-resolved-60000']);
    expect(after.l.firing).toBe(0);
  });

  it('replaces the firing set it remembers with the table\'s (another member resolved one after a rebalance)', async () => {
    const table = new AlertsTable();
    const a = member(table);
    await a.l.publish(a.l.handle([transition('firing', 'f1', 60_000)]));
    const b = member(table, T0 + MINUTE);
    await b.l.restore();
    await b.l.publish(b.l.handle([transition('resolved', 'f1', 60_000, 120_000)]));

    a.clock.now = T0 + 2 * MINUTE;
    expect(await a.l.restore()).toEqual({ active: [], resolved: [] });
    expect(a.l.firing).toBe(0);
  });

  it('a restored alert is repeated a repeatInterval after the restore, not after its first send', async () => {
    const table = new AlertsTable();
    const before = member(table);
    const [firing] = before.l.handle([transition('firing', 'f1', 60_000)]);
    await before.l.publish(firing ? [firing] : []);

    const after = member(table, T0 + 30 * MINUTE);
    await after.l.restore();
    after.clock.now = T0 + 40 * MINUTE - 1;
    expect(after.l.repeats()).toEqual([]);
    after.clock.now = T0 + 40 * MINUTE;
    expect(after.l.repeats()).toEqual([{ ...firing, observedAt: new Date(T0 + 40 * MINUTE).toISOString() }]);
  });

  it('knows the ids the table got in the last day only', async () => {
    const table = new AlertsTable();
    const old = member(table);
    await old.step(T0 - PUBLISHED_MEMORY_MS - 1000, episode('f1').slice(0, 1));
    await old.step(T0 - PUBLISHED_MEMORY_MS - 1, episode('f1').slice(1));
    const recent = member(table);
    await recent.step(T0 - PUBLISHED_MEMORY_MS, episode('f2').slice(0, 1));
    await recent.step(T0 - PUBLISHED_MEMORY_MS + 1000, episode('f2').slice(1));

    const after = member(table, T0);
    expect(await after.l.restore()).toEqual({ active: [], resolved: [] });
    expect(after.l.handle([...episode('f1'), ...episode('f2')]).map((e) => e.id)).toEqual(['f1-firing-60000', 'f1-resolved-60000']);
  });

  it('a restored id ages out a day after it was published, not a day after the restore', async () => {
    const table = new AlertsTable();
    const before = member(table);
    await before.step(T0, episode('f1').slice(0, 1));
    await before.step(T0 + 1000, episode('f1').slice(1));

    const after = member(table, T0 + 12 * 60 * MINUTE);
    await after.l.restore();
    after.clock.now = T0 + 1000 + PUBLISHED_MEMORY_MS + MINUTE;
    expect(after.l.handle(episode('f1')).map((e) => e.id)).toEqual(['f1-firing-60000', 'f1-resolved-60000']);
  });

  it('an alert restored for a rule removed while no member ran resolves at the restore, with the annotations it was published with, and is not repeated', async () => {
    const table = new AlertsTable();
    const before = member(table);
    const [firing] = before.l.handle([transition('firing', 'f1', 60_000)]);
    await before.l.publish(firing ? [firing] : []);

    const after = member(table, T0 + MINUTE);
    after.l.setRules(parseRules(RULES.replace('id: cpu-hot', 'id: cpu-hotter'), 'rules.yaml'));
    const { active, resolved } = await after.l.restore();
    expect(active).toEqual([]);
    expect(resolved.map((e) => [e.id, e.explanation, e.annotations, e.observedAt])).toEqual([
      ['f1-resolved-60000', { reason: 'rule removed' }, { summary: 'firing 95' }, new Date(T0 + MINUTE).toISOString()],
    ]);
    expect(after.l.firing).toBe(0);
    after.clock.now = T0 + PUBLISHED_MEMORY_MS;
    expect(after.l.repeats()).toEqual([]);
    expect(after.l.setRules(parseRules(RULES.replace('id: cpu-hot', 'id: cpu-hottest'), 'rules.yaml'))).toEqual([]);
  });
});

describe('AlertLifecycle.restore: events the topic has and the table missed', () => {
  /** A member whose publishes reach the topic only (killed before the table insert) when `tableDown`. */
  function withTopic(table: AlertsTable, start = T0) {
    const topic: AlertEvent[] = [];
    const clock = { now: start };
    const state = { tableDown: false };
    const { sinks } = sinksOf(table);
    const l = new AlertLifecycle(
      {
        ...sinks,
        producer: { send: async (r: { messages: { value: string }[] }) => void topic.push(...r.messages.map((m) => JSON.parse(m.value) as AlertEvent)) },
        clickhouse: {
          query: table.query.bind(table),
          insert: async (args: Parameters<AlertsTable['insert']>[0]) => {
            if (state.tableDown) throw new Error('killed');
            return table.insert(args);
          },
        },
        publishedSince: async (sinceMs: number) => {
          const seen: TopicAlerts = { ids: new Map(), last: new Map() };
          for (const e of topic) if (Date.parse(e.observedAt) >= sinceMs) noteTopicEvent(seen, e, Date.parse(e.observedAt));
          return seen;
        },
      } as unknown as AlertSinks,
      () => clock.now,
    );
    l.setRules(rules);
    return { l, clock, state, topic };
  }

  it('a resolve on the topic only ends the episode the table still has firing: the next episode fires', async () => {
    const table = new AlertsTable();
    const a = withTopic(table);
    await a.l.publish(a.l.handle([transition('firing', 'f1', 60_000)]));
    a.clock.now = T0 + 1000;
    a.state.tableDown = true;
    await expect(a.l.publish(a.l.handle([transition('resolved', 'f1', 60_000, 120_000)]))).rejects.toThrow('killed');
    expect(table.rows.map((r) => r.id)).toEqual(['f1-firing-60000']);

    const b = withTopic(table, T0 + MINUTE);
    b.topic.push(...a.topic);
    expect(await b.l.restore()).toEqual({ active: [], resolved: [] });
    // A replay finds the resolve published; the next episode is new.
    expect(b.l.handle([transition('resolved', 'f1', 60_000, 120_000), transition('firing', 'f1', 300_000)]).map((e) => e.id)).toEqual(['f1-firing-300000']);
  });

  it('a firing on the topic only is restored as firing (the state restored past it never derives it again): its resolve is published', async () => {
    const table = new AlertsTable();
    const a = withTopic(table);
    a.state.tableDown = true;
    await expect(a.l.publish(a.l.handle([transition('firing', 'f1', 60_000)]))).rejects.toThrow('killed');
    expect(table.rows).toEqual([]);

    const b = withTopic(table, T0 + MINUTE);
    b.topic.push(...a.topic);
    expect(await b.l.restore()).toEqual({ active: [{ fingerprint: 'f1', startsAtMs: 60_000 }], resolved: [] });
    expect(b.l.handle([transition('resolved', 'f1', 60_000, 120_000)]).map((e) => e.id)).toEqual(['f1-resolved-60000']);
  });

  it('a resolve the broker refused for good (in the table only) ends the episode the topic still has firing', async () => {
    const table = new AlertsTable();
    const a = withTopic(table);
    await a.l.publish(a.l.handle([transition('firing', 'f1', 60_000)]));
    a.clock.now = T0 + 1000;
    const resolve = a.l.handle([transition('resolved', 'f1', 60_000, 120_000)]);
    // What a refusal leaves: the table has the resolve, the topic does not.
    const sent = a.topic.length;
    await a.l.publish(resolve);
    a.topic.splice(sent);
    expect(table.rows.map((r) => r.id)).toEqual(['f1-firing-60000', 'f1-resolved-60000']);
    const b = withTopic(table, T0 + MINUTE);
    b.topic.push(...a.topic);
    expect(await b.l.restore()).toEqual({ active: [], resolved: [] });
  });

  it('the table\'s event stays the last when it is later than the topic\'s (the topic read from a day ago only)', async () => {
    const table = new AlertsTable();
    const a = withTopic(table);
    await a.l.publish(a.l.handle([transition('firing', 'f1', 60_000)]));
    a.clock.now = T0 + 1000;
    await a.l.publish(a.l.handle([transition('resolved', 'f1', 60_000, 120_000)]));
    a.clock.now = T0 + 2000;
    await a.l.publish(a.l.handle([transition('firing', 'f1', 300_000)]));
    const b = withTopic(table, T0 + MINUTE);
    b.topic.push(...a.topic.slice(0, 2));
    expect(await b.l.restore()).toEqual({ active: [{ fingerprint: 'f1', startsAtMs: 300_000 }], resolved: [] });
  });
});

describe('AlertLifecycle.publish', () => {
  it('writes to the alerts topic (acks=all, keyed by fingerprint), then the alerts table, and only then to the other outputs', async () => {
    const log: string[] = [];
    const table = new AlertsTable(log);
    const { sinks, sent, delivered } = sinksOf(table, log);
    const l = new AlertLifecycle(sinks, () => T0);
    l.setRules(rules);
    const events = l.handle([transition('firing', 'f1', 60_000), transition('firing', 'f2', 60_000), transition('resolved', 'f1', 60_000, 120_000)]);
    await l.publish(events);

    expect(log).toEqual(['kafka f1,f2,f1', 'clickhouse f1-firing-60000,f2-firing-60000,f1-resolved-60000', 'other f1-firing-60000', 'other f2-firing-60000', 'other f1-resolved-60000']);
    expect(sent).toEqual([
      {
        topic: 'vigil.alerts',
        acks: -1,
        messages: events.map((e) => ({ key: e.fingerprint, value: JSON.stringify(e), headers: { 'vigil-alert-status': e.status } })),
      },
    ]);
    expect(sent).toMatchObject([{ messages: [{ headers: { 'vigil-alert-status': 'firing' } }, { headers: { 'vigil-alert-status': 'firing' } }, { headers: { 'vigil-alert-status': 'resolved' } }] }]);
    expect(delivered).toEqual(events);
    expect(l.counts).toEqual({ firing: 2, resolved: 1, suppressed: 0, repeats: 0 });
  });

  it('maps each event to an alerts table row, times in whole seconds (rounded down) and the event itself as JSON', async () => {
    const table = new AlertsTable();
    const { l } = member(table);
    const events = l.handle([transition('firing', 'f1', 60_000), transition('resolved', 'f1', 60_000, 120_750)]);
    await l.publish(events);
    const common = {
      fingerprint: 'f1',
      rule_id: 'cpu-hot',
      rule_name: 'cpu-hot',
      rule_kind: 'threshold',
      severity: 'warning',
      metric: 'cpu',
      'tags.key': ['host', 'dc'],
      'tags.value': ['a', 'eu'],
      tenant: '',
      threshold: 90,
      score: null,
      starts_at: 60,
      observed_at: 1_700_000_000,
      observed_ms: T0,
      explanation: '{"mean":95}',
      labels: '{"team":"infra"}',
    };
    expect(table.rows).toEqual([
      { ...common, id: 'f1-firing-60000', status: 'firing', value: 95, ends_at: null, annotations: '{"summary":"firing 95"}', event: JSON.stringify(events[0]) },
      { ...common, id: 'f1-resolved-60000', status: 'resolved', value: 85, ends_at: 120, annotations: '{"summary":"resolved 85"}', event: JSON.stringify(events[1]) },
    ]);
  });

  it('publishing no events touches no sink', async () => {
    const log: string[] = [];
    const { sinks } = sinksOf(new AlertsTable(log), log);
    const l = new AlertLifecycle(sinks, () => T0);
    await l.publish([]);
    expect(log).toEqual([]);
  });

  it('a Kafka failure rejects before the table and the other outputs, and counts nothing', async () => {
    const log: string[] = [];
    const table = new AlertsTable(log);
    const { sinks } = sinksOf(table, log);
    const failing = { ...sinks, producer: { send: async () => Promise.reject(new Error('broker down')) } } as unknown as AlertSinks;
    const l = new AlertLifecycle(failing, () => T0);
    l.setRules(rules);
    await expect(l.publish(l.handle([transition('firing', 'f1', 60_000)]))).rejects.toThrow('broker down');
    expect(log).toEqual([]);
    expect(l.counts.firing).toBe(0);
  });
});

describe('AlertLifecycle.publish: retries and withdrawals', () => {
  it('a publish retried after the table insert failed does not produce its events to the topic again; the table and outputs get them once', async () => {
    const log: string[] = [];
    const table = new AlertsTable(log);
    const { sinks, delivered } = sinksOf(table, log);
    let failures = 1;
    const flaky = {
      ...sinks,
      clickhouse: {
        insert: async (args: Parameters<AlertsTable['insert']>[0]) => {
          if (failures-- > 0) throw new Error('ClickHouse away');
          return table.insert(args);
        },
      },
    } as unknown as AlertSinks;
    const l = new AlertLifecycle(flaky, () => T0);
    l.setRules(rules);
    const events = l.handle([transition('firing', 'f1', 60_000), transition('firing', 'f2', 60_000)]);
    await expect(l.publish(events)).rejects.toThrow('ClickHouse away');
    expect(await l.publish(events)).toEqual([]);
    expect(log).toEqual(['kafka f1,f2', 'clickhouse f1-firing-60000,f2-firing-60000', 'other f1-firing-60000', 'other f2-firing-60000']);
    expect(delivered).toHaveLength(2);
    expect(l.counts.firing).toBe(2);
  });

  it('an event refused for good on the first try is returned by the retry too, and not produced again', async () => {
    const table = new AlertsTable();
    const { sinks } = sinksOf(table);
    let sends = 0;
    let failures = 1;
    const l = new AlertLifecycle(
      {
        ...sinks,
        producer: {
          send: async () => {
            sends++;
            throw new KafkaJSProtocolError({ type: 'MESSAGE_TOO_LARGE', code: 10, retriable: false, message: 'too large' } as never);
          },
        },
        clickhouse: {
          insert: async (args: Parameters<AlertsTable['insert']>[0]) => {
            if (failures-- > 0) throw new Error('ClickHouse away');
            return table.insert(args);
          },
        },
      } as unknown as AlertSinks,
      () => T0,
    );
    l.setRules(rules);
    const events = l.handle([transition('firing', 'f1', 60_000)]);
    await expect(l.publish(events)).rejects.toThrow('ClickHouse away');
    expect((await l.publish(events)).map((e) => e.id)).toEqual(['f1-firing-60000']);
    expect(sends).toBe(1);
  });

  it('withdrawn events are forgotten as published: re-derived later (this member owns the series again), they are published', async () => {
    const table = new AlertsTable();
    const { l } = member(table);
    await l.publish(l.handle([transition('firing', 'f1', 60_000)]));
    // Made, then withdrawn (the generation ended before their turn): a resolve and a new episode.
    const withdrawn = l.handle([transition('resolved', 'f1', 60_000, 120_000), transition('firing', 'f2', 90_000)]);
    expect(withdrawn.map((e) => e.id)).toEqual(['f1-resolved-60000', 'f2-firing-90000']);
    l.withdraw(withdrawn);
    expect(table.rows.map((r) => r.id)).toEqual(['f1-firing-60000']);
    // The next generation: the firing set from the table, the shards replaying from the commit.
    await l.restore();
    expect(l.handle([transition('firing', 'f1', 60_000), transition('resolved', 'f1', 60_000, 120_000), transition('firing', 'f2', 90_000)]).map((e) => e.id)).toEqual(['f1-resolved-60000', 'f2-firing-90000']);
  });

  it('an event withdrawn after it reached the topic (a publish retried past its generation\'s end) stays known: the replay does not publish it again', async () => {
    const table = new AlertsTable();
    const { sinks } = sinksOf(table);
    const l = new AlertLifecycle({ ...sinks, clickhouse: { query: table.query.bind(table), insert: async () => Promise.reject(new Error('ClickHouse away')) } } as unknown as AlertSinks, () => T0);
    l.setRules(rules);
    const events = l.handle([transition('firing', 'f1', 60_000), transition('firing', 'f2', 60_000)]);
    await expect(l.publish(events)).rejects.toThrow('ClickHouse away');
    l.withdraw(events);
    // The next generation: the table has neither (and this stand-in has no topic to read).
    expect(await l.restore()).toEqual({ active: [], resolved: [] });
    expect(l.handle([transition('firing', 'f1', 60_000), transition('firing', 'f2', 60_000)])).toEqual([]);
  });

  it('a withdrawn repeat leaves its firing known as published (a repeat carries its firing\'s id)', async () => {
    const table = new AlertsTable();
    const { l, clock, step } = member(table);
    await step(T0, [transition('firing', 'f1', 60_000)]);
    clock.now = T0 + 10 * MINUTE;
    const repeats = l.repeats();
    expect(repeats.map((e) => e.id)).toEqual(['f1-firing-60000']);
    l.withdraw(repeats);
    await step(T0 + 11 * MINUTE, [transition('resolved', 'f1', 60_000, 120_000)]);
    // A replay of the whole episode (kill -9 before the commit): nothing published again.
    expect(l.handle(episode('f1'))).toEqual([]);
  });
});

describe('AlertLifecycle.publish: request size', () => {
  const tooLarge = () => new KafkaJSProtocolError({ type: 'MESSAGE_TOO_LARGE', code: 10, retriable: false, message: 'The request included a message larger than the max message size the server will accept' } as never);

  it(`6,000 events crossing a threshold in one bucket go out in requests of at most ${MAX_ALERT_REQUEST_BYTES} bytes, in order`, async () => {
    const table = new AlertsTable();
    const { sinks, sent } = sinksOf(table);
    const l = new AlertLifecycle(sinks, () => T0);
    l.setRules(rules);
    const events = l.handle(Array.from({ length: 6000 }, (_, i) => transition('firing', `f${i}`, 60_000)));
    expect(await l.publish(events)).toEqual([]);
    const requests = sent as { messages: { key: string; value: string }[] }[];
    expect(requests.length).toBeGreaterThan(1);
    for (const r of requests) expect(r.messages.reduce((n, m) => n + m.value.length + m.key.length + 64, 0)).toBeLessThanOrEqual(MAX_ALERT_REQUEST_BYTES);
    expect(requests.flatMap((r) => r.messages.map((m) => m.key))).toEqual(events.map((e) => e.fingerprint));
    expect(table.rows).toHaveLength(6000);
  });

  it('an event the broker refuses for good is set aside and returned; the others of its request are produced; the table and outputs get all', async () => {
    const table = new AlertsTable();
    const { sinks, delivered } = sinksOf(table);
    const produced: string[] = [];
    let calls = 0;
    (sinks as unknown as { producer: unknown }).producer = {
      send: async (record: { messages: { key: string }[] }) => {
        calls++;
        if (record.messages.some((m) => m.key === 'f1')) throw tooLarge();
        produced.push(...record.messages.map((m) => m.key));
      },
    };
    const l = new AlertLifecycle(sinks, () => T0);
    l.setRules(rules);
    const events = l.handle(['f0', 'f1', 'f2'].map((f) => transition('firing', f, 60_000)));
    const refused = await l.publish(events);
    expect(refused.map((e) => e.fingerprint)).toEqual(['f1']);
    expect(produced).toEqual(['f0', 'f2']);
    expect(calls).toBe(4);
    expect(table.rows.map((r) => r.fingerprint)).toEqual(['f0', 'f1', 'f2']);
    expect(delivered.map((e) => e.fingerprint)).toEqual(['f0', 'f1', 'f2']);
  });

  it('a broker away is not a refusal: publish rejects (the caller retries) and writes nothing further', async () => {
    const table = new AlertsTable();
    const { sinks } = sinksOf(table);
    (sinks as unknown as { producer: unknown }).producer = {
      send: async () => {
        throw new KafkaJSProtocolError({ type: 'LEADER_NOT_AVAILABLE', code: 5, retriable: true, message: 'no leader' } as never);
      },
    };
    const l = new AlertLifecycle(sinks, () => T0);
    l.setRules(rules);
    await expect(l.publish(l.handle([transition('firing', 'f0', 60_000)]))).rejects.toThrow('no leader');
    expect(table.rows).toEqual([]);
  });
});
