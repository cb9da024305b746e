import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { produce, type ProduceSummary } from '../../../bench/generator.js';
import * as infra from '../../../infra/index.js';
import { usesLocalStack } from '../../../core/config/index.js';
import { componentLogger } from '../../../core/log.js';
import { mulberry32 } from '../../../models/random.js';
import { RulesFile, readAlertsTopic } from '../../helpers/alerts.js';
import { usePipelines, waitFor, type PipelineProcess } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';
import { expectRollupsMatchPoints } from '../../helpers/rollups.js';

const res = useResources();
const start = usePipelines();
const scalar = (query: string) => res.scalar(query);

const SERIES = 500;
const broker = res.config.kafka.brokers[0] as string;

/**
 * A threshold rule the generator's CPU series cross about once per 72 s cycle (45 ± 25 around a
 * sine of 360 steps): many episodes, each of which must fire exactly once whatever is killed.
 */
const rules = new RulesFile(`rules:
  - id: cpu-hot
    kind: threshold
    metric: system.cpu.usage_total
    op: ">"
    value: 65
    of: mean
    for: 5s
`);
res.onClose(async () => rules.remove());

async function setup(prefix: string) {
  const { topic, db, env: base } = await res.pipelineEnv(prefix, 4);
  const env: Record<string, string> = {
    ...base,
    // A killed member holds its partitions until its session times out; 6 s is the broker's minimum.
    VIGIL_KAFKA_SESSION_TIMEOUT_MS: '6000',
    // The stream's event time is real time: its last buckets close by wall time once it stops.
    // 5 s: a producer's short stall must not look like an idle partition.
    VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '5000',
    // 1 s buckets scored: about 120 per series in two minutes, past the detectors' warm-up.
    VIGIL_ROLLUPS_WIDTHS_SECONDS: '1,5',
    VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '1000',
    // Small tasks and inserts: kills land between acknowledged and unacknowledged work.
    VIGIL_PIPELINE_INSERT_MAX_ROWS: '5000',
    VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
    VIGIL_PIPELINE_TASK_MAX_MESSAGES: '1000',
    VIGIL_PIPELINE_SHUTDOWN_TIMEOUT_MS: '10000',
    VIGIL_MODELS_WIDTH_SECONDS: '1',
    // Per-series detectors only: their state is handed over; the shard's isolation forest is not.
    VIGIL_MODELS_DETECTORS: 'robust,ewma,seasonal',
    VIGIL_MODELS_MIN_SCORE: '0',
    // Series state written every 5 s of event time (5 buckets), so kills land between writes and a
    // replay judges the unsaved buckets again from the last state (at the default 600 s nothing
    // would be written in this two-minute stream, and every replay would start from the beginning).
    VIGIL_MODELS_STATE_INTERVAL_SECONDS: '5',
    VIGIL_ALERTS_RULES_FILE: rules.path,
  };
  return { topic, db, env };
}

/** A steady stream in real event time, keyed by series (the generator's default). */
function stream(topic: string, points: number, rate: number): Promise<ProduceSummary> {
  return produce(res.kafka, { topic, series: SERIES, pointsPerMessage: 1, format: 'json', rate, points, durationMs: 0, intervalMs: Math.round((SERIES * 1000) / rate), startMs: Date.now(), seed: 11 });
}

