import { afterAll, describe, expect, it } from 'vitest';
import { defaultLabelledOptions, labelledWorkload, produceLabelled, type LabelledWorkload } from '../../../bench/anomalies.js';
import { produce } from '../../../bench/generator.js';
import { MINUTE_MS, RulesFile, iso, readAlertsTopic, type TopicAlert } from '../../helpers/alerts.js';
import { expectRollupsMatchPoints } from '../../helpers/rollups.js';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';

/**
 * Every series judged whole however producers partition it (issue 12): points produced without
 * keys land on every partition; with kafka.repartition (default `auto`) the stateful stages see
 * each series whole through the repartition topic.
 */
const res = useResources();
const start = usePipelines();
const broker = res.config.kafka.brokers[0] as string;
const cleanups: (() => void)[] = [];
afterAll(() => cleanups.forEach((f) => f()));

/**
 * The shipped rule on the counter (its increase), and copies with higher thresholds on a gauge
 * that reports each 10 s's failures (their sum): a partition holds a quarter of the sum, and only
 * the whole series reaches 60.
 */
const RULES = `
rules:
  - id: auth-10
    expr: "crypto.key.unauthorized_access > 10 in 5m"
  - id: auth-30
    expr: "crypto.key.unauthorized_access > 30 in 5m"
  - id: failures-10
    kind: rate
    metric: auth.failures
    aggregate: sum
    op: ">"
    value: 10
    window: 5m
  - id: failures-30
    kind: rate
    metric: auth.failures
    aggregate: sum
    op: ">"
    value: 30
    window: 5m
  - id: failures-55
    kind: rate
    metric: auth.failures
    aggregate: sum
    op: ">"
    value: 55
    window: 5m
`;
const RULE_IDS = ['auth-10', 'auth-30', 'failures-10', 'failures-30', 'failures-55'];

/** One-minute buckets closed by event time only (as the alert tests): lateness 0, no wall-clock close. */
const ENV = {
  VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
  VIGIL_MODELS_WIDTH_SECONDS: '60',
  VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '0',
  VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '86400000',
  VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
  VIGIL_MODELS_ENABLED: 'false',
};

/** A small deterministic generator, so each run spreads the points over the partitions alike. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/**
 * The issue's counter: 2 unauthorized accesses every 10 s for 5 minutes (60 in all), then none
 * for 8 minutes (the buckets close and the alerts resolve), each message on a random partition;
 * the same failures as a gauge of each 10 s's count beside it.
 */
async function produceCounter(topic: string, partitions: number): Promise<{ perPartition: number[] }> {
  const t0 = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS - 120 * MINUTE_MS;
  const random = lcg(12);
  const perPartition = Array.from({ length: partitions }, () => 0);
  const producer = res.kafka.producer();
  await producer.connect();
  for (let k = 0; k <= 78; k++) {
    const partition = Math.floor(random() * partitions);
    perPartition[partition] = (perPartition[partition] as number) + 1;
    const timestamp = iso(t0 + k * 10_000);
    const counter = { metric_id: 'crypto.key.unauthorized_access', metric_type: 'counter', value: Math.min(k, 30) * 2, timestamp, tags: { key_type: 'signing' } };
    const gauge = { metric_id: 'auth.failures', value: k >= 1 && k <= 30 ? 2 : 0, timestamp, tags: { key_type: 'signing' } };
    await producer.send({ topic, acks: -1, messages: [{ partition, value: [counter, gauge].map((p) => JSON.stringify(p)).join('\n') }] });
  }
  await producer.disconnect();
  return { perPartition };
}

const firing = (msgs: readonly TopicAlert[], rule: string) => msgs.find((m) => m.event.rule.id === rule && m.event.status === 'firing');

