import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { produce, type ProduceSummary } from '../../../bench/generator.js';
import * as infra from '../../../infra/index.js';
import { usesLocalStack } from '../../../core/config/index.js';
import { componentLogger } from '../../../core/log.js';
import { CLI } from '../../../bench/process.js';
import { freePort, usePipelines, waitFor, type PipelineProcess } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';
import { expectRollupsMatchPoints } from '../../helpers/rollups.js';

const res = useResources();
const start = usePipelines();

const scalar = (query: string) => res.scalar(query);

async function setup(prefix: string) {
  const { topic, db, env: base } = await res.pipelineEnv(prefix, 4);
  const env: Record<string, string> = {
    ...base,
    // A killed member holds its partitions until its session times out; 6 s is the broker's minimum.
    VIGIL_KAFKA_SESSION_TIMEOUT_MS: '6000',
    // The stream's event times are real time: its last buckets close by wall time once it
    // stops, after their end plus the lateness, so short widths keep the wait short.
    VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1000',
    VIGIL_ROLLUPS_WIDTHS_SECONDS: '5,10',
    VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '1000',
  };
  return { topic, db, env };
}

/** Background producer at a fixed rate; real-time event time so nothing is rejected as future. */
function stream(topic: string, points: number, rate: number): Promise<ProduceSummary> {
  return produce(res.kafka, { topic, series: 500, pointsPerMessage: 1, format: 'json', rate, points, durationMs: 0, intervalMs: Math.round((500 * 1000) / rate), startMs: Date.now(), seed: 3 });
}

