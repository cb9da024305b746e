import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../../../bench/process.js';
import { MINUTE_MS, PointProducer, RulesFile, iso, readAlertsTopic, type Point } from '../../helpers/alerts.js';
import { PipelineProcess, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';

const res = useResources();
const broker = res.config.kafka.brokers[0] as string;
const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
});

/** One-minute buckets closed by event time only (as in alerts.test.ts): the stream lies in the past. */
const FORECAST_ENV = {
  VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
  VIGIL_MODELS_WIDTH_SECONDS: '60',
  VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '0',
  VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '86400000',
  VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
  VIGIL_FORECASTS_HORIZON_SECONDS: '7200',
  VIGIL_FORECASTS_STEP_SECONDS: '600',
  VIGIL_FORECASTS_REFRESH_SECONDS: '1800',
};

const STEPS = 300;
const rules = (run: string) => `
rules:
  - id: disk-full-soon
    kind: forecast
    metric: vigil.test.disk
    tags: { run: "${run}" }
    op: ">"
    value: 75
    within: 1h
    keepFiringFor: 1h
`;

describe('forecasts from a running pipeline (Kafka, ClickHouse 18.16)', () => {
  it('forecasts the selected series into forecasts, fires a forecast rule on the alerts topic and in alerts, and vigil capacity reads the latest', async () => {
    const run = randomBytes(4).toString('hex');
    const { topic, env } = await res.pipelineEnv('forecasts', 1);
    const db = env['VIGIL_CLICKHOUSE_DATABASE'] as string;
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const file = new RulesFile(rules(run));
    cleanups.push(() => file.remove());
    const pipeline = await PipelineProcess.start({
      ...env,
      ...FORECAST_ENV,
      VIGIL_ALERTS_RULES_FILE: file.path,
      // The disk is selected (and matched by the rule); the load is neither.
      VIGIL_FORECASTS_SERIES: `vigil.test.disk{run="${run}",host="db-1"}`,
    });
    cleanups.push(() => pipeline.stop());
    const producer = new PointProducer(res.kafka, topic);
    cleanups.push(() => producer.close());
    // Five hours back, a minute apart: the disk fills 0.1 a minute from 50 (75 at step 250); the load stays put.
    const t0 = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS - (STEPS + 10) * MINUTE_MS;
    const step = (i: number): Point[] => [
      { metric_id: 'vigil.test.disk', value: 50 + 0.1 * i + 0.02 * Math.sin(i), timestamp: iso(t0 + i * MINUTE_MS + 30_000), tags: { run, host: 'db-1' } },
      { metric_id: 'vigil.test.load', value: 1 + 0.1 * Math.sin(i / 5), timestamp: iso(t0 + i * MINUTE_MS + 30_000), tags: { run, host: 'db-1' } },
    ];
    await producer.send(Array.from({ length: STEPS }, (_, i) => step(i)));

    // Forecasts from the 30th bucket, then every 30 minutes of event time: 12 rows of 10 minutes each, 2 hours out.
    const issued = await waitFor(
      'the forecasts of the disk',
      async () => {
        const rs = await res.clickhouse().query({ query: `SELECT toUInt32(issued_at) AS issued, count() AS n, uniqExact(metric) AS metrics FROM ${db}.forecasts GROUP BY issued ORDER BY issued`, format: 'JSONEachRow' });
        const rows = await rs.json<{ issued: number; n: string; metrics: string }>();
        // The last forecast is due by bucket 299's end at the latest.
        return rows.length >= 8 && rows;
      },
      60_000,
      250,
    );
    // The first at the end of the 30th bucket, the others at multiples of the refresh.
    expect(Number(issued[0]?.issued)).toBe((t0 + 30 * MINUTE_MS) / 1000);
    for (const r of issued) {
      if (r !== issued[0]) expect(Number(r.issued) % 1800, 'aligned to the refresh').toBe(0);
      expect(Number(r.n)).toBe(12);
      expect(Number(r.metrics)).toBe(1);
    }
    const latest = await (await res.clickhouse().query({ query: `SELECT metric, toUInt32(issued_at) AS issued, value, lower_95, upper_95 FROM ${db}.forecasts_latest ORDER BY bucket_start`, format: 'JSONEachRow' })).json<{ metric: string; issued: number; value: number; lower_95: number; upper_95: number }>();
    expect(latest).toHaveLength(12);
    expect(new Set(latest.map((r) => Number(r.issued)))).toEqual(new Set([Math.max(...issued.map((r) => Number(r.issued)))]));
    for (const r of latest) {
      expect(r.metric).toBe('vigil.test.disk');
      expect(r.lower_95).toBeLessThan(r.value);
      expect(r.upper_95).toBeGreaterThan(r.value);
    }
    // Rising: the forecast two hours out is above the forecast ten minutes out.
    expect((latest[11] as { value: number }).value).toBeGreaterThan((latest[0] as { value: number }).value);

    // The forecast rule fired once, by the time the disk itself passed 75, with where it crosses.
    const msgs = await waitFor(
      'the forecast alert',
      async () => {
        const m = await readAlertsTopic(broker, alertsTopic);
        return m.some((x) => x.event.rule.id === 'disk-full-soon' && x.event.status === 'firing') && m;
      },
      30_000,
      250,
    );
    const firing = msgs.filter((m) => m.event.rule.id === 'disk-full-soon' && m.event.status === 'firing');
    expect(firing).toHaveLength(1);
    const event = firing[0]?.event;
    expect(event?.rule.kind).toBe('forecast');
    expect(Date.parse(event?.startsAt ?? '')).toBeLessThanOrEqual(t0 + 251 * MINUTE_MS);
    expect(event?.explanation['predictedAtMs'] as number).toBeGreaterThanOrEqual(Date.parse(event?.startsAt ?? ''));
    await waitFor('the alert in ClickHouse', async () => (await res.scalar(`SELECT count() FROM ${db}.alerts WHERE rule_kind = 'forecast' AND status = 'firing'`)) === 1, 30_000, 250);

    // vigil capacity: the disk reaches 80 within the latest forecast's two hours (the load is not forecast).
    const out = execFileSync('node', [CLI, 'capacity', '--metric', 'vigil.test.%', '--threshold', '80', '--json'], { env: { ...process.env, VIGIL_CLICKHOUSE_DATABASE: db } }).toString().trim().split('\n').map((l) => JSON.parse(l) as { metric: string; tags: Record<string, string>; reachesMs: number | null; issuedMs: number });
    expect(out).toHaveLength(1);
    expect(out[0]?.tags).toEqual({ host: 'db-1', run });
    expect(out[0]?.reachesMs).not.toBeNull();
    expect((out[0]?.reachesMs as number) - (out[0]?.issuedMs as number)).toBeLessThanOrEqual(2 * 3_600_000);
  });
});
