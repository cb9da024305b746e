import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../../sinks/alerts/event.js';
import { MINUTE_MS, PointProducer, fingerprintOf, RulesFile, alertmanagerAlerts, episodeOf, expectWellFormed, iso, readAlertsTopic, type Point, type TopicAlert } from '../../helpers/alerts.js';
import { PipelineProcess, waitFor } from '../../helpers/pipeline.js';
import { testConfig, useResources } from '../../helpers/resources.js';
import { startReceiver, type Receiver } from '../../helpers/receiver.js';

const res = useResources();
const broker = res.config.kafka.brokers[0] as string;
const alertmanagerUrl = `http://127.0.0.1:${testConfig().infra.alertmanagerPort}`;
const running: PipelineProcess[] = [];
const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const p of running) await p.stop();
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
});

/**
 * One-minute buckets closed by event time only: lateness 0, so a bucket closes as soon as a point
 * past its end arrives; no wall-clock close (these buckets lie in the past, and an idle close
 * would close them, and check absent rules, against the wall clock at a moment the test does not
 * choose).
 */
const ALERT_ENV = {
  VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
  VIGIL_MODELS_WIDTH_SECONDS: '60',
  VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '0',
  VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '86400000',
  VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
  // A killed member holds its partitions until its session times out; 6 s is the broker's minimum.
  VIGIL_KAFKA_SESSION_TIMEOUT_MS: '6000',
};

async function start(env: Record<string, string>): Promise<PipelineProcess> {
  const p = await PipelineProcess.start(env);
  running.push(p);
  return p;
}

/** Bucket i is [T0 + i min, T0 + (i + 1) min); its point sits in the middle. Three hours back: never "future". */
function timeline() {
  const t0 = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS - 180 * MINUTE_MS;
  return { t0, at: (i: number) => iso(t0 + i * MINUTE_MS + 30_000), end: (i: number) => t0 + (i + 1) * MINUTE_MS };
}


async function topicAlerts(topic: string): Promise<TopicAlert[]> {
  return readAlertsTopic(broker, topic);
}

/** Polls the alerts topic (kcat) until `done` holds for its messages. */
async function untilAlerts(topic: string, what: string, done: (msgs: TopicAlert[]) => boolean, timeoutMs = 30_000): Promise<TopicAlert[]> {
  return waitFor(
    what,
    async () => {
      const msgs = await topicAlerts(topic);
      return done(msgs) && msgs;
    },
    timeoutMs,
    250,
  );
}

const has = (msgs: readonly TopicAlert[], ruleId: string, status: AlertEvent['status']) => msgs.some((m) => m.event.rule.id === ruleId && m.event.status === status);

// --- The scripted scenario of the shared pipeline --------------------------------------------

/** Steps (buckets) where each series' condition holds; see the expectations below for what follows. */
const CPU_HIGH = { from: 60, to: 67 }; // 95 % instead of 50 %
const AUTH_BURST = { from: 70, to: 73 }; // +5 failures a minute instead of +1
const SPIKE = 45; // latency 250 instead of ~100
const HEARTBEAT_GAP = { from: 80, to: 94 }; // no heartbeat points
const BACKFILL_GAP = { from: 10, to: 20 }; // no points of the second heartbeat: inside the first burst
const LAST_STEP = 97;

