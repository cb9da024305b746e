import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { produce, type ProduceSummary } from '../../../bench/generator.js';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { uniqueName, useResources } from '../../helpers/resources.js';

const res = useResources();
const start = usePipelines();
const scalar = (query: string) => res.scalar(query);

/** Points of the past (nothing is late or future), 10 per message, keyed by series. */
const batch = (topic: string, points: number, seed: number): Promise<ProduceSummary> =>
  produce(res.kafka, { topic, series: 50, pointsPerMessage: 10, format: 'json', rate: 100_000, points, durationMs: 0, intervalMs: 1000, startMs: Date.now() - 3_600_000, seed });

describe('insert-time deduplication of points: the points marks', () => {
  it('a new consumer group over a stored topic writes nothing again; a topic deleted and made again under its name is stored whole (the old marks lie past its end)', async () => {
    const { topic, db, env } = await res.pipelineEnv('marks', 2);
    const tuned = { ...env, VIGIL_MODELS_ENABLED: 'false', VIGIL_KAFKA_FROM_BEGINNING: 'true' };
    const first = await batch(topic, 20_000, 1);
    const a = await start(tuned);
    await waitFor('every point stored', async () => (await scalar(`SELECT count() FROM ${db}.points`)) >= first.points, 60_000, 200);
    a.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);

    // Another group re-reads the topic from its beginning into the same database (an operator
    // who changed kafka.groupId): the marks say every point is stored.
    const b = await start({ ...tuned, VIGIL_KAFKA_GROUP_ID: uniqueName('marks_group_b') });
    await waitFor('the new group to read the whole topic', async () => (await b.metric('vigil_messages_received_total', { topic })) >= first.messages, 60_000);
    await waitFor('its work to settle', async () => (await b.metric('vigil_in_flight_bytes')) === 0, 60_000);
    expect(await b.metric('vigil_points_already_stored_total')).toBe(first.points);
    expect(await b.metric('vigil_rows_inserted_total', { table: 'points' })).toBe(0);
    expect(await scalar(`SELECT count() FROM ${db}.points`)).toBe(first.points);
    b.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);

    // The topic deleted and made again: its offsets start over, below the old marks.
    const admin = await res.admin();
    await admin.deleteTopics({ topics: [topic] });
    await waitFor(
      'the topic made again',
      async () => {
        try {
          return await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
        } catch {
          await sleep(200);
          return false;
        }
      },
      60_000,
    );
    const second = await batch(topic, 2_000, 2);
    const c = await start({ ...tuned, VIGIL_KAFKA_GROUP_ID: uniqueName('marks_group_c') });
    await waitFor('the new topic stored whole', async () => (await scalar(`SELECT count() FROM ${db}.points`)) >= first.points + second.points, 60_000, 200);
    expect(await scalar(`SELECT count() FROM ${db}.points`)).toBe(first.points + second.points);
    expect(await c.metric('vigil_points_already_stored_total')).toBe(0);
    expect(c.output).toMatch(/a points mark lies past the end of its partition/);
    c.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
  });
});
