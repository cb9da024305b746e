import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { VigilConfig } from '../../../core/config/index.js';
import { rootLogger } from '../../../core/log.js';
import { startIncidents } from '../../../pipeline/incidents.js';
import { createMetrics } from '../../../pipeline/metrics.js';
import { ClickHouseSink } from '../../../sinks/clickhouse/index.js';
import { incidentsOf } from '../../../sinks/clickhouse/incidents.js';
import { seriesId, sortTags } from '../../../workers/series.js';
import { MINUTE_MS, PointProducer, RulesFile, iso, readAlertsTopic, type Point } from '../../helpers/alerts.js';
import { PipelineProcess, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';

const res = useResources();
const broker = res.config.kafka.brokers[0] as string;
const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
});
const T = Date.UTC(2026, 0, 5, 10) / 1000;

interface IncidentRow {
  incident_id: string;
  series_count: number;
  'members.metric': string[];
  'members.onset': string[];
  related: string;
}

describe('incidents from the anomalies table (18.16)', () => {
  it('groups co-occurring onsets across series into incidents, ranks members, finds related series once one is over, and writes only what changed', async () => {
    const db = await res.migratedDatabase('incidents');
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    const anomaly = (id: number, metric: string, t: number, flagged: 0 | 1, score: number, version: number) =>
      `(${id}, '${metric}', ['host'], ['h${id}'], 'gauge', 60, ${t}, ${score}, ${flagged}, ${version})`;
    const insertAnomalies = (rows: string[]) => res.clickhouse().command({ query: `INSERT INTO ${db}.anomalies (series_id, metric, tags.key, tags.value, type, width_s, bucket_start, score, anomaly, version) VALUES ${rows.join(', ')}` });
    await insertAnomalies([
      anomaly(1, 'app.latency', T, 1, 0.8, 2),
      // A replay's lower version of the same bucket: FINAL keeps the onset.
      anomaly(1, 'app.latency', T, 0, 0.1, 1),
      anomaly(2, 'app.errors', T + 120, 1, 0.95, 5),
      anomaly(3, 'db.latency', T + 300, 1, 0.7, 5),
      // Flagged by a replay that knew less, unflagged by the better-informed row: no onset.
      anomaly(5, 'app.cpu', T + 60, 1, 0.9, 1),
      anomaly(5, 'app.cpu', T + 60, 0, 0.2, 3),
      // Two hours later, a second incident; the newest scored bucket, a minute after it.
      anomaly(4, 'app.latency', T + 7200, 1, 0.6, 9),
      anomaly(4, 'app.latency', T + 7260, 0, 0.1, 10),
    ]);
    // Rollups around the first incident: db.connections follows app.latency's first series a minute later; db.noise does not.
    const shape = (i: number) => Math.sin(i / 3) + 0.4 * Math.cos(i * 1.7);
    const rollups: string[] = [];
    for (let i = -10; i <= 15; i++) {
      const t = T + i * 60;
      rollups.push(`(1, 'app.latency', ['host'], ['h1'], 60, ${t}, 1, ${100 + 20 * shape(i)})`);
      rollups.push(`(6, 'db.connections', ['host'], ['h6'], 60, ${t}, 1, ${50 + 5 * shape(i - 1)})`);
      rollups.push(`(7, 'db.noise', ['host'], ['h7'], 60, ${t}, 1, ${(Math.sin(i * 12.9898) * 43758.5453) % 1})`);
    }
    await res.clickhouse().command({ query: `INSERT INTO ${db}.rollups (series_id, metric, tags.key, tags.value, width_s, bucket_start, count, sum) VALUES ${rollups.join(', ')}` });

    const config = { ...res.config, clickhouse: { ...res.config.clickhouse, database: db }, models: { ...res.config.models, enabled: true, widthSeconds: 60 }, incidents: { ...res.config.incidents, windowSeconds: 600 } } as VigilConfig;
    const metrics = createMetrics();
    const job = startIncidents(sink, config, metrics, rootLogger('silent'));
    expect(await job.pass()).toBe(2);
    const read = async () => (await res.clickhouse().query({ query: `SELECT incident_id, series_count, members.metric, members.onset, related FROM ${db}.incidents_dedup ORDER BY started_at`, format: 'JSONEachRow' })).json<IncidentRow>();
    const [a, b] = await read();
    expect(a?.incident_id).toBe(`${(1n).toString(16).padStart(16, '0')}-${T}`);
    expect(a?.['members.metric']).toEqual(['app.latency', 'app.errors', 'db.latency']);
    expect(a?.series_count).toBe(3);
    // Over (no onset for the window since): its related series, db.connections a minute behind.
    const related = JSON.parse(a?.related ?? '') as { metric: string; r: number; lagSeconds: number }[];
    expect(related.map((r) => [r.metric, r.lagSeconds])).toEqual([['db.connections', 60]]);
    expect(related[0]?.r).toBeGreaterThan(0.99);
    // The second incident is still open: no related series yet.
    expect(b?.['members.metric']).toEqual(['app.latency']);
    expect(b?.related).toBe('');

    // Nothing changed: nothing written. A new onset joins the open incident: one new version.
    expect(await job.pass()).toBe(0);
    await insertAnomalies([anomaly(8, 'app.errors', T + 7320, 1, 0.99, 1)]);
    expect(await job.pass()).toBe(1);
    const [, b2] = await read();
    expect(b2?.['members.metric']).toEqual(['app.latency', 'app.errors']);
    expect(await res.scalar(`SELECT count() FROM ${db}.incidents_dedup`)).toBe(2);
    // Another instance (a fresh job) computes the same incidents: the table still holds two.
    const other = startIncidents(sink, config, metrics, rootLogger('silent'));
    expect(await other.pass()).toBe(2);
    other.stop();
    job.stop();
    expect(await res.scalar(`SELECT count() FROM ${db}.incidents_dedup`)).toBe(2);
    expect(await metrics.registry.getSingleMetricAsString('vigil_incidents_written_total')).toMatch(/vigil_incidents_written_total 5/);
    await sink.close();
  });

  it('places a series in the incident its onset chains into, reading back as far as the chain goes', async () => {
    const db = await res.migratedDatabase('incidents_of');
    // A chain of onsets 5 minutes apart over 2 hours (series 1..25), then a gap, then series 30.
    const rows: string[] = [];
    for (let k = 0; k < 25; k++) rows.push(`(${k + 1}, 'chain.m', ['k'], ['${k}'], 'gauge', 60, ${T + k * 300}, 0.9, 1, 1)`);
    rows.push(`(30, 'lone.m', [], [], 'gauge', 60, ${T + 24 * 300 + 1800}, 0.9, 1, 1)`);
    await res.clickhouse().command({ query: `INSERT INTO ${db}.anomalies (series_id, metric, tags.key, tags.value, type, width_s, bucket_start, score, anomaly, version) VALUES ${rows.join(', ')}` });
    const last = T + 24 * 300;
    const ids = await incidentsOf(res.clickhouse(), db, 60, 600, 86400, [
      { seriesId: '25', fromS: last - 600, toS: last },
      { seriesId: '30', fromS: last, toS: last + 3600 },
      // Its onset lies outside the span asked about.
      { seriesId: '4', fromS: last - 600, toS: last },
    ]);
    // The chain's first onset names it, two hours before the span asked about.
    expect(ids).toEqual([`${(1n).toString(16).padStart(16, '0')}-${T}`, `${(30n).toString(16).padStart(16, '0')}-${last + 1800}`, null]);
    // A lookback shorter than the chain: the incident as the pass would see it within the lookback.
    const short = await incidentsOf(res.clickhouse(), db, 60, 600, 3600, [{ seriesId: '25', fromS: last - 600, toS: last }]);
    expect(short[0]).not.toBe(ids[0]);
  });
});