describe('a counter produced without keys over 4 partitions (real Kafka and ClickHouse)', () => {
  it.for([
    { mode: 'auto', whole: true },
    { mode: 'never', whole: false },
  ] as const)('kafka.repartition=$mode: the rules see the whole series: $whole', { timeout: 150_000 }, async ({ mode, whole }, { annotate }) => {
    const { topic, env } = await res.pipelineEnv(`repart_${mode}`, 4);
    const rules = new RulesFile(RULES);
    cleanups.push(() => rules.remove());
    const repartitionTopic = await res.topic(`repart_${mode}_internal`, 3);
    const pipeline = await start({ ...env, ...ENV, VIGIL_ALERTS_RULES_FILE: rules.path, VIGIL_KAFKA_REPARTITION: mode, VIGIL_KAFKA_REPARTITION_TOPIC: repartitionTopic });
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const { perPartition } = await produceCounter(topic, 4);
    expect(perPartition.every((n) => n > 0)).toBe(true);
    // Every bucket of the episode closes: the last minute's points are past it.
    const msgs = await waitFor<TopicAlert[]>(
      'the rules settled',
      async () => {
        const m = await readAlertsTopic(broker, alertsTopic);
        const resolved = (rule: string) => m.some((x) => x.event.rule.id === rule && x.event.status === 'resolved');
        // Judged in pieces (never), whether a piece of the gauge passes 10 depends on how the
        // partitions interleave in the shard (a rehearsal saw it not fire): only the counter's
        // rule, right either way, tells that the episode's buckets have closed.
        return resolved('auth-10') && (!whole || (resolved('failures-10') && resolved('failures-55'))) ? m : undefined;
      },
      60_000,
    ).catch(() => [] as TopicAlert[]);
    // Whatever could still come has come: the last bucket is closed on every path.
    await new Promise((r) => setTimeout(r, 3000));
    const all = await readAlertsTopic(broker, alertsTopic);
    const values = Object.fromEntries(RULE_IDS.map((r) => [r, firing(all, r)?.event.value ?? null]));
    await annotate(`points per partition: ${perPartition.join(', ')}; firing values: ${JSON.stringify(values)}; forwarded: ${await pipeline.metric('vigil_repartition_points_total')}`);
    // Had the rules not settled in time, say which events did come (a rehearsal once failed here).
    expect(msgs.length, `events after 60 s: ${all.map((m) => `${m.event.rule.id}:${m.event.status}`).join(', ')}; ${pipeline.output.slice(-2000)}`).toBeGreaterThan(0);
    // The counter's rule fires either way: each partition's thinned copy rises at the same rate.
    expect(values['auth-10']).toBeGreaterThan(10);
    if (whole) {
      // How far it gets judged in pieces depends on how the partitions interleave: a minute is
      // judged from the first partition to close it, and a partition that runs ahead leaves the
      // others' pieces of earlier minutes unjudged (a cluster rehearsal saw 12, never 30). Whole,
      // the five minutes' increase is there.
      expect(values['auth-30']).toBeGreaterThan(30);
      expect(values['failures-10']).toBeGreaterThan(10);
      expect(values['failures-30']).toBeGreaterThan(30);
      // The true count over five minutes is 60: only the whole series reaches it.
      expect(values['failures-55']).toBeGreaterThan(55);
      expect(values['failures-55']).toBeLessThanOrEqual(60);
      expect(await pipeline.metric('vigil_repartition_points_total')).toBe(2 * 79);
      expect(await pipeline.metric('vigil_series_split_total')).toBe(0);
      // One firing per rule: the series is judged in one place.
      for (const r of RULE_IDS) expect(all.filter((m) => m.event.rule.id === r && m.event.status === 'firing'), r).toHaveLength(1);
    } else {
      // Each partition holds a thinned copy: about a quarter of the count, never the whole of it.
      expect(values['failures-30']).toBeNull();
      expect(values['failures-55']).toBeNull();
      expect(await pipeline.metric('vigil_repartition_points_total')).toBe(0);
      // Visible: both series reached the shards from several partitions.
      expect(await pipeline.metric('vigil_series_split_total')).toBe(2);
    }
  });
});

