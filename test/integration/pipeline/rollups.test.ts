import { Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';
import { expectRollupsMatchPoints, groupByPoints } from '../../helpers/rollups.js';

const res = useResources();
const start = usePipelines();

const scalar = (query: string) => res.scalar(query);

async function pipelineFor(prefix: string, partitions: number, extra: Record<string, string> = {}) {
  const { topic, db, env } = await res.pipelineEnv(prefix, partitions);
  const p = await start({ ...env, VIGIL_PIPELINE_INSERT_LINGER_MS: '100', ...extra });
  return { topic, db, pipeline: p };
}

async function send(topic: string, messages: { partition: number; value: string }[]): Promise<void> {
  const producer = res.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  for (let i = 0; i < messages.length; i += 500) await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 500) });
  await producer.disconnect();
}

/** A deterministic generator for out-of-order and late event times. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

describe('rollups: event-time buckets, watermarks, late data, counter rates', () => {
  it('merged rollups equal a GROUP BY over the raw points for out-of-order and late data, for two widths', async () => {
    const { topic, db, pipeline } = await pipelineFor('rollups', 2, {
      // Each series is produced to one partition (unkeyed): the late-point bracket below models
      // each source partition's own watermark, the direct path (the repartition topic's
      // watermark is the least of its sources', test/integration/pipeline/repartition.test.ts).
      VIGIL_KAFKA_REPARTITION: 'never',
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '10,60',
      VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '3000',
      VIGIL_ROLLUPS_LATE_RETENTION_MS: '20000',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1500',
    });
    const rand = lcg(5);
    const base = Math.floor((Date.now() - 3_600_000) / 60_000) * 60_000;
    const messages: { partition: number; value: string }[] = [];
    const used = Array.from({ length: 6 }, () => new Set<number>());
    for (let i = 0; i < 6000; i++) {
      const series = i % 6;
      const step = Math.floor(i / 6);
      const jitter = Math.floor((rand() - 0.5) * 4000);
      const late = rand() < 0.04 ? -(6_000 + Math.floor(rand() * 60_000)) : 0;
      // Unique per series: with two points at one millisecond, `last` would be ambiguous.
      let ts = base + step * 1000 + jitter + late;
      while (used[series]?.has(ts)) ts++;
      used[series]?.add(ts);
      const value = Math.round(rand() * 10000) / 100;
      messages.push({ partition: series % 2, value: JSON.stringify({ metric_id: 'rollup.gauge', value, timestamp: ts, tags: { s: String(series) } }) });
    }
    await send(topic, messages);
    await waitFor('every point in both widths of the rollups', async () => (await scalar(`SELECT sum(count) FROM ${db}.rollups_merged`)) === 2 * messages.length, 90_000, 500);
    await expectRollupsMatchPoints(res.clickhouse(), db, [10, 60]);
    // Late points were seen as such and still counted (above), not dropped. Which are late depends
    // on where tasks were cut (buckets close at a task's end), so the count is bracketed: every
    // point past its 10 s bucket's end + retention by its own watermark is certainly late (a
    // correction row), and no point whose buckets were all open by that watermark can be.
    let certain = 0;
    let possible = 0;
    const maxBefore = [-Infinity, -Infinity];
    for (const m of messages) {
      const ts = (JSON.parse(m.value) as { timestamp: number }).timestamp;
      const watermark = (maxBefore[m.partition] as number) - 3000;
      if (Math.floor(ts / 10_000) * 10_000 + 10_000 + 20_000 <= watermark) certain++;
      if (Math.floor(ts / 10_000) * 10_000 + 10_000 <= watermark) possible++;
      maxBefore[m.partition] = Math.max(maxBefore[m.partition] as number, ts);
    }
    const late = await pipeline.metric('vigil_late_points_total');
    expect(certain).toBeGreaterThan(0);
    expect(late).toBeGreaterThanOrEqual(certain);
    expect(late).toBeLessThanOrEqual(possible);
  });

  it('computes counter rates with resets against hand-computed values', async () => {
    const { topic, db } = await pipelineFor('counters', 1, { VIGIL_ROLLUPS_WIDTHS_SECONDS: '60', VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '0', VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1000' });
    const t0 = Math.floor((Date.now() - 3_600_000) / 60_000) * 60_000;
    const points: [number, number][] = [
      [0, 1000],
      [15_000, 1300], // +300 / 15 s = 20/s
      [30_000, 1600], // 20/s
      [45_000, 100], // reset: +100 / 15 s = 6.666…/s
      [60_000, 400], // next minute: +300 / 15 s = 20/s
      [90_000, 1000], // +600 / 30 s = 20/s
    ];
    await send(topic, points.map(([dt, v]) => ({ partition: 0, value: JSON.stringify({ metric_id: 'auth.requests', metric_type: 'counter', value: v, timestamp: t0 + dt }) })));
    await waitFor('both counter buckets', async () => (await scalar(`SELECT count() FROM ${db}.rollups_merged WHERE type = 'counter'`)) === 2, 60_000, 300);
    const rs = await res.clickhouse().query({ query: `SELECT toUInt32(bucket_start) - ${t0 / 1000} AS b, count, sum, min, max, last FROM ${db}.rollups_merged WHERE type = 'counter' ORDER BY b`, format: 'JSONEachRow' });
    const got = await rs.json<{ b: number; count: string; sum: number; min: number; max: number; last: number }>();
    expect(got.map((r) => [Number(r.b), Number(r.count)])).toEqual([
      [0, 3],
      [60, 2],
    ]);
    expect(got[0]?.sum).toBeCloseTo(20 + 20 + 100 / 15, 9);
    expect(got[0]?.min).toBeCloseTo(100 / 15, 9);
    expect(got[0]?.max).toBe(20);
    expect(got[0]?.last).toBeCloseTo(100 / 15, 9);
    expect(got[1]).toMatchObject({ sum: 40, min: 20, max: 20, last: 20 });
  });

  it("closes an idle partition's last bucket after the idle timeout", async () => {
    const idleMs = 4000;
    const { topic, db } = await pipelineFor('idle', 2, { VIGIL_ROLLUPS_WIDTHS_SECONDS: '10', VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '1000', VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: String(idleMs) });
    // Recent event times: the data watermark (max − 1 s) cannot pass the last bucket's end.
    const ts = Math.floor((Date.now() - 20_000) / 10_000) * 10_000 + 5_000;
    await send(topic, [0, 1, 2].map((i) => ({ partition: 1, value: JSON.stringify({ metric_id: 'idle.gauge', value: i, timestamp: ts + i }) })));
    await waitFor('the raw points', async () => (await scalar(`SELECT count() FROM ${db}.points`)) === 3, 30_000, 100);
    expect(await scalar(`SELECT count() FROM ${db}.rollups`)).toBe(0);
    await waitFor('the idle close', async () => (await scalar(`SELECT count() FROM ${db}.rollups`)) === 1, idleMs + 20_000, 200);
    expect(await scalar(`SELECT sum(count) FROM ${db}.rollups_merged`)).toBe(3);
    expect((await groupByPoints(res.clickhouse(), db, [10])).size).toBe(1);
  });
});
