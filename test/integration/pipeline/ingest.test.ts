import { Partitioners } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { produce, type GenFormat, type ProduceSummary } from '../../../bench/generator.js';
import { readTopic, type ReadMessage } from '../../helpers/kafka.js';
import { kcat } from '../../helpers/kcat.js';
import { PipelineProcess, waitFor } from '../../helpers/pipeline.js';
import { uniqueName, useResources } from '../../helpers/resources.js';

const res = useResources();
const broker = res.config.kafka.brokers[0] as string;
const nowIso = () => new Date(Date.now() - 60_000).toISOString();

/** Per-series count and value sum as Vigil stores them, keyed by Vigil's canonical series text. */
async function storedSeries(db: string, topic?: string): Promise<Map<string, { n: number; sum: number }>> {
  const where = topic ? `WHERE source_topic = '${topic}'` : '';
  const rs = await res.clickhouse().query({
    query: `SELECT metric, tags.key AS k, tags.value AS v, count() AS n, sum(value) AS s FROM ${db}.points_dedup ${where} GROUP BY metric, tags.key, tags.value`,
    format: 'JSONEachRow',
  });
  const out = new Map<string, { n: number; sum: number }>();
  for (const r of await rs.json<{ metric: string; k: string[]; v: string[]; n: string; s: number }>()) {
    const key = JSON.stringify([r.metric, r.k.map((k, i) => [k, r.v[i]])]);
    out.set(key, { n: Number(r.n), sum: r.s });
  }
  return out;
}

const count = (db: string, table = 'points_dedup', where = '') => res.scalar(`SELECT count() FROM ${db}.${table} ${where}`);

function expectSeries(stored: Map<string, { n: number; sum: number }>, sent: ProduceSummary[], extra: Record<string, number> = {}): void {
  const expected = new Map<string, number>(Object.entries(extra));
  for (const s of sent) for (const [k, n] of s.perSeries) expected.set(k, (expected.get(k) ?? 0) + n);
  expect(new Map([...stored].map(([k, v]) => [k, v.n]))).toEqual(expected);
}

