import { afterAll, describe, expect, it } from 'vitest';
import { MINUTE_MS, RulesFile, iso, readAlertsTopic, type TopicAlert } from '../../helpers/alerts.js';
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
 * The counter: 2 unauthorized accesses every 10 s for 5 minutes (60 in all), then none
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
        return resolved('auth-10') && resolved('failures-10') && (!whole || resolved('failures-55')) ? m : undefined;
      },
      60_000,
    ).catch(() => [] as TopicAlert[]);
    // Whatever could still come has come: the last bucket is closed on every path.
    await new Promise((r) => setTimeout(r, 3000));
    const all = await readAlertsTopic(broker, alertsTopic);
    const values = Object.fromEntries(RULE_IDS.map((r) => [r, firing(all, r)?.event.value ?? null]));
    await annotate(`points per partition: ${perPartition.join(', ')}; firing values: ${JSON.stringify(values)}; forwarded: ${await pipeline.metric('vigil_repartition_points_total')}`);
    expect(msgs.length).toBeGreaterThan(0);
    // The counter's increase is right either way (each partition's thinned copy still rises by 60).
    expect(values['auth-10']).toBeGreaterThan(10);
    expect(values['auth-30']).toBeGreaterThan(30);
    if (whole) {
      expect(values['failures-10']).toBeGreaterThan(10);
      expect(values['failures-30']).toBeGreaterThan(30);
      // The true count over five minutes is 60: only the whole series reaches it.
      expect(values['failures-55']).toBeGreaterThan(55);
      expect(values['failures-55']).toBeLessThanOrEqual(60);
      expect(await pipeline.metric('vigil_repartition_points_total')).toBe(2 * 79);
      // One firing per rule: the series is judged in one place.
      for (const r of RULE_IDS) expect(all.filter((m) => m.event.rule.id === r && m.event.status === 'firing'), r).toHaveLength(1);
    } else {
      // Each partition holds a thinned copy: about a quarter of the count, never the whole of it.
      expect(values['failures-30']).toBeNull();
      expect(values['failures-55']).toBeNull();
      expect(await pipeline.metric('vigil_repartition_points_total')).toBe(0);
    }
  });
});