const RULES = `
defaults:
  severity: warning
  labels: { team: vigil-test }

rules:
  - id: cpu-high
    name: HighCpu
    kind: threshold
    metric: vigil.test.cpu
    op: ">"
    value: 90
    for: 5m
    annotations:
      summary: "CPU {{ value | round 1 }}% on {{ tags.host }}"
      description: "{{ metric }} above {{ threshold }} for {{ for }} ({{ status }})"

  - id: auth-failures
    name: AuthFailures
    expr: "vigil.test.auth_failures > 10 in 5m"
    severity: critical
    annotations:
      summary: "{{ value | round }} unauthorized accesses in {{ window }}"

  - id: latency-anomaly
    name: LatencyAnomaly
    kind: anomaly
    metric: vigil.test.latency
    score: 0.8
    buckets: 1
    severity: info
    annotations:
      summary: "latency {{ value | round }} ms scored {{ score | round 2 }}"

  - id: heartbeat-missing
    name: HeartbeatMissing
    kind: absent
    metric: vigil.test.heartbeat
    for: 5m
    severity: critical
    annotations:
      summary: "no heartbeat from {{ tags.host }} for {{ for }}"

  - id: backfill-heartbeat-missing
    kind: absent
    metric: vigil.test.heartbeat_backfill
    for: 5m
`;

/** Hot reload adds a rule on a metric no rule watched yet... */
const WITH_MEM = `${RULES}
  - id: mem-high
    name: HighMemory
    expr: "vigil.test.mem > 80"
    annotations:
      summary: "memory {{ value | round }}%"
`;
/** ...then one on a series another rule already watches. */
const WITH_CPU_BUSY = `${WITH_MEM}
  - id: cpu-busy
    name: BusyCpu
    expr: "vigil.test.cpu > 40"
`;

/** Deterministic noise of a few percent around 100. */
const latencyAt = (i: number) => (i === SPIKE ? 250 : 100 + 3 * Math.sin(i * 1.7) + 2 * Math.cos(i * 0.37));
const authIncrease = (i: number) => (i >= AUTH_BURST.from && i <= AUTH_BURST.to ? 5 : 1);