describe('incidents from a running pipeline (Kafka, ClickHouse 18.16)', () => {
  it('groups the onsets of series that broke together into one incident, and each anomaly alert names it', async () => {
    const run = randomBytes(4).toString('hex');
    // Two partitions, messages not keyed by series: the series meet again in the shards.
    const { topic, db, env } = await res.pipelineEnv('incidents_run', 2);
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const file = new RulesFile(`
rules:
  - id: test-anomaly
    kind: anomaly
    metric: "vigil.test.*"
    tags: { run: "${run}" }
    score: 0.8
    buckets: 1
`);
    cleanups.push(() => file.remove());
    const pipeline = await PipelineProcess.start({
      ...env,
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
      VIGIL_MODELS_WIDTH_SECONDS: '60',
      VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '0',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '86400000',
      VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
      VIGIL_ALERTS_RULES_FILE: file.path,
      VIGIL_INCIDENTS_INTERVAL_MS: '1000',
      // Episodes (the anomalies table's onsets) may start after 30 buckets instead of two days.
      VIGIL_MODELS_LEARNING_BUCKETS: '30',
    });
    cleanups.push(() => pipeline.stop());
    const producer = new PointProducer(res.kafka, topic);
    cleanups.push(() => producer.close());
    const tags = { run, host: 'web-1' };
    // The api's latency breaks at step 60, its errors three minutes later, the database's latency two after that; the cpu never.
    const broken: Record<string, number> = { 'vigil.test.latency': 60, 'vigil.test.errors': 63, 'vigil.test.db_latency': 65 };
    const metrics = [...Object.keys(broken), 'vigil.test.cpu'];
    const t0 = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS - 120 * MINUTE_MS;
    const step = (i: number): Point[] =>
      metrics.map((metric, m) => ({ metric_id: metric, value: (i === broken[metric] ? 300 : 100) + 3 * Math.sin(i * 1.7 + m) + 2 * Math.cos(i * 0.37 + 2 * m), timestamp: iso(t0 + i * MINUTE_MS + 30_000), tags }));
    const steps = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => step(from + k));
    const firings = async () => (await readAlertsTopic(broker, alertsTopic)).map((m) => m.event).filter((e) => e.status === 'firing');
    // First the stream up to the latency's break: its bucket closes once both partitions are past
    // its end (messages go round robin), by step 62. Then the rest, once it has fired.
    await producer.send(steps(0, 62));
    await waitFor('the latency alert', async () => (await firings()).some((e) => e.series.metric === 'vigil.test.latency'), 60_000, 250);
    await producer.send(steps(63, 100));

    const hex = (metric: string) => seriesId(metric, sortTags(Object.entries(tags).flat())).toString(16).padStart(16, '0');
    const id = `${hex('vigil.test.latency')}-${(t0 + 60 * MINUTE_MS) / 1000}`;
    const events = await waitFor(
      'the three anomaly alerts',
      async () => {
        const f = await firings();
        return Object.keys(broken).every((metric) => f.some((e) => e.series.metric === metric)) && f;
      },
      60_000,
      250,
    );
    for (const metric of Object.keys(broken)) {
      const e = events.find((x) => x.series.metric === metric);
      expect(e?.startsAt, metric).toBe(iso(t0 + ((broken[metric] as number) + 1) * MINUTE_MS));
      expect(e?.explanation['incident'], metric).toBe(id);
    }
    expect(events.filter((e) => e.series.metric === 'vigil.test.cpu')).toEqual([]);
    // The incident itself, once over (10 minutes of event time after its last onset), as the pipeline wrote it.
    const row = await waitFor(
      'the incident',
      async () => {
        const rs = await res.clickhouse().query({ query: `SELECT incident_id, members.metric AS m, arrayMap(x -> toUInt32(x), members.onset) AS o, related FROM ${db}.incidents FINAL WHERE incident_id = '${id}'`, format: 'JSONEachRow' });
        const r = (await rs.json<{ incident_id: string; m: string[]; o: string[]; related: string }>())[0];
        return r && r.related !== '' && r;
      },
      60_000,
      250,
    );
    expect(row.m).toEqual(Object.keys(broken));
    expect(row.o.map((t) => (Number(t) * 1000 - t0) / MINUTE_MS)).toEqual([60, 63, 65]);

  });
});