describe('kill -9 with every point through the repartition topic (two instances, real Kafka and ClickHouse)', () => {
  it('an instance killed mid-stream and restarted: nothing lost, nothing doubled across both hops (rollups equal the raw points)', async ({ annotate }) => {
    const { topic, db, env: base } = await res.pipelineEnv('repart_crash', 4);
    const internal = base['VIGIL_KAFKA_REPARTITION_TOPIC'] as string;
    const env = {
      ...base,
      VIGIL_KAFKA_REPARTITION: 'always',
      VIGIL_KAFKA_SESSION_TIMEOUT_MS: '6000',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1000',
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '5,10',
      VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '1000',
      VIGIL_PIPELINE_INSERT_MAX_ROWS: '10000',
      VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
      VIGIL_PIPELINE_TASK_MAX_MESSAGES: '2000',
    };
    const a = await start(env);
    const b = await start(env);
    const rate = 20_000;
    const producing = produce(res.kafka, { topic, series: 500, pointsPerMessage: 1, format: 'json', rate, points: 150_000, durationMs: 0, intervalMs: Math.round((500 * 1000) / rate), startMs: Date.now(), seed: 5 });
    await waitFor('rollups flowing through the second stage', async () => (await res.scalar(`SELECT count() FROM ${db}.rollups`)) > 1_000, 60_000, 100);
    a.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    const c = await start(env);
    const sent = await producing;
    await waitFor('every point in points_dedup', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= sent.points, 90_000, 500);
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(sent.points);
    const gauges = await res.scalar(`SELECT count() FROM ${db}.points_dedup WHERE type = 'gauge'`);
    await waitFor('every gauge point in both widths of the rollups', async () => (await res.scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE type = 'gauge'`)) >= 2 * gauges, 90_000, 500);
    // Exactly once across both hops: the merged rollups are the aggregates of the raw points,
    // bucket by bucket (a point forwarded twice and applied twice would double a count).
    await expectRollupsMatchPoints(res.clickhouse(), db, [5, 10]);
    const forwarded = (await b.metric('vigil_repartition_points_total')) + (await c.metric('vigil_repartition_points_total'));
    expect(forwarded).toBeGreaterThan(0);
    // Rollup rows come from the second stage: their source is the repartition topic.
    expect(await res.scalar(`SELECT uniqExact(source_topic) FROM ${db}.rollups WHERE source_topic = '${internal}'`)).toBe(1);
    expect(await res.scalar(`SELECT count() FROM ${db}.rollups WHERE source_topic != '${internal}'`)).toBe(0);
    await annotate(`${sent.points} points; forwarded by the survivors ${forwarded} (the killed instance's count died with it); gauge points ${gauges}`);
  }, 240_000);
});

describe('the labelled anomaly workload keyed by series and unkeyed (real Kafka and ClickHouse)', () => {
  const WIDTH_MS = 60_000;
  const MODEL_ENV = {
    VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
    VIGIL_MODELS_WIDTH_SECONDS: '60',
    VIGIL_MODELS_THRESHOLD: '0.5',
    VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '1000',
    VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1000',
    VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
    // The per-series detectors. The isolation forest is fitted per shard thread on all the series
    // it holds, when enough buckets arrived: another interleaving of series (another
    // partitioning, another instance count) fits it at other moments, so its scores are not
    // comparable run to run (README, Series spread over partitions).
    VIGIL_MODELS_DETECTORS: 'robust,ewma,seasonal',
  };
  const ANOMALY_RULES = `
rules:
  - id: synthetic-anomaly
    kind: anomaly
    metric: synthetic.value
    score: 0.5
    buckets: 1
  - id: synthetic-high
    kind: threshold
    metric: synthetic.value
    of: max
    op: ">"
    value: 150
    for: 2m
`;
  const seriesTag = "`tags.value`[indexOf(`tags.key`, 'series')]";

  /** The workload (12 series, 12 hours of one-minute buckets) ending at the current minute. */
  function workload(): LabelledWorkload {
    const buckets = 720;
    const endMs = Math.floor(Date.now() / WIDTH_MS) * WIDTH_MS;
    return labelledWorkload(defaultLabelledOptions({ widthMs: WIDTH_MS, series: 12, seed: 21, buckets, cleanBuckets: 120, periodMs: 6 * 3_600_000, startMs: endMs - buckets * WIDTH_MS }));
  }

  /** Runs the workload through `instances` pipelines and returns its anomaly rows and alert events, comparable across runs. */
  async function run(name: string, w: LabelledWorkload, keyed: boolean, instances: number, mode: string): Promise<{ rows: string[]; alerts: string[]; flagged: number }> {
    const { topic, db, env } = await res.pipelineEnv(name, 4);
    const rules = new RulesFile(ANOMALY_RULES);
    cleanups.push(() => rules.remove());
    const all = { ...env, ...MODEL_ENV, VIGIL_KAFKA_REPARTITION: mode, VIGIL_ALERTS_RULES_FILE: rules.path, VIGIL_KAFKA_SESSION_TIMEOUT_MS: '6000' };
    const pipelines = [];
    for (let i = 0; i < instances; i++) pipelines.push(await start(all));
    const { points } = await produceLabelled(res.kafka, { topic, workload: w, pointsPerBucket: 2, format: 'json', ...(keyed ? {} : { unkeyed: { partitions: 4, seed: 7 } }) });
    let want = 0;
    for (const s of w.series) for (const v of s.values) if (!Number.isNaN(v)) want++;
    if (mode === 'never' && !keyed) {
      // Judged in pieces: a series' bucket is scored once, from whichever partition closed it
      // first, so fewer rows than buckets; wait for every bucket's rollup instead.
      await waitFor('a rollup for every bucket', async () => (await res.scalar(`SELECT count() FROM ${db}.rollups_merged`)) >= want, 120_000, 500);
    } else {
      await waitFor('an anomalies row for every closed bucket', async () => (await res.scalar(`SELECT count() FROM ${db}.anomalies_dedup`)) >= want, 120_000, 500).catch(() => undefined);
      const got = await res.scalar(`SELECT count() FROM ${db}.anomalies_dedup`);
      // Seen once in a CI rehearsal (3 instances: 7,650 of 8,474 rows after 120 s), not reproduced
      // in 5 runs, also under load: if it comes back, which series stopped, and what the pipelines said.
      let stopped = '';
      if (got !== want) {
        const perSeries = await res.clickhouse().query({ query: `SELECT ${seriesTag} AS s, count() AS n, max(bucket_start) AS last FROM ${db}.anomalies_dedup GROUP BY s ORDER BY s`, format: 'JSONCompact' });
        const said = (
          await Promise.all(
            pipelines.map(
              async (p, i) =>
                `#${i} exit ${String(p.child.exitCode)}: ${await p.metricLines(['vigil_late_points_total', 'vigil_buckets_closed_total', 'vigil_buckets_scored_total', 'vigil_rebalances_total', 'vigil_repartition_points_total'])}\n${p.output.slice(-2000)}`,
            ),
          )
        ).join(' | ');
        stopped = `; rows per series: ${JSON.stringify(((await perSeries.json()) as unknown as { data: unknown[] }).data)}; pipelines: ${said}`;
      }
      expect(got, `${name}: anomaly rows (rollup buckets ${await res.scalar(`SELECT count() FROM ${db}.rollups_merged`)}, points ${await res.scalar(`SELECT count() FROM ${db}.points_dedup`)} of ${points})${stopped}`).toBe(want);
    }
    await waitFor('the points stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= points, 60_000, 500);
    // Nothing more may come: settled when a few seconds pass without a new row.
    await new Promise((r) => setTimeout(r, 4000));
    const rs = await res.clickhouse().query({
      query:
        `SELECT ${seriesTag} AS s, toUInt32(bucket_start) AS b, round(value, 9) AS v, round(score, 9) AS score, anomaly, ` +
        `round(score_robust, 9) AS r, round(score_ewma, 9) AS e, round(score_seasonal, 9) AS se, round(score_iforest, 9) AS f FROM ${db}.anomalies_dedup ORDER BY s, b`,
      format: 'JSONEachRow',
    });
    const rows = (await rs.json<Record<string, unknown>>()).map((r) => JSON.stringify(r));
    const alerts = (await readAlertsTopic(broker, env['VIGIL_KAFKA_ALERTS_TOPIC'] as string))
      .map((m) => JSON.stringify([m.event.rule.id, m.event.series.tags['series'], m.event.status, m.event.startsAt, m.event.endsAt, m.event.value]))
      .sort();
    return { rows, alerts, flagged: rows.filter((r) => r.includes('"anomaly":1')).length };
  }

  it('the same anomaly rows and alert events: keyed with 1 instance, unkeyed through the repartition topic with 1 and with 3', async ({ annotate }) => {
    const w = workload();
    const keyed = await run('equiv_keyed', w, true, 1, 'never');
    const unkeyed = await run('equiv_unkeyed', w, false, 1, 'auto');
    const unkeyed3 = await run('equiv_unkeyed3', w, false, 3, 'auto');
    const wrongWhenSplit = await run('equiv_split', w, false, 1, 'never');
    const differ = (a: string[], b: string[]) => a.filter((x, i) => x !== b[i]).length + Math.abs(a.length - b.length);
    await annotate(
      `anomaly rows ${keyed.rows.length} (flagged ${keyed.flagged}), alert events ${keyed.alerts.length}; ` +
        `unkeyed through the repartition topic: rows differing ${differ(keyed.rows, unkeyed.rows)} (1 instance), ${differ(keyed.rows, unkeyed3.rows)} (3 instances); ` +
        `unkeyed without it (kafka.repartition=never): ${wrongWhenSplit.rows.length} rows, ${differ(keyed.rows, wrongWhenSplit.rows)} differing, flagged ${wrongWhenSplit.flagged}, alert events ${wrongWhenSplit.alerts.length}`,
    );
    const firstDiffs = keyed.rows.map((x, i) => [x, unkeyed.rows[i]]).filter(([x, y]) => x !== y).slice(0, 3);
    if (firstDiffs.length > 0) await annotate(`first differences (keyed / unkeyed):\n${firstDiffs.map(([x, y]) => `${x}\n${y}`).join('\n')}`);
    expect(keyed.flagged).toBeGreaterThan(0);
    expect(keyed.alerts.length).toBeGreaterThan(0);
    expect(unkeyed.rows).toEqual(keyed.rows);
    expect(unkeyed.alerts).toEqual(keyed.alerts);
    expect(unkeyed3.rows).toEqual(keyed.rows);
    expect(unkeyed3.alerts).toEqual(keyed.alerts);
    // The test can tell: judged in pieces, the same workload scores differently.
    expect(differ(keyed.rows, wrongWhenSplit.rows)).toBeGreaterThan(0);
  }, 600_000);
});