async function expectExactlyOnce(db: string, sent: ProduceSummary): Promise<void> {
  await waitFor('every point in points_dedup', async () => (await scalar(`SELECT count() FROM ${db}.points_dedup`)) >= sent.points, 180_000, 1000);
  expect(await scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(sent.points);
  expect(await scalar(`SELECT sum(value) FROM ${db}.points_dedup`)).toBeCloseTo(sent.valueSum, 3);
  expect(await scalar(`SELECT uniqExact(series_id) FROM ${db}.points_dedup`)).toBe(sent.perSeries.size);
  expect(await scalar(`SELECT count() FROM (SELECT series_id, count() AS c FROM ${db}.points_dedup GROUP BY series_id HAVING c != ${sent.points / sent.perSeries.size})`)).toBe(0);
}

/** Every alert episode (fingerprint and start) fired once on the alerts topic, and episodes of a fingerprint alternate firing/resolved. */
async function expectOneFiringPerEpisode(alertsTopic: string): Promise<number> {
  const msgs = await readAlertsTopic(broker, alertsTopic);
  const firing = msgs.filter((m) => m.event.status === 'firing');
  expect(firing.length).toBeGreaterThan(0);
  const ids = firing.map((m) => m.event.id);
  expect(ids.length - new Set(ids).size, 'firing events repeated for one episode').toBe(0);
  const last = new Map<string, string>();
  for (const m of msgs) {
    const history = () => msgs.filter((x) => x.event.fingerprint === m.event.fingerprint).map((x) => `${x.offset} ${x.event.id} observed ${x.event.observedAt}`);
    expect(last.get(m.event.fingerprint), `${m.event.fingerprint} ${m.event.status} twice in a row:\n${history().join('\n')}`).not.toBe(m.event.status);
    last.set(m.event.fingerprint, m.event.status);
  }
  return firing.length;
}

type Scored = Map<string, string>;

/** Every row of anomalies_dedup: series and bucket → score, expected value, version. */
async function anomalies(db: string): Promise<Scored> {
  const rs = await res.clickhouse().query({ query: `SELECT toString(series_id) AS s, toUInt32(bucket_start) AS b, score, expected, version FROM ${db}.anomalies_dedup`, format: 'JSONEachRow' });
  const out: Scored = new Map();
  for (const r of await rs.json<{ s: string; b: number; score: number; expected: number; version: string }>()) out.set(`${r.s}/${r.b}`, `${r.score} ${r.expected} ${r.version}`);
  return out;
}

/** What no member of a healthy group ever logs: a crashed consumer or a fatal pipeline error. */
function expectNoCrash(all: readonly PipelineProcess[]): void {
  for (const p of all) {
    expect(p.output, `pid ${p.child.pid}`).not.toMatch(/consumer crashed|fatal pipeline error|Error when calling eachBatch|overlaps one registered|already applied/);
  }
}

describe('a consumer group of Vigil instances', () => {
  it('2-3 instances, one killed with SIGKILL and restarted every few seconds, one added and one removed: every point exactly once, rollups exact', async ({ annotate }) => {
    const { topic, db, env } = await setup('chaos');
    const rand = mulberry32(7);
    const all: PipelineProcess[] = [];
    const live: PipelineProcess[] = [];
    const launch = async (): Promise<PipelineProcess> => {
      const p = await start(env);
      all.push(p);
      live.push(p);
      return p;
    };
    await launch();
    await launch();
    const total = 300_000;
    // About two minutes of stream: a kill cycle lasts up to the 6 s session timeout plus a rejoin.
    const producing = stream(topic, total, 2500);
    let done = false;
    let sent: ProduceSummary | undefined;
    void producing.then((s) => ((done = true), (sent = s)));

    let kills = 0;
    let added = false;
    let removed = false;
    let lastKillAt = 0;
    while (!done || kills < 10) {
      await sleep(1500 + rand() * 2500);
      if (!added && kills === 3) {
        added = true;
        await launch();
        continue;
      }
      if (!removed && kills === 7 && live.length > 1) {
        // A graceful leave: SIGTERM drains, commits and leaves the group.
        removed = true;
        const gone = live.splice(Math.floor(rand() * live.length), 1)[0] as PipelineProcess;
        gone.kill('SIGTERM');
        expect((await gone.exited).code, gone.output).toBe(0);
        continue;
      }
      const victim = live.splice(Math.floor(rand() * live.length), 1)[0] as PipelineProcess;
      victim.kill('SIGKILL');
      await victim.exited;
      kills++;
      lastKillAt = Date.now();
      // Restarted at once, or after a moment: both happen to operators.
      if (rand() < 0.5) await sleep(rand() * 3000);
      await launch();
    }
    expect(kills).toBeGreaterThanOrEqual(10);
    expect(added && removed).toBe(true);
    await expectExactlyOnce(db, sent as ProduceSummary);
    // Insert-time deduplication: the raw table itself holds every point once, through every
    // kill, handoff and restart (each replay wrote only the points after its partitions' marks).
    const rawDuplicates = (await scalar(`SELECT count() FROM ${db}.points`)) - (sent as ProduceSummary).points;
    expect(rawDuplicates, 'points stored twice in the raw table').toBe(0);
    const drainSeconds = (Date.now() - lastKillAt) / 1000;
    // Rollups rebuilt by every replay merge to exactly the aggregates of the raw points.
    const gauges = await scalar(`SELECT count() FROM ${db}.points_dedup WHERE type = 'gauge'`);
    await waitFor('every gauge point in both widths of the rollups', async () => (await scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE type = 'gauge'`)) >= 2 * gauges, 120_000, 1000);
    await expectRollupsMatchPoints(res.clickhouse(), db, [1, 5]);
    expectNoCrash(all);
    const episodes = await expectOneFiringPerEpisode(env['VIGIL_KAFKA_ALERTS_TOPIC'] as string);

    // The same topic through one instance that is never killed, into a database of its own: the
    // anomaly rows equal the chaos run's (detector state restored at every handoff and restart).
    const refDb = `${db}_ref`;
    res.own('database', refDb);
    const refAlerts = await res.topic('chaos_ref_alerts');
    const reference = await start({ ...env, VIGIL_CLICKHOUSE_DATABASE: refDb, VIGIL_KAFKA_GROUP_ID: `${env['VIGIL_KAFKA_GROUP_ID'] as string}_ref`, VIGIL_KAFKA_ALERTS_TOPIC: refAlerts });
    // Every closed bucket of the scored width has its row (rollups and anomalies are separate inserts).
    const scoredBuckets = (d: string) => scalar(`SELECT count() FROM (SELECT DISTINCT series_id, bucket_start FROM ${d}.rollups_merged WHERE width_s = 1)`);
    const buckets = await scoredBuckets(db);
    expect(buckets).toBeGreaterThan(SERIES * 100);
    await waitFor('the chaos run to have scored every bucket', async () => (await scalar(`SELECT count() FROM ${db}.anomalies_dedup`)) >= buckets, 60_000, 500);
    await waitFor('the reference run to have scored every bucket', async () => (await scalar(`SELECT count() FROM ${refDb}.anomalies_dedup`)) >= buckets && (await scoredBuckets(refDb)) === buckets, 180_000, 1000);
    const chaosRows = await anomalies(db);
    const refRows = await anomalies(refDb);
    expect(chaosRows.size).toBe(buckets);
    const differ = [...refRows].filter(([k, v]) => chaosRows.get(k) !== v);
    const differing = differ.length;
    const sample = differ.slice(0, 5).map(([k, v]) => `${k}: ${v} (reference) vs ${String(chaosRows.get(k))}`);
    // Counters too (their rates depend on the point before each bucket): every merged rollup row equal.
    const allRollups = async (d: string) => {
      const rs = await res.clickhouse().query({ query: `SELECT toString(series_id) AS s, width_s AS w, toUInt32(bucket_start) AS b, count, round(sum, 6) AS sum, round(min, 6) AS min, round(max, 6) AS max, round(last, 6) AS last FROM ${d}.rollups_merged`, format: 'JSONEachRow' });
      return new Map((await rs.json<Record<string, string | number>>()).map((r) => [`${r['s']}/${r['w']}/${r['b']}`, `${r['count']} ${r['sum']} ${r['min']} ${r['max']} ${r['last']}`]));
    };
    const [chaosRollups, refRollups] = [await allRollups(db), await allRollups(refDb)];
    const rollupDiff = [...refRollups].filter(([k, v]) => chaosRollups.get(k) !== v);
    expect(chaosRollups.size).toBe(refRollups.size);
    expect(rollupDiff.slice(0, 5).map(([k, v]) => `${k}: ${v} (reference) vs ${String(chaosRollups.get(k))}`)).toEqual([]);
    expect(refRows.size).toBe(chaosRows.size);
    expect(differing, `anomaly rows differing from a run without kills (series/bucket: score expected version), e.g.\n${sample.join('\n')}`).toBe(0);
    // Every episode the uninterrupted run announced, the chaos run announced too, firing and
    // resolve, and no other (a lost episode leaves the topic alternating, so only this finds it).
    // Both read until they agree or a minute passes (each run's last events follow its last
    // anomaly rows: a publish waits for its task's rows).
    const eventIds = async (topic: string) => new Set((await readAlertsTopic(broker, topic)).map((m) => m.event.id));
    let chaosIds = new Set<string>();
    let refIds = new Set<string>();
    const same = async () => {
      [chaosIds, refIds] = await Promise.all([eventIds(env['VIGIL_KAFKA_ALERTS_TOPIC'] as string), eventIds(refAlerts)]);
      return chaosIds.size === refIds.size && [...refIds].every((id) => chaosIds.has(id));
    };
    await waitFor('the chaos and the reference run to have published the same events', same, 60_000, 1000).catch(() => undefined);
    expect([...refIds].filter((id) => !chaosIds.has(id)).slice(0, 5), 'events of the uninterrupted run missing from the chaos run').toEqual([]);
    expect([...chaosIds].filter((id) => !refIds.has(id)).slice(0, 5), 'events of the chaos run the uninterrupted run did not publish').toEqual([]);
    reference.kill('SIGTERM');
    // Every live member still ready: commits advance, no consumer failure.
    for (const p of live) expect(await p.readyz(), p.output).toBe(200);
    await annotate(JSON.stringify({ instancesMax: 3, kills, points: total, lost: 0, duplicated: 0, rawDuplicates, anomalyRows: chaosRows.size, anomalyRowsDiffering: differing, episodes, drainSecondsAfterLastKill: Math.round(drainSeconds) }), 'chaos');
  }, 600_000);

  // Stops and restarts the local broker; an external cluster is not the tests' to stop.
  it.runIf(usesLocalStack(res.config))('the broker stopped and restarted mid-stream under one instance: it reconnects by itself, every point exactly once, rollups exact', async () => {
    const { topic, db, env } = await setup('brokerbounce');
    const p = await start(env);
    const half = 60_000;
    const first = await stream(topic, half, 10_000);
    await waitFor('part of the first half stored', async () => (await scalar(`SELECT count() FROM ${db}.points`)) > 10_000, 60_000, 100);
    const log = componentLogger('test-scaleout');
    await infra.down(res.config, log, ['kafka']);
    try {
      await sleep(3000);
      expect(p.child.exitCode, p.output).toBeNull();
    } finally {
      await infra.up(res.config, log, ['kafka']);
    }
    await waitFor('/readyz 200 again', async () => (await p.readyz()) === 200, 120_000);
    // Idempotent: the broker just came back, and a retried send must not write a message twice.
    const second = await produce(res.kafka, { topic, series: SERIES, pointsPerMessage: 1, format: 'json', rate: 10_000, points: half, durationMs: 0, intervalMs: 50, startMs: Date.now(), seed: 12, idempotent: true });
    const sent: ProduceSummary = {
      points: first.points + second.points,
      messages: first.messages + second.messages,
      valueSum: first.valueSum + second.valueSum,
      perSeries: new Map([...first.perSeries].map(([k, v]) => [k, v + (second.perSeries.get(k) ?? 0)])),
      elapsedMs: 0,
    };
    // What reached the topic, once each (the first half was produced before the broker stopped).
    const ends = await (await res.admin()).fetchTopicOffsets(topic);
    expect(ends.reduce((n, e) => n + Number(e.high), 0), 'messages on the topic').toBe(sent.points);
    await expectExactlyOnce(db, sent);
    const gauges = await scalar(`SELECT count() FROM ${db}.points_dedup WHERE type = 'gauge'`);
    await waitFor('every gauge point in both widths of the rollups', async () => (await scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE type = 'gauge'`)) >= 2 * gauges, 120_000, 1000);
    await expectRollupsMatchPoints(res.clickhouse(), db, [1, 5]);
    expect(p.child.exitCode, p.output).toBeNull();
    expect(p.output).not.toMatch(/fatal pipeline error|overlaps one registered|already applied/);
  }, 600_000);
});