describe('alerting end to end (Kafka, ClickHouse, Alertmanager, webhook)', () => {
  const run = randomBytes(4).toString('hex');
  const tags = { host: 'web-1', run };
  const series = {
    cpu: 'vigil.test.cpu',
    auth: 'vigil.test.auth_failures',
    latency: 'vigil.test.latency',
    heartbeat: 'vigil.test.heartbeat',
    backfill: 'vigil.test.heartbeat_backfill',
    mem: 'vigil.test.mem',
    clock: 'vigil.test.clock',
  };
  const fp = {
    cpu: fingerprintOf('cpu-high', series.cpu, tags),
    auth: fingerprintOf('auth-failures', series.auth, tags),
    latency: fingerprintOf('latency-anomaly', series.latency, tags),
    heartbeat: fingerprintOf('heartbeat-missing', series.heartbeat, tags),
  };
  const { at, end } = timeline();
  let authTotal = 0;
  /** The points of step i (in step order: the counter accumulates): every series but a heartbeat in its gap. */
  const stepPoints = (i: number, mem = 85): Point[] => {
    authTotal += i === 0 ? 0 : authIncrease(i);
    const ts = at(i);
    const points: Point[] = [
      { metric_id: series.clock, value: i, timestamp: ts, tags },
      { metric_id: series.cpu, value: i >= CPU_HIGH.from && i <= CPU_HIGH.to ? 95 : 50, timestamp: ts, tags },
      { metric_id: series.auth, value: authTotal, metric_type: 'counter', timestamp: ts, tags },
      { metric_id: series.latency, value: latencyAt(i), timestamp: ts, tags },
      { metric_id: series.mem, value: mem, timestamp: ts, tags },
    ];
    if (i < HEARTBEAT_GAP.from || i > HEARTBEAT_GAP.to) points.push({ metric_id: series.heartbeat, value: 1, timestamp: ts, tags });
    if (i < BACKFILL_GAP.from || i > BACKFILL_GAP.to) points.push({ metric_id: series.backfill, value: 1, timestamp: ts, tags });
    return points;
  };
  const steps = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => stepPoints(from + k));

  const ctx: {
    topic?: string;
    db?: string;
    pipeline?: PipelineProcess;
    producer?: PointProducer;
    rules?: RulesFile;
    webhook?: Receiver;
    webhookAnswers?: { atMs: number; status: number }[];
    msgs?: TopicAlert[];
    producedA?: number;
  } = {};

  it('fires and resolves each rule kind once, at the bucket that decides it; Alertmanager lists the alert while it fires', async ({ annotate }) => {
    const { topic, env } = await res.pipelineEnv('alerts', 1);
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    ctx.db = env['VIGIL_CLICKHOUSE_DATABASE'];
    ctx.topic = alertsTopic;
    const rules = (ctx.rules = new RulesFile(RULES));
    cleanups.push(() => rules.remove());
    // The webhook fails its first three requests.
    const answers: { atMs: number; status: number }[] = (ctx.webhookAnswers = []);
    const webhook = (ctx.webhook = await startReceiver((n) => {
      const status = n <= 3 ? 503 : 200;
      answers.push({ atMs: Date.now(), status });
      return status;
    }));
    cleanups.push(() => webhook.close());
    ctx.pipeline = await start({
      ...env,
      ...ALERT_ENV,
      VIGIL_ALERTS_RULES_FILE: rules.path,
      VIGIL_ALERTS_ALERTMANAGER_URL: alertmanagerUrl,
      VIGIL_ALERTS_WEBHOOK_URL: `${webhook.url}/hook`,
    });
    const producer = (ctx.producer = new PointProducer(res.kafka, topic));
    cleanups.push(() => producer.close());

    // Phase A: up to the cpu alert firing (bucket 64 completes the 5 minutes, step 65 closes it).
    const producedA = (ctx.producedA = Date.now());
    await producer.send(steps(0, CPU_HIGH.from + 6));
    const phaseA = await untilAlerts(alertsTopic, 'the cpu alert to fire', (m) => has(m, 'cpu-high', 'firing') && has(m, 'latency-anomaly', 'resolved'));
    const cpuFiring = phaseA.find((m) => m.event.rule.id === 'cpu-high') as TopicAlert;
    await annotate(`phase A (${CPU_HIGH.from + 7} steps) produced → cpu firing on the topic: ${cpuFiring.ts - producedA} ms`);

    // While it fires, the real Alertmanager lists it with Vigil's labels.
    const [listed] = await waitFor('Alertmanager to list the cpu alert', async () => {
      const a = await alertmanagerAlerts(alertmanagerUrl, fp.cpu);
      return a.length > 0 && a;
    });
    expect(listed?.status.state).toBe('active');
    expect(listed?.labels).toEqual({ alertname: 'HighCpu', severity: 'warning', rule_id: 'cpu-high', rule_kind: 'threshold', vigil_fingerprint: fp.cpu, metric: series.cpu, host: 'web-1', run, team: 'vigil-test' });
    expect(listed?.annotations['summary']).toBe('CPU 95% on web-1');
    expect(Date.parse(listed?.startsAt ?? '')).toBe(end(CPU_HIGH.from + 4));

    // Phase B: cpu resolves, the auth burst fires and resolves, the heartbeat stops.
    await producer.send(steps(CPU_HIGH.from + 7, HEARTBEAT_GAP.from + 10));
    // Absent rules are checked at most once a second of wall time: poke the partition (a clock
    // point at the current event time, which moves nothing) until the check has run.
    const poke: Point[] = [{ metric_id: series.clock, value: -1, timestamp: at(HEARTBEAT_GAP.from + 10), tags }];
    let pokes = 0;
    await waitFor(
      'the heartbeat alert to fire',
      async () => {
        if (has(await topicAlerts(alertsTopic), 'heartbeat-missing', 'firing')) return true;
        pokes++;
        await producer.send([poke]);
        return false;
      },
      30_000,
      500,
    );
    await annotate(`absent check: ${pokes} poke(s) after the burst before the heartbeat alert fired`);
    await untilAlerts(alertsTopic, 'cpu and auth to resolve', (m) => has(m, 'cpu-high', 'resolved') && has(m, 'auth-failures', 'resolved'));
    await waitFor('Alertmanager to drop the resolved cpu alert', async () => (await alertmanagerAlerts(alertmanagerUrl, fp.cpu)).length === 0);
    const [absent] = await waitFor('Alertmanager to list the heartbeat alert', async () => {
      const a = await alertmanagerAlerts(alertmanagerUrl, fp.heartbeat);
      return a.length > 0 && a;
    });
    expect(absent?.labels['alertname']).toBe('HeartbeatMissing');
    expect(absent?.labels['severity']).toBe('critical');

    // Phase C: the heartbeat returns (step 95); step 96 closes its bucket and resolves the alert.
    await producer.send(steps(HEARTBEAT_GAP.from + 11, LAST_STEP));
    await untilAlerts(alertsTopic, 'the heartbeat alert to resolve', (m) => has(m, 'heartbeat-missing', 'resolved'));
    await waitFor('Alertmanager to drop the resolved heartbeat alert', async () => (await alertmanagerAlerts(alertmanagerUrl, fp.heartbeat)).length === 0);
    await sleep(1000);
    const msgs = (ctx.msgs = await topicAlerts(alertsTopic));

    for (const m of msgs) expectWellFormed(m);
    const metricOf: Record<string, string> = { 'cpu-high': series.cpu, 'auth-failures': series.auth, 'latency-anomaly': series.latency, 'heartbeat-missing': series.heartbeat, 'backfill-heartbeat-missing': series.backfill };
    for (const m of msgs) expect(m.event.series).toEqual({ metric: metricOf[m.event.rule.id], tags });
    for (const id of ['cpu-high', 'auth-failures', 'latency-anomaly', 'heartbeat-missing']) expect(has(msgs, id, 'firing') && has(msgs, id, 'resolved'), id).toBe(true);
    for (const m of msgs) expect(m.event.labels).toEqual({ team: 'vigil-test' });
    // One episode per rule: ids unique, resolved id and firing id differ, same fingerprint.
    expect(new Set(msgs.map((m) => m.event.id)).size).toBe(msgs.length);

    // threshold: held from bucket 60, 5 minutes complete at the end of bucket 64; 50 % again in bucket 68.
    const cpu = episodeOf(msgs, 'cpu-high');
    expect(cpu.firing.fingerprint).toBe(fp.cpu);
    expect(cpu.firing).toMatchObject({ rule: { id: 'cpu-high', name: 'HighCpu', kind: 'threshold' }, severity: 'warning', value: 95, threshold: 90, score: null, startsAt: iso(end(CPU_HIGH.from + 4)), endsAt: null });
    expect(cpu.firing.explanation).toMatchObject({ heldMs: 5 * MINUTE_MS, threshold: 90, value: 95 });
    expect(cpu.firing.annotations).toEqual({ summary: 'CPU 95% on web-1', description: 'vigil.test.cpu above 90 for 5m (firing)' });
    expect(cpu.resolved).toMatchObject({ fingerprint: fp.cpu, status: 'resolved', value: 50, startsAt: iso(end(CPU_HIGH.from + 4)), endsAt: iso(end(CPU_HIGH.to + 1)) });
    expect(cpu.resolved?.annotations['description']).toBe('vigil.test.cpu above 90 for 5m (resolved)');

    // rate: +1 a minute, +5 in buckets 70..73. increase over the 5 buckets ending at 71 = 3 + 10 = 13 > 10
    // (at 70: 9); at 77 the window 73..77 holds 5 + 4 = 9.
    const auth = episodeOf(msgs, 'auth-failures');
    expect(auth.firing.fingerprint).toBe(fp.auth);
    expect(auth.firing).toMatchObject({ rule: { id: 'auth-failures', name: 'AuthFailures', kind: 'rate' }, severity: 'critical', threshold: 10, startsAt: iso(end(AUTH_BURST.from + 1)) });
    expect(auth.firing.value).toBeCloseTo(13, 6);
    expect(auth.firing.annotations['summary']).toBe('13 unauthorized accesses in 5m');
    expect(auth.resolved?.endsAt).toBe(iso(end(AUTH_BURST.to + 4)));
    expect(auth.resolved?.value).toBeCloseTo(9, 6);

    // anomaly: the spike bucket scores at or above 0.8 and fires at its end; the first bucket below resolves.
    const latency = episodeOf(msgs, 'latency-anomaly');
    expect(latency.firing.fingerprint).toBe(fp.latency);
    expect(latency.firing).toMatchObject({ rule: { kind: 'anomaly' }, severity: 'info', threshold: 0.8, value: 250, startsAt: iso(end(SPIKE)) });
    expect(latency.firing.score).toBeGreaterThanOrEqual(0.8);
    expect(latency.firing.annotations['summary']).toBe(`latency 250 ms scored ${Math.round((latency.firing.score ?? 0) * 100) / 100}`);
    const scores = await res.clickhouse().query({ query: `SELECT toUInt32(bucket_start) * 1000 AS b, score FROM ${ctx.db}.anomalies_dedup WHERE metric = '${series.latency}' AND has(tags.value, '${run}') AND bucket_start >= toDateTime(${(end(SPIKE) - MINUTE_MS) / 1000}) ORDER BY b`, format: 'JSONEachRow' });
    const rows = await scores.json<{ b: string; score: number }>();
    expect(rows[0]?.score).toBeCloseTo(latency.firing.score ?? NaN, 6);
    const firstBelow = rows.find((r) => r.score < 0.8);
    expect(firstBelow, 'a bucket after the spike scores below the level').toBeDefined();
    expect(latency.resolved?.endsAt).toBe(iso(Number(firstBelow?.b) + MINUTE_MS));
    await annotate(`latency spike score ${latency.firing.score?.toFixed(3)}; resolved ${(Number(firstBelow?.b) - end(SPIKE)) / MINUTE_MS + 1} bucket(s) later (score ${firstBelow?.score.toFixed(3)})`);

    // absent: last heartbeat bucket ends at T0 + 80 min; 5 minutes of event time later it fires; the
    // returning heartbeat's first bucket (95) resolves it at its end.
    const heartbeat = episodeOf(msgs, 'heartbeat-missing');
    expect(heartbeat.firing.fingerprint).toBe(fp.heartbeat);
    expect(heartbeat.firing).toMatchObject({ rule: { kind: 'absent' }, severity: 'critical', value: null, threshold: null, startsAt: iso(end(HEARTBEAT_GAP.from - 1) + 5 * MINUTE_MS) });
    expect(heartbeat.firing.annotations['summary']).toBe('no heartbeat from web-1 for 5m');
    expect(heartbeat.firing.explanation).toMatchObject({ lastDataMs: end(HEARTBEAT_GAP.from - 1), forMs: 5 * MINUTE_MS });
    expect(heartbeat.resolved?.endsAt).toBe(iso(end(HEARTBEAT_GAP.to + 1)));
  });

  it('absent: a gap that opens and closes within one burst of data (a backfill, a replay) fires and resolves in event time too', () => {
    // The second heartbeat stops after bucket 9 and is back in bucket 21, all in the first burst:
    // decided by event time alone, as the live heartbeat's alert was.
    const { firing, resolved } = episodeOf(ctx.msgs ?? [], 'backfill-heartbeat-missing');
    expect(firing.startsAt).toBe(iso(end(BACKFILL_GAP.from - 1) + 5 * MINUTE_MS));
    expect(resolved?.endsAt).toBe(iso(end(BACKFILL_GAP.to + 1)));
  });

  it('writes the same events to the ClickHouse alerts table (alerts_dedup)', async () => {
    const { db, msgs } = ctx as Required<typeof ctx>;
    const rs = await res.clickhouse().query({ query: `SELECT id, fingerprint, status, rule_id, event FROM ${db}.alerts_dedup ORDER BY id`, format: 'JSONEachRow' });
    const rows = await rs.json<{ id: string; fingerprint: string; status: string; rule_id: string; event: string }>();
    expect(rows.map((r) => r.id).sort()).toEqual(msgs.map((m) => m.event.id).sort());
    const byId = new Map(msgs.map((m) => [m.event.id, m.event]));
    for (const r of rows) {
      expect(JSON.parse(r.event)).toEqual(byId.get(r.id));
      expect({ fingerprint: r.fingerprint, status: r.status, rule_id: r.rule_id }).toEqual({ fingerprint: byId.get(r.id)?.fingerprint, status: byId.get(r.id)?.status, rule_id: byId.get(r.id)?.rule.id });
    }
  });

  it('keeps publishing to the topic while the webhook fails, and the webhook then gets every event once', async ({ annotate }) => {
    const { msgs, webhook, webhookAnswers, producedA } = ctx as Required<typeof ctx>;
    const ids = msgs.map((m) => m.event.id).sort();
    await waitFor('the webhook to accept every event', async () => {
      const accepted = webhook.accepted().flatMap((b) => (b as { alerts: AlertEvent[] }).alerts.map((e) => e.id));
      return accepted.length >= ids.length;
    });
    const failed = webhookAnswers.filter((a) => a.status === 503);
    const firstOk = webhookAnswers.find((a) => a.status === 200) as { atMs: number };
    expect(failed).toHaveLength(3);
    const firstOnTopic = Math.min(...msgs.map((m) => m.ts));
    expect(firstOnTopic).toBeGreaterThanOrEqual(producedA);
    // No stall: the first event reached the topic before the webhook accepted anything.
    expect(firstOnTopic).toBeLessThan(firstOk.atMs);
    const bodies = webhook.accepted() as { version: number; alerts: AlertEvent[] }[];
    for (const b of bodies) expect(b.version).toBe(1);
    const accepted = bodies.flatMap((b) => b.alerts);
    expect(accepted.map((e) => e.id).sort()).toEqual(ids);
    const byId = new Map(msgs.map((m) => [m.event.id, m.event]));
    for (const e of accepted) expect(e).toEqual(byId.get(e.id));
    await annotate(`webhook: ${failed.length} × 503, first 200 ${firstOk.atMs - firstOnTopic} ms after the first event reached the topic`);
  });

  it('hot reload: a rule added to the file fires without a restart; an invalid file keeps the previous rules', async ({ annotate }) => {
    const { pipeline, producer, rules, topic } = ctx as Required<typeof ctx>;
    expect(await pipeline.metric('vigil_rules_reloads_total', { result: 'ok' })).toBe(0);
    const written = Date.now();
    rules.write(WITH_MEM);
    await waitFor('the reload', async () => (await pipeline.metric('vigil_rules_reloads_total', { result: 'ok' })) === 1, 10_000);
    await annotate(`reload counted ${Date.now() - written} ms after the rename`);
    // mem has been 85 % all along without an alert; the next step closes bucket 97, the first evaluated with the new rules.
    expect(has(await topicAlerts(topic), 'mem-high', 'firing')).toBe(false);
    await producer.send([stepPoints(LAST_STEP + 1)]);
    let msgs = await untilAlerts(topic, 'the added rule to fire', (m) => has(m, 'mem-high', 'firing'), 15_000);
    const mem = episodeOf(msgs, 'mem-high');
    expect(mem.firing).toMatchObject({ value: 85, threshold: 80, severity: 'warning', startsAt: iso(end(LAST_STEP)), rule: { name: 'HighMemory', kind: 'threshold' } });
    expect(mem.firing.annotations['summary']).toBe('memory 85%');

    // An invalid rewrite (a misspelt key) is rejected and counted; the rules of the last good file stay.
    rules.write(WITH_MEM.replace('id: mem-high', 'id: mem-high\n    severity: critical\n    thresold: 3'));
    await waitFor('the rejected reload', async () => (await pipeline.metric('vigil_rules_reloads_total', { result: 'error' })) === 1, 10_000);
    expect(await pipeline.metric('vigil_rules_reloads_total', { result: 'ok' })).toBe(1);
    expect(await pipeline.readyz()).toBe(200);
    expect(pipeline.child.exitCode).toBeNull();
    // mem drops in bucket 99: still evaluated by mem-high as last loaded, which resolves at its end.
    await producer.send([stepPoints(LAST_STEP + 2), stepPoints(LAST_STEP + 3, 50), stepPoints(LAST_STEP + 4, 50)]);
    msgs = await untilAlerts(topic, 'mem-high to resolve', (m) => has(m, 'mem-high', 'resolved'));
    expect(episodeOf(msgs, 'mem-high').resolved).toMatchObject({ severity: 'warning', endsAt: iso(end(LAST_STEP + 3)), value: 50 });
    expect(msgs.filter((m) => m.event.rule.id === 'mem-high')).toHaveLength(2);
  });

  it('hot reload: a rule added for a series another rule already watches fires too', async () => {
    const { pipeline, producer, rules, topic } = ctx as Required<typeof ctx>;
    rules.write(WITH_CPU_BUSY);
    await waitFor('the reload', async () => (await pipeline.metric('vigil_rules_reloads_total', { result: 'ok' })) === 2, 10_000);
    // cpu is at 50 % (> 40) and cpu-high has watched the series since bucket 0; the next step closes bucket 100.
    await producer.send([stepPoints(LAST_STEP + 5, 50)]);
    const msgs = await untilAlerts(topic, 'cpu-busy to fire', (m) => has(m, 'cpu-busy', 'firing'), 10_000);
    expect(episodeOf(msgs, 'cpu-busy').firing).toMatchObject({ value: 50, threshold: 40, startsAt: iso(end(LAST_STEP + 4)) });
  });
});

