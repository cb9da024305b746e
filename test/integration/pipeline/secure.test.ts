import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTopic } from '../../helpers/kafka.js';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';

/**
 * Vigil against a secured Kafka: the local stack's SASL_SSL listener (TLS from its own CA,
 * SCRAM users in the cluster metadata), started by `vigil infra up` like the rest of the stack.
 */
const res = useResources();
const start = usePipelines();

describe('Kafka over SASL_SSL (the local stack\'s listener, its own CA)', () => {
  it.each(['scram-sha-512', 'scram-sha-256', 'plain'])('consumes and dead-letters through TLS with SASL %s, the password read from a file', async (mechanism) => {
    const { produce } = await import('../../../bench/generator.js');
    const { topic, db, env } = await res.pipelineEnv('secure', 2);
    const tls = join(res.config.dataDir, 'tls');
    const pipeline = await start({
      ...env,
      VIGIL_KAFKA_BROKERS: `127.0.0.1:${res.config.infra.kafkaSaslSslPort}`,
      VIGIL_KAFKA_SSL_CA_FILE: join(tls, 'ca.pem'),
      VIGIL_KAFKA_SASL_MECHANISM: mechanism,
      VIGIL_KAFKA_SASL_USERNAME: 'vigil',
      VIGIL_KAFKA_SASL_PASSWORD_FILE: join(tls, 'scram-password'),
      VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
    });
    // Produced over the plaintext listener: the same topic, read back through the secured one.
    const sent = await produce(res.kafka, { topic, series: 20, points: 500, pointsPerMessage: 10, format: 'json', rate: 0, durationMs: 0, intervalMs: 1000, startMs: Date.now() - 600_000, seed: 9 });
    await waitFor('the points through SASL_SSL', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= sent.points, 60_000);
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(500);
    // A bad message: its dead letter is produced through the secured listener too.
    const producer = res.kafka.producer();
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ value: '{"not json' }] });
    await producer.disconnect();
    const [letter] = await readTopic(res.kafka, env['VIGIL_KAFKA_DLQ_TOPIC'] as string, 1);
    expect(letter?.headers['vigil-error-code']).toBe('VIGIL_ERR_DECODE_JSON');
    expect(await pipeline.readyz()).toBe(200);
  }, 120_000);
});