// Both insert encodings: plain RowBinary, and gzip members compressed per task in the workers.
describe.each(['none', 'gzip'])('ingestion (clickhouse.compression = %s): Kafka metric topics → workers → ClickHouse points, with dead letters', (compression) => {
  let topic: string;
  let kcatTopic: string;
  let dlq: string;
  let db: string;
  let pipeline: PipelineProcess;

  beforeAll(async () => {
    topic = await res.topic('metrics', 3);
    kcatTopic = await res.topic('metrics_kcat', 2);
    dlq = await res.topic('dlq', 1);
    const alerts = await res.topic('alerts', 1);
    db = uniqueName('vigil');
    res.own('database', db);
    pipeline = await PipelineProcess.start({
      VIGIL_KAFKA_TOPICS: `${topic},${kcatTopic}`,
      VIGIL_KAFKA_DLQ_TOPIC: dlq,
      VIGIL_KAFKA_ALERTS_TOPIC: alerts,
      VIGIL_KAFKA_GROUP_ID: uniqueName('group'),
      VIGIL_CLICKHOUSE_DATABASE: db,
      VIGIL_PIPELINE_MAX_MESSAGE_BYTES: String(64 * 1024),
      VIGIL_PIPELINE_INSERT_LINGER_MS: '200',
      VIGIL_PIPELINE_WORKERS: '2',
      VIGIL_CLICKHOUSE_COMPRESSION: compression,
    });
  });
  afterAll(async () => pipeline?.stop());

  it('stores every valid point exactly once and dead-letters every invalid one with its code and source offset', async () => {
    const base = { topic, rate: 0, durationMs: 0, intervalMs: 1000, startMs: Date.now() - 3_600_000, seed: 7 };
    const sent: ProduceSummary[] = [];
    const runs: [GenFormat, number, number, number][] = [
      ['json', 1, 2000, 0],
      ['json', 50, 2000, 20],
      ['influx', 100, 3000, 40],
      ['prometheus', 10, 1000, 60],
    ];
    for (const [format, pointsPerMessage, points, seriesOffset] of runs) {
      sent.push(await produce(res.kafka, { ...base, format, pointsPerMessage, points, series: 20, seriesOffset }));
    }

    const ts = nowIso();
    const tsNs = `${Date.now() - 60_000}000000`;
    const big = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ metric_id: 'big', value: i, timestamp: ts })));
    // [value, expected codes (in order of the rejects), good points it still carries]
    const bad: [Buffer, string[], number][] = [
      [Buffer.from('{"metric_id": "x", "value": '), ['VIGIL_ERR_DECODE_JSON'], 0],
      [Buffer.from(JSON.stringify({ metric_id: 5, value: 1, timestamp: ts })), ['VIGIL_ERR_DECODE_NAME'], 0],
      [Buffer.from(JSON.stringify({ metric_id: 'a', value: 'abc', timestamp: ts })), ['VIGIL_ERR_DECODE_VALUE'], 0],
      [Buffer.from(JSON.stringify({ metric_id: 'a', value: 1, timestamp: ts, tags: { x: { y: 1 } } })), ['VIGIL_ERR_DECODE_TAGS'], 0],
      [Buffer.from(JSON.stringify({ metric_id: 'a', value: 'NaN', timestamp: ts })), ['VIGIL_ERR_DECODE_VALUE'], 0],
      [Buffer.from(`{"metric_id": "a", "value": 1e999, "timestamp": "${ts}"}`), ['VIGIL_ERR_DECODE_VALUE'], 0],
      [Buffer.from(JSON.stringify({ value: 1, timestamp: ts })), ['VIGIL_ERR_DECODE_NAME'], 0],
      [Buffer.from(JSON.stringify({ metric_id: 'a', value: 1, timestamp: '1970-01-02T00:00:00Z' })), ['VIGIL_ERR_DECODE_TIMESTAMP'], 0],
      [Buffer.from(JSON.stringify({ metric_id: 'a', value: 1, timestamp: '3000-01-01T00:00:00Z' })), ['VIGIL_ERR_DECODE_TIMESTAMP'], 0],
      [Buffer.from(big), ['VIGIL_ERR_DECODE_TOO_LARGE'], 0],
      [Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), ['VIGIL_ERR_DECODE_UTF8'], 0],
      [Buffer.alloc(0), ['VIGIL_ERR_DECODE_EMPTY'], 0],
      [Buffer.from('  \n\t '), ['VIGIL_ERR_DECODE_EMPTY'], 0],
      [Buffer.from(`cpu\\ load,host=a\\,b,dc=x\\=y value=1.5 ${tsNs}\ncpu,host=a value= ${tsNs}\ndisk,host=a used=2i,free=3u,ok=t ${tsNs}`), ['VIGIL_ERR_DECODE_LINE_PROTOCOL'], 4],
      [
        Buffer.from(JSON.stringify([{ metric_id: 'arr', value: 1, timestamp: ts }, { metric_id: 'arr', value: 'x', timestamp: ts }, { metric_id: 'arr', value: 2, timestamp: ts }])),
        ['VIGIL_ERR_DECODE_VALUE'],
        2,
      ],
    ];
    const producer = res.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const [meta] = await producer.send({ topic, acks: -1, messages: bad.map(([value]) => ({ value, partition: 0, key: 'bad', headers: { origin: 'test' } })) });
    await producer.disconnect();
    const baseOffset = Number(meta?.baseOffset);

    const goodFromBad = bad.reduce((n, [, , good]) => n + good, 0);
    const expectedPoints = sent.reduce((n, s) => n + s.points, 0) + goodFromBad;
    const expectedLetters = bad.reduce((n, [, codes]) => n + codes.length, 0);
    await waitFor('all points in ClickHouse', async () => (await count(db)) >= expectedPoints, 90_000);
    const letters = await readTopic(res.kafka, dlq, expectedLetters);

    // Exactly once: count, sum and per-series counts equal what was produced.
    expect(await count(db)).toBe(expectedPoints);
    const stored = await storedSeries(db);
    const sum = [...stored.values()].reduce((a, v) => a + v.sum, 0);
    const expectedSum = sent.reduce((a, s) => a + s.valueSum, 0) + 1.5 + 2 + 3 + 1 + 1 + 2;
    expect(sum).toBeCloseTo(expectedSum, 3);
    expectSeries(stored, sent, {
      '["cpu load",[["dc","x=y"],["host","a,b"]]]': 1,
      '["disk.used",[["host","a"]]]': 1,
      '["disk.free",[["host","a"]]]': 1,
      '["disk.ok",[["host","a"]]]': 1,
      '["arr",[]]': 2,
    });

    // Dead letters: the right code at the right source offset, original bytes and headers kept.
    const byOffset = new Map<number, ReadMessage[]>();
    for (const l of letters) {
      const off = Number(l.headers['vigil-source-offset']);
      byOffset.set(off, [...(byOffset.get(off) ?? []), l]);
    }
    expect(letters).toHaveLength(expectedLetters);
    bad.forEach(([value, codes], i) => {
      const got = byOffset.get(baseOffset + i) ?? [];
      expect(got.map((l) => l.headers['vigil-error-code']), `message ${i}`).toEqual(codes);
      for (const l of got) {
        expect(l.headers['vigil-source-topic']).toBe(topic);
        expect(l.headers['vigil-source-partition']).toBe('0');
        expect(l.headers['origin']).toBe('test');
        expect(l.key).toBe('bad');
        expect(l.headers['vigil-error-reason']?.length).toBeGreaterThan(5);
      }
      const whole = got.every((l) => l.headers['vigil-source-line'] === undefined && l.headers['vigil-source-element'] === undefined);
      if (whole) for (const l of got) expect(l.value.equals(value)).toBe(true);
    });
    const line = byOffset.get(baseOffset + 13)?.[0];
    expect(line?.headers['vigil-source-line']).toBe('2');
    expect(line?.value.toString()).toBe(`cpu,host=a value= ${tsNs}`);
    const element = byOffset.get(baseOffset + 14)?.[0];
    expect(element?.headers['vigil-source-element']).toBe('1');
    expect(JSON.parse(element?.value.toString() ?? '')).toEqual({ metric_id: 'arr', value: 'x', timestamp: ts });

    // Pinned shards: every series has state in exactly one shard, and both shards hold some.
    const perShard = await Promise.all([0, 1].map((shard) => pipeline.metric('vigil_series_active', { shard: String(shard) })));
    expect(perShard.reduce((a, b) => a + b, 0)).toBe(stored.size);
    expect(Math.min(...perShard)).toBeGreaterThan(0);

    // Counted in /metrics by code.
    expect(await pipeline.metric('vigil_dead_letters_total', { code: 'VIGIL_ERR_DECODE_VALUE' })).toBe(4);
    expect(await pipeline.metric('vigil_dead_letters_total', { code: 'VIGIL_ERR_DECODE_EMPTY' })).toBe(2);
    expect(await pipeline.metric('vigil_dead_letters_total')).toBe(expectedLetters);
    expect(await pipeline.metric('vigil_rows_inserted_total', { table: 'points' })).toBe(expectedPoints);
  });

  it('gives the same result when kcat produces the JSON and line-protocol messages', async () => {
    const ts = Date.now() - 120_000;
    const json = Array.from({ length: 300 }, (_, i) => JSON.stringify({ name: 'kcat.json', value: i, timestamp: ts + i, labels: { src: 'kcat', n: String(i % 3) } }));
    // kcat -D: one message per record separator, so a message can hold several lines.
    const influx = Array.from({ length: 40 }, (_, m) =>
      Array.from({ length: 5 }, (_, j) => `kcat_influx,src=kcat,m=${m % 4} v=${m * 5 + j},w=${j}i ${(ts + m * 5 + j) * 1_000_000}`).join('\n'),
    );
    await kcat(['-b', broker, '-t', kcatTopic, '-P', '-D', '\u001e'], [...json, ...influx].join('\u001e'));
    const expected = 300 + 40 * 5 * 2;
    await waitFor('kcat points in ClickHouse', async () => (await count(db, 'points_dedup', `WHERE source_topic = '${kcatTopic}'`)) >= expected, 60_000);
    const stored = await storedSeries(db, kcatTopic);
    expect([...stored.values()].reduce((a, v) => a + v.n, 0)).toBe(expected);
    expect(stored.get('["kcat.json",[["n","0"],["src","kcat"]]]')).toEqual({ n: 100, sum: Array.from({ length: 100 }, (_, k) => 3 * k).reduce((a, b) => a + b, 0) });
    const vSum = Array.from({ length: 200 }, (_, k) => k).reduce((a, b) => a + b, 0);
    const vStored = [...stored].filter(([k]) => k.startsWith('["kcat_influx.v"')).reduce((a, [, v]) => a + v.sum, 0);
    expect(vStored).toBe(vSum);
    expect(stored.get('["kcat_influx.w",[["m","0"],["src","kcat"]]]')?.n).toBe(50);
  });
});