describe('alert state across a crash', () => {
  // Offsets stay behind the buckets a partition still holds (open, or retained for late points):
  // with the default retention the restart replays from about the firing bucket; with a long one
  // it replays the whole series, from before the episode began (as any commit lag would).
  it.for([
    { replay: 'from the firing bucket (default late retention)', retentionMs: undefined },
    { replay: 'from before the episode (30 min late retention)', retentionMs: 30 * MINUTE_MS },
    // The crash window between the two writes: the event reached the topic, not the table (and so
    // no commit passed it: the long retention replays the whole episode, as that crash would).
    { replay: 'from before the episode, the firing row missing from the table', retentionMs: 30 * MINUTE_MS, dropRow: true },
  ])('kill -9 while an alert fires, restart replaying $replay: one firing event in total, and the resolve still comes', async ({ retentionMs, dropRow }, { annotate }) => {
    const { topic, env } = await res.pipelineEnv('alerts_crash', 1);
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const db = env['VIGIL_CLICKHOUSE_DATABASE'] as string;
    const rules = new RulesFile(RULES);
    cleanups.push(() => rules.remove());
    const pipelineEnv: Record<string, string> = { ...env, ...ALERT_ENV, VIGIL_ALERTS_RULES_FILE: rules.path };
    if (retentionMs !== undefined) pipelineEnv['VIGIL_ROLLUPS_LATE_RETENTION_MS'] = String(retentionMs);
    const first = await start(pipelineEnv);
    const producer = new PointProducer(res.kafka, topic);
    cleanups.push(() => producer.close());
    const tags = { host: 'db-1', run: randomBytes(4).toString('hex') };
    const { at, end } = timeline();
    // 50 % in buckets 0..9, 95 % in 10..19, 50 % from 20: fires at the end of 14, resolves at the end of 20.
    const cpu = (i: number): Point[] => [{ metric_id: 'vigil.test.cpu', value: i >= 10 && i <= 19 ? 95 : 50, timestamp: at(i), tags }];
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => cpu(from + k));

    await producer.send(range(0, 16));
    await untilAlerts(alertsTopic, 'the alert to fire', (m) => has(m, 'cpu-high', 'firing'));
    // Durable in both places the lifecycle writes before it is killed (restore reads the table).
    await waitFor('the firing event in ClickHouse', async () => (await res.scalar(`SELECT count() FROM ${db}.alerts_dedup WHERE status = 'firing'`)) === 1, 10_000);
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    if (dropRow) {
      // Rule state is written only after a task's events are in the table: gone with them.
      await res.clickhouse().command({ query: `ALTER TABLE ${db}.alerts DELETE WHERE status = 'firing'` });
      await res.clickhouse().command({ query: `ALTER TABLE ${db}.detector_state DELETE WHERE 1` });
      await waitFor('the firing row and the rule state gone', async () => (await res.scalar(`SELECT count() FROM ${db}.alerts`)) + (await res.scalar(`SELECT count() FROM ${db}.detector_state`)) === 0, 20_000);
    }
    const [committed] = await (await res.admin()).fetchOffsets({ groupId: env['VIGIL_KAFKA_GROUP_ID'] as string, topics: [topic] });
    await annotate(`committed offset at the kill: ${committed?.partitions[0]?.offset} (step messages 0..16)`);

    const restartedAt = Date.now();
    const second = await start(pipelineEnv);
    await producer.send(range(17, 18));
    await sleep(500);
    await producer.send(range(19, 22));
    await untilAlerts(alertsTopic, 'the alert to resolve after the restart', (m) => has(m, 'cpu-high', 'resolved'), 60_000);
    await annotate(`restart to resolved on the topic: ${Date.now() - restartedAt} ms`);
    await sleep(1000);
    const all = await topicAlerts(alertsTopic);
    for (const m of all) expectWellFormed(m);
    const seen = all.map((m) => `${m.event.status} ${m.event.startsAt} → ${m.event.endsAt ?? ''} observed ${m.event.observedAt} ${JSON.stringify(m.event.explanation)}`).join('\n');
    expect(all.map((m) => `${m.event.rule.id}:${m.event.status}`), seen).toEqual(['cpu-high:firing', 'cpu-high:resolved']);
    const { firing, resolved } = episodeOf(all, 'cpu-high');
    expect(firing.fingerprint).toBe(fingerprintOf('cpu-high', 'vigil.test.cpu', tags));
    expect(firing.startsAt).toBe(iso(end(14)));
    expect(resolved).toMatchObject({ fingerprint: firing.fingerprint, startsAt: iso(end(14)), endsAt: iso(end(20)), value: 50 });
    expect(await second.readyz()).toBe(200);
  });
});