async function expectExactlyOnce(db: string, sent: ProduceSummary): Promise<void> {
  await waitFor('every point in points_dedup', async () => (await scalar(`SELECT count() FROM ${db}.points_dedup`)) >= sent.points, 90_000, 500);
  expect(await scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(sent.points);
  expect(await scalar(`SELECT sum(value) FROM ${db}.points_dedup`)).toBeCloseTo(sent.valueSum, 3);
  expect(await scalar(`SELECT uniqExact(series_id) FROM ${db}.points_dedup`)).toBe(sent.perSeries.size);
  // Per series: no series has more or fewer rows than were produced for it.
  expect(await scalar(`SELECT count() FROM (SELECT series_id, count() AS c FROM ${db}.points_dedup GROUP BY series_id HAVING c != ${sent.points / sent.perSeries.size})`)).toBe(0);
}

describe('delivery guarantees under faults', () => {
  const ctx: { topic?: string; db?: string; env?: Record<string, string>; sent?: ProduceSummary; pipeline?: PipelineProcess } = {};

  it('kill -9 in the middle of a stream, then restart: nothing missing, no point twice even in the raw points table', async () => {
    const { topic, db, env } = await setup('crash');
    Object.assign(ctx, { topic, db, env });
    // Small inserts so that a kill lands between acknowledged and unacknowledged work.
    const tuning = { VIGIL_PIPELINE_INSERT_MAX_ROWS: '10000', VIGIL_PIPELINE_INSERT_LINGER_MS: '100', VIGIL_PIPELINE_TASK_MAX_MESSAGES: '2000' };
    const first = await start({ ...env, ...tuning });
    const producing = stream(topic, 200_000, 25_000);
    await waitFor('some rows stored', async () => (await scalar(`SELECT count() FROM ${db}.points`)) >= 40_000, 60_000, 100);
    // Points stored past the commit metadata's stored-up-to: a replay re-reads their messages.
    const admin = await res.admin();
    const beyondStoredUpTo = async (): Promise<number> => {
      const [c] = await admin.fetchOffsets({ groupId: env['VIGIL_KAFKA_GROUP_ID'] as string, topics: [topic] });
      const parts = c?.partitions ?? [];
      const upTo = parts.map((p) => Math.max(0, (JSON.parse(p.metadata || '{}') as { storedUpTo?: number }).storedUpTo ?? 0));
      return scalar(`SELECT count() FROM ${db}.points WHERE source_offset >= transform(source_partition, [${parts.map((p) => p.partition).join(', ')}], [${upTo.join(', ')}], 0)`);
    };
    // Frozen (SIGSTOP: no commit moves, the insert in flight lands) until points lie there, then killed.
    await waitFor(
      'points stored beyond the committed stored-up-to',
      async () => {
        first.kill('SIGSTOP');
        await sleep(300);
        if ((await beyondStoredUpTo()) > 0) return true;
        first.kill('SIGCONT');
        return false;
      },
      30_000,
      Math.floor(Math.random() * 50),
    );
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    // The kill fell between acknowledged and unacknowledged work: messages were committed as stored
    // (the commit metadata's stored-up-to), the committed offsets lie behind them (held buckets:
    // the restart re-reads stored messages, whose points must not be written twice), and the
    // stream was not all stored.
    const replayStored = await beyondStoredUpTo();
    const [committed] = await admin.fetchOffsets({ groupId: env['VIGIL_KAFKA_GROUP_ID'] as string, topics: [topic] });
    const parts = committed?.partitions ?? [];
    const atKill = {
      offsets: parts.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0),
      storedUpTo: parts.reduce((n, p) => n + Math.max(0, (JSON.parse(p.metadata || '{}') as { storedUpTo?: number }).storedUpTo ?? 0), 0),
      stored: await scalar(`SELECT uniqExact(source_partition, source_offset) FROM ${db}.points`),
    };
    expect(atKill.storedUpTo).toBeGreaterThan(0);
    expect(atKill.offsets).toBeLessThan(atKill.storedUpTo);
    expect(atKill.stored).toBeGreaterThanOrEqual(atKill.storedUpTo);
    expect(atKill.stored).toBeLessThan(200_000);

    const second = await start({ ...env, ...tuning });
    ctx.pipeline = second;
    ctx.sent = await producing;
    await expectExactlyOnce(db, ctx.sent);
    // Insert-time deduplication: the replay wrote none of the points stored before the kill past
    // the stored-up-to (the points marks told it where each partition's stored points end), so
    // the raw table itself holds every point once, without FINAL.
    expect(replayStored).toBeGreaterThan(0);
    expect(await second.metric('vigil_points_already_stored_total')).toBe(replayStored);
    expect(await scalar(`SELECT count() FROM ${db}.points`)).toBe(ctx.sent.points);
    expect(await scalar(`SELECT count() FROM (SELECT source_partition, source_offset, point_index FROM ${db}.points GROUP BY source_partition, source_offset, point_index HAVING count() > 1)`)).toBe(0);
    // Rollups rebuilt by the replay merge to exactly the aggregates of the raw points.
    const gauges = await scalar(`SELECT count() FROM ${db}.points_dedup WHERE type = 'gauge'`);
    await waitFor('every gauge point in both widths of the rollups', async () => (await scalar(`SELECT sum(count) FROM ${db}.rollups_merged WHERE type = 'gauge'`)) >= 2 * gauges, 60_000, 500);
    await expectRollupsMatchPoints(res.clickhouse(), db, [5, 10]);
  });

  it('SIGTERM drains and commits: exit 0, everything recorded as stored, nothing stored again after restart', async () => {
    const { topic, db, env, pipeline } = ctx as Required<typeof ctx>;
    pipeline.kill('SIGTERM');
    expect(await pipeline.exited).toEqual({ code: 0, signal: null });

    // Offsets sit behind buckets still open (their state is rebuilt by re-reading), and the
    // commit metadata records that every message up to the end is stored.
    const admin = await res.admin();
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId: env['VIGIL_KAFKA_GROUP_ID'] as string, topics: [topic] });
    const byPartition = new Map(committed?.partitions.map((p) => [p.partition, p]));
    for (const e of ends) {
      const c = byPartition.get(e.partition);
      expect(Number(c?.offset)).toBeLessThanOrEqual(Number(e.high));
      expect(JSON.parse(c?.metadata ?? '{}').storedUpTo).toBe(Number(e.high));
    }

    // The series state was written at the drain (models.stateIntervalSeconds, 600 s, is far longer
    // than this stream): every series has its row, so the commit need not wait behind its buckets.
    expect(await scalar(`SELECT uniqExact(series_id) FROM ${db}.detector_state`)).toBe(await scalar(`SELECT uniqExact(series_id) FROM ${db}.points`));

    const rawBefore = await scalar(`SELECT count() FROM ${db}.points`);
    // The restart re-reads everything from the committed offsets (behind the open buckets) to the
    // end, to rebuild bucket state: wait until it has, then nothing may have been written again.
    let replay = 0;
    for (const e of ends) replay += Number(e.high) - Number(byPartition.get(e.partition)?.offset);
    expect(replay).toBeGreaterThan(0);
    const again = await start(env);
    // Of the metrics topic: the repartition topic also carries the sources' progress records.
    await waitFor('the restart to re-read the replay range', async () => (await again.metric('vigil_messages_received_total', { topic })) >= replay, 60_000);
    await waitFor('the replayed work to settle', async () => (await again.metric('vigil_in_flight_bytes')) === 0, 60_000);
    expect(await again.metric('vigil_messages_received_total', { topic })).toBe(replay);
    expect(await again.metric('vigil_rows_inserted_total', { table: 'points' })).toBe(0);
    expect(await again.metric('vigil_dead_letters_total')).toBe(0);
    expect(await scalar(`SELECT count() FROM ${db}.points`)).toBe(rawBefore);
    again.kill('SIGTERM');
    expect((await again.exited).code).toBe(0);
  });

  // Stops and restarts the local ClickHouse; an external server is not the tests' to stop.
  it.runIf(usesLocalStack(res.config))('SIGTERM during a ClickHouse outage: exits 1 at the shutdown deadline (stdout closed under it), a second signal exits at once, a restart loses nothing', async () => {
    const { topic, db, env } = await setup('termdown');
    const timeoutMs = 5000;
    const tuned = { ...env, VIGIL_PIPELINE_SHUTDOWN_TIMEOUT_MS: String(timeoutMs), VIGIL_PIPELINE_RETRY_MAX_MS: '500', VIGIL_LOG_LEVEL: 'info' };
    const a = await start(tuned);
    const b = await start(tuned);
    const producing = stream(topic, 100_000, 10_000);
    await waitFor('rows flowing', async () => (await scalar(`SELECT count() FROM ${db}.points`)) > 5_000, 60_000, 100);
    const log = componentLogger('test-faults');
    await infra.down(res.config, log, ['clickhouse'], { kill: true });
    try {
      await waitFor('inserts failing', async () => (await a.metric('vigil_sink_errors_total', { sink: 'clickhouse' })) > 0 && (await b.metric('vigil_sink_errors_total', { sink: 'clickhouse' })) > 0, 30_000);
      // The reader of a's stdout goes away: every log line from here on meets EPIPE.
      a.child.stdout?.destroy();
      const t0 = Date.now();
      a.kill('SIGTERM');
      const exitA = await a.exited;
      const tookMs = Date.now() - t0;
      expect(exitA).toEqual({ code: 1, signal: null });
      // Exits at the deadline (plus the grace for closing), not before it and not never.
      expect(tookMs).toBeGreaterThanOrEqual(timeoutMs - 500);
      expect(tookMs).toBeLessThan(timeoutMs + 3000 + 5000);

      b.kill('SIGTERM');
      await sleep(300);
      b.kill('SIGTERM');
      // 128 + SIGTERM: the second signal's exit, which does not wait for the drain.
      expect(await b.exited).toEqual({ code: 143, signal: null });
    } finally {
      await infra.up(res.config, log, ['clickhouse']);
    }
    await start(env);
    await expectExactlyOnce(db, await producing);
  });

  // Stops and restarts the local ClickHouse; an external server is not the tests' to stop.
  it.runIf(usesLocalStack(res.config))('ClickHouse killed mid-stream: not ready, paused, bounded memory, no loss, resumes by itself', async () => {
    const { topic, db, env } = await setup('chdown');
    const maxInFlight = 8 * 1024 * 1024;
    const pipeline = await start({ ...env, VIGIL_PIPELINE_MAX_IN_FLIGHT_BYTES: String(maxInFlight), VIGIL_PIPELINE_RETRY_MAX_MS: '1000' });
    const producing = stream(topic, 300_000, 25_000);
    await waitFor('rows flowing', async () => (await scalar(`SELECT count() FROM ${db}.points`)) > 10_000, 60_000, 100);
    const rssBefore = pipeline.rss();
    const log = componentLogger('test-faults');
    await infra.down(res.config, log, ['clickhouse'], { kill: true });
    let maxRss = rssBefore;
    let maxInFlightSeen = 0;
    let pausedSeen = 0;
    try {
      await waitFor('/readyz to turn 503', async () => (await pipeline.readyz()) === 503, 30_000);
      for (let i = 0; i < 24; i++) {
        await sleep(250);
        maxRss = Math.max(maxRss, pipeline.rss());
        maxInFlightSeen = Math.max(maxInFlightSeen, await pipeline.metric('vigil_in_flight_bytes'));
        pausedSeen = Math.max(pausedSeen, await pipeline.metric('vigil_paused_partitions'));
      }
      expect(await pipeline.metric('vigil_sink_errors_total', { sink: 'clickhouse' })).toBeGreaterThan(0);
    } finally {
      await infra.up(res.config, log, ['clickhouse']);
    }
    await waitFor('/readyz to turn 200 again', async () => (await pipeline.readyz()) === 200, 60_000);
    const sent = await producing;
    await expectExactlyOnce(db, sent);

    // Backpressure engaged and held work in flight near its limit (one fetch per partition of slack).
    expect(pausedSeen).toBeGreaterThan(0);
    expect(maxInFlightSeen).toBeGreaterThan(0);
    expect(maxInFlightSeen).toBeLessThanOrEqual(maxInFlight + 4 * 1024 * 1024);
    expect(maxRss - rssBefore).toBeLessThan(256 * 1024 * 1024);
  });
});

describe('a start that fails for good', () => {
  it('exits 1 at once with the error (a rules file that does not exist), having reached Kafka and ClickHouse and opened its server and clients', async ({ annotate }) => {
    const { env } = await setup('badstart');
    const port = await freePort();
    const t0 = Date.now();
    const child = spawn('node', [CLI, 'run'], { env: { ...process.env, ...env, VIGIL_HTTP_PORT: String(port), VIGIL_ALERTS_RULES_FILE: '/nonexistent/rules.yaml' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exit = await Promise.race([new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))), sleep(30_000).then(() => 'still running' as const)]);
    if (exit === 'still running') child.kill('SIGKILL');
    expect(exit, output).toBe(1);
    expect(output).toContain('clickhouse schema ready'); // it got that far: its clients and server were open
    expect(output).toContain('/nonexistent/rules.yaml');
    await annotate(`exited ${Date.now() - t0} ms after the spawn`);
  });
});
