import { Partitioners, type Message } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { readTopic } from '../../helpers/kafka.js';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';
import { insertTarget } from '../../../sinks/clickhouse/index.js';

/**
 * Hostile input through the real Kafka and ClickHouse (issue 13): each bad message costs one dead
 * letter sized to its cause, the good points of the same batches are stored exactly once, and the
 * pipeline keeps consuming afterwards.
 */
const res = useResources();
const start = usePipelines();

async function send(topic: string, messages: Message[]): Promise<void> {
  const producer = res.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  for (const m of messages) await producer.send({ topic, acks: -1, messages: [{ ...m, partition: 0 }] });
  await producer.disconnect();
}

const good = (i: number, ts = Date.now() - 60_000) => ({ value: JSON.stringify({ name: 'hostile.good', value: i, timestamp: ts, tags: { n: String(i % 5) } }) });

describe('hostile input (one partition, real Kafka and ClickHouse)', () => {
  it('each bad message makes one dead letter sized to its cause; good points around them are stored exactly once; the pipeline goes on', async ({ annotate }) => {
    const { topic, db, env } = await res.pipelineEnv('hostile', 1);
    const pipeline = await start({ ...env, VIGIL_PIPELINE_INSERT_LINGER_MS: '100' });
    const deep = '['.repeat(25_000) + ']'.repeat(25_000);
    const hugeKey = 'k'.repeat(700 * 1024);
    const cases: { name: string; message: Message; code: string; count: number; maxLetterBytes: number; check?: (l: { value: Buffer; headers: Record<string, string> }) => void }[] = [
      { name: '50 KB of nested arrays', message: { value: deep }, code: 'VIGIL_ERR_DECODE_SHAPE', count: 1, maxLetterBytes: 60_000, check: (l) => expect(l.value.toString()).toBe(deep) },
      {
        name: '200 KB [1,1,…]: 100,000 bad elements',
        message: { value: `[${Array.from({ length: 100_000 }, () => '1').join(',')}]` },
        code: 'VIGIL_ERR_DECODE_SHAPE',
        count: 100_000,
        maxLetterBytes: 210_000,
        check: (l) => expect(l.value.toString()).toBe(Array.from({ length: 100_000 }, () => '1').join('\n')),
      },
      {
        name: '22 KB message with a 20 KB header and 100 bad lines',
        message: { value: Array.from({ length: 100 }, (_, i) => `bad line ${i}`).join('\n'), headers: { big: 'h'.repeat(20 * 1024) } },
        code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL',
        count: 100,
        maxLetterBytes: 5_000,
        check: (l) => {
          expect(l.headers['big']).toBeUndefined();
          expect(l.headers['vigil-headers-dropped']).toBe(String(3 + 20 * 1024));
        },
      },
      {
        name: '700 KB point whose one huge tag key holds an object',
        message: { value: `{"name":"x","value":1,"tags":{"${hugeKey}":{}}}` },
        code: 'VIGIL_ERR_DECODE_TAGS',
        count: 1,
        maxLetterBytes: 520 * 1024,
        check: (l) => {
          expect(l.headers['vigil-error-reason']?.length).toBeLessThanOrEqual(520);
          expect(l.headers['vigil-original-size']).toBe(String(hugeKey.length + '{"name":"x","value":1,"tags":{"":{}}}'.length));
        },
      },
      { name: 'an empty JSON array', message: { value: '[]' }, code: 'VIGIL_ERR_DECODE_EMPTY', count: 1, maxLetterBytes: 600 },
    ];
    const messages: Message[] = [];
    for (let i = 0; i < 60; i++) {
      messages.push(good(i));
      const c = cases[i / 10];
      if (Number.isInteger(i / 10) && c) messages.push(c.message);
    }
    await send(topic, messages);
    await waitFor('the good points stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= 60, 90_000);
    // In source order: each task's letters go out as its decoding ends, and tasks end in any order.
    const letters = (await readTopic(res.kafka, env['VIGIL_KAFKA_DLQ_TOPIC'] as string, cases.length)).sort((a, b) => Number(a.headers['vigil-source-offset']) - Number(b.headers['vigil-source-offset']));

    const rows: string[] = [];
    cases.forEach((c, i) => {
      const l = letters[i];
      expect(l?.headers['vigil-error-code'], c.name).toBe(c.code);
      expect(l?.headers['vigil-error-count'], c.name).toBe(String(c.count));
      const size = (l?.value.length ?? 0) + Object.entries(l?.headers ?? {}).reduce((n, [k, v]) => n + k.length + v.length, 0);
      expect(size, c.name).toBeLessThanOrEqual(c.maxLetterBytes);
      if (l) c.check?.(l);
      rows.push(`${c.name}: ${c.code}, 1 letter of ${size} bytes, count ${c.count}`);
    });
    // Still consuming: a message after all of them lands too; nothing else was stored or dead-lettered.
    await send(topic, [good(1000)]);
    await waitFor('the last good point', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= 61, 30_000);
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(61);
    expect(await res.scalar(`SELECT uniqExact(source_offset) FROM ${db}.points_dedup`)).toBe(61);
    expect(await pipeline.metric('vigil_dead_letters_total')).toBe(cases.length);
    expect(await pipeline.metric('vigil_rejected_items_total')).toBe(cases.reduce((n, c) => n + c.count, 0));
    rows.push(`pipeline RSS after: ${Math.round(pipeline.rss() / 1024 / 1024)} MiB`);
    await annotate(rows.join('\n'));
  }, 180_000);

  it('rows ClickHouse refuses for good (a DEFAULT that throws on value 666) are split out and dead-lettered with the server message; every other row of their inserts is stored once; the pipeline goes on', async ({ annotate }) => {
    const { topic, db, env } = await res.pipelineEnv('refused', 1);
    const pipeline = await start({
      ...env,
      VIGIL_PIPELINE_INSERT_LINGER_MS: '500',
      // Points bodies gzip-compressed in the workers: the split reads them back through gunzip.
      VIGIL_CLICKHOUSE_COMPRESSION: 'gzip',
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '10',
      VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '2000',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1500',
    });
    await waitFor('the tables created', async () => (await res.scalar(`SELECT count() FROM system.tables WHERE database = '${db}' AND name IN ('points', 'rollups')`)) === 2, 30_000);
    // What a user's schema change can do to Vigil's tables: rows the server will never store.
    // On a cluster the insert names points_in (schema.ts migration 10): its rows are refused there.
    await res.clickhouse().command({ query: `ALTER TABLE ${db}.${insertTarget('points', res.config.clickhouse.cluster)} ADD COLUMN guard UInt8 DEFAULT throwIf(value = 666)` });
    await res.clickhouse().command({ query: `ALTER TABLE ${db}.rollups ADD COLUMN guard UInt8 DEFAULT throwIf(max = 666)` });
    const ts = Date.now() - 60_000;
    const point = (value: number, tags: Record<string, string>, i: number) => JSON.stringify({ name: 'hostile.refused', value, timestamp: ts + i, tags });
    const messages: Message[] = [];
    for (let m = 0; m < 4; m++) {
      const lines = Array.from({ length: 50 }, (_, i) => point(m * 50 + i, { n: String(i % 5) }, i));
      if (m === 1 || m === 2) lines.splice(20, 0, point(666, { n: 'bad' }, 20));
      messages.push({ value: lines.join('\n') });
    }
    await send(topic, messages);
    await waitFor('the good points stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= 200, 60_000);
    await waitFor('the good series rolled up', async () => (await res.scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE tags.value[1] != 'bad'`)) >= 200, 60_000);
    const letters = await waitFor('the refused rows dead-lettered', async () => {
      const dlq = env['VIGIL_KAFKA_DLQ_TOPIC'] as string;
      const total = (await (await res.admin()).fetchTopicOffsets(dlq)).reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
      const l = await readTopic(res.kafka, dlq, total);
      const rows = (t: string) => l.filter((x) => x.headers['vigil-clickhouse-table'] === t).reduce((n, x) => n + Number(x.headers['vigil-error-count']), 0);
      return rows('points') === 2 && rows('rollups') >= 1 ? l : undefined;
    }, 60_000);

    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(200);
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup WHERE value = 666`)).toBe(0);
    expect(await res.scalar(`SELECT uniqExact(source_offset, point_index) FROM ${db}.points_dedup`)).toBe(200);
    const report: string[] = [];
    for (const l of letters) {
      expect(l.headers['vigil-error-code']).toBe('VIGIL_ERR_CLICKHOUSE_REJECTED');
      expect(l.headers['vigil-error-reason']).toContain('throwIf');
      const rows = l.value.toString().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
      expect(rows).toHaveLength(Number(l.headers['vigil-error-count']));
      for (const r of rows) {
        expect(r['metric']).toBe('hostile.refused');
        expect(r['tags']).toEqual({ n: 'bad' });
        if (l.headers['vigil-clickhouse-table'] === 'points') {
          expect(r['value']).toBe(666);
          // The messages that carried them: offsets 1 and 2 of the partition.
          expect(['1', '2']).toContain(r['source_offset']);
          expect(r['point_index']).toBe(20);
        } else expect(r['max']).toBe(666);
      }
      report.push(`${l.headers['vigil-clickhouse-table']}: ${rows.length} row(s), ${l.value.length} bytes, reason "${l.headers['vigil-error-reason']?.slice(0, 120)}"`);
    }
    // Still consuming and storing afterwards.
    await send(topic, [good(1000)]);
    await waitFor('a later point', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= 201, 30_000);
    expect(await pipeline.metric('vigil_rejected_items_total')).toBeGreaterThanOrEqual(3);
    await annotate(report.join('\n'));
  }, 180_000);

  it.each([
    ['capped at its Kafka timestamp (default)', {}, false],
    ['uncapped (pipeline.watermarkMaxAheadMs one year: the old behaviour)', { VIGIL_PIPELINE_WATERMARK_MAX_AHEAD_MS: '31536000000' }, true],
  ] as const)('a point stamped 4 minutes ahead, watermark %s', async (_name, extra, lateExpected) => {
    const { topic, db, env } = await res.pipelineEnv('future', 1);
    const pipeline = await start({
      ...env,
      VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '10',
      VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '2000',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1500',
      ...extra,
    });
    // A real-time stream: each point stamped as it is produced; one device's clock is 4 min ahead.
    const producer = res.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    for (let i = 0; i < 40; i++) {
      if (i === 20) await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: JSON.stringify({ name: 'hostile.ahead', value: 1, timestamp: Date.now() + 240_000 }) }] });
      await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: JSON.stringify({ name: 'hostile.ontime', value: i, timestamp: Date.now() }) }] });
      await new Promise((r) => setTimeout(r, 25));
    }
    await producer.disconnect();
    await waitFor('all points stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= 41, 60_000);
    // Stored as stamped either way; the difference is what the watermark made of the on-time points.
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup WHERE metric = 'hostile.ahead'`)).toBe(1);
    if (lateExpected) {
      await waitFor('late points counted', async () => (await pipeline.metric('vigil_late_points_total')) > 0, 30_000);
      return;
    }
    // Every on-time point lands in a bucket that closes by the idle timeout, none late.
    await waitFor('the on-time buckets closed', async () => (await res.scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE metric = 'hostile.ontime'`)) >= 40, 30_000);
    expect(await res.scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE metric = 'hostile.ontime'`)).toBe(40);
    expect(await pipeline.metric('vigil_late_points_total')).toBe(0);
  }, 120_000);
});

describe('a cardinality storm (real Kafka and ClickHouse, default limits)', () => {
  it('1,000,000 new series: raw points all stored, the shards hold their limit, the rest reported as CARDINALITY, known series keep their rollups; RSS stays under 2 GiB', async ({ annotate }) => {
    const { produce } = await import('../../../bench/generator.js');
    const { topic, db, env } = await res.pipelineEnv('storm', 2);
    const limit = 30_000; // the default of limits.maxSeriesPerShard
    const storm = 1_000_000;
    const pipeline = await start({ ...env, VIGIL_PIPELINE_INSERT_LINGER_MS: '200', VIGIL_ROLLUPS_WIDTHS_SECONDS: '60', VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '2000', VIGIL_LIMITS_MAX_SERIES_PER_SHARD: String(limit) });
    const base = { topic, rate: 0, durationMs: 0, seed: 3, format: 'json' as const, pointsPerMessage: 100 };
    const t0 = Math.floor((Date.now() - 3_600_000) / 60_000) * 60_000;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, pipeline.rss())), 200);
    try {
      // 100 known series, 20 points each (the first 10 minutes), then the storm, then the known ones again.
      await produce(res.kafka, { ...base, series: 100, points: 1000, intervalMs: 60_000, startMs: t0 });
      await produce(res.kafka, { ...base, series: storm, points: storm, intervalMs: 60_000, startMs: t0 + 10 * 60_000, seriesOffset: 1000 });
      await produce(res.kafka, { ...base, series: 100, points: 1000, intervalMs: 60_000, startMs: t0 + 20 * 60_000 });
      const total = storm + 2000;
      await waitFor('every raw point stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points`)) >= total, 300_000);
      expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(total);
      // Each shard admitted storm series up to its limit, less the known series it already held.
      const refused = storm - (2 * limit - 100);
      await waitFor('the refused points reported', async () => (await pipeline.metric('vigil_rejected_items_total', { code: 'VIGIL_ERR_LIMIT_CARDINALITY' })) >= refused, 60_000);
      expect(await pipeline.metric('vigil_rejected_items_total', { code: 'VIGIL_ERR_LIMIT_CARDINALITY' })).toBe(refused);
      expect(await pipeline.metric('vigil_series_active')).toBe(2 * limit);
      // The known series' buckets after the storm still close and roll up: a gauge bucket counts
      // its raw points (a counter's first point after the gap has no rate).
      const after = `bucket_start >= toDateTime(${(t0 + 20 * 60_000) / 1000})`;
      const rawGauges = await res.scalar(`SELECT count() FROM ${db}.points_dedup WHERE type = 'gauge' AND ts >= toDateTime(${(t0 + 20 * 60_000) / 1000})`);
      expect(rawGauges).toBeGreaterThan(0);
      await waitFor('known series rolled up after the storm', async () => (await res.scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE type = 'gauge' AND ${after}`)) >= rawGauges, 60_000);
      expect(await res.scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE type = 'gauge' AND ${after}`)).toBe(rawGauges);
      expect(await res.scalar(`SELECT uniqExact(series_id) FROM ${db}.rollups_merged WHERE ${after}`)).toBe(100);
      const letters = await pipeline.metric('vigil_dead_letters_total', { code: 'VIGIL_ERR_LIMIT_CARDINALITY' });
      expect(letters).toBeGreaterThan(0);
      expect(peak).toBeLessThan(2 * 1024 ** 3);
      await annotate(`1M-series storm: ${refused} points refused in ${letters} letters; peak RSS ${Math.round(peak / 1024 / 1024)} MiB; state bytes ${Math.round((await pipeline.metric('vigil_state_bytes')) / 1024 / 1024)} MiB over both shards`);
    } finally {
      clearInterval(sampler);
    }
  }, 600_000);
});