describe('alerting with anomaly scoring off', () => {
  it('evaluates the buckets closed by a shard thread\'s first task', async () => {
    const { topic, env } = await res.pipelineEnv('alerts_nomodels', 1);
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const rules = new RulesFile(RULES);
    cleanups.push(() => rules.remove());
    await start({ ...env, ...ALERT_ENV, VIGIL_ALERTS_RULES_FILE: rules.path, VIGIL_MODELS_ENABLED: 'false' });
    const producer = new PointProducer(res.kafka, topic);
    cleanups.push(() => producer.close());
    const tags = { host: 'db-2', run: randomBytes(4).toString('hex') };
    const { at, end } = timeline();
    // One burst (most likely one task): 95 % in buckets 10..19 fires at the end of 14 and resolves at the end of 20.
    await producer.send(Array.from({ length: 23 }, (_, i): Point[] => [{ metric_id: 'vigil.test.cpu', value: i >= 10 && i <= 19 ? 95 : 50, timestamp: at(i), tags }]));
    const msgs = await untilAlerts(alertsTopic, 'the alert to fire and resolve', (m) => has(m, 'cpu-high', 'resolved'), 15_000);
    const { firing, resolved } = episodeOf(msgs, 'cpu-high');
    expect(firing.startsAt).toBe(iso(end(14)));
    expect(resolved?.endsAt).toBe(iso(end(20)));
  });
});
