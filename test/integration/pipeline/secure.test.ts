import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVigilError } from '../../../core/errors.js';
import { ClickHouseSink } from '../../../sinks/clickhouse/index.js';
import { readTopic } from '../../helpers/kafka.js';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';

/**
 * Vigil against a secured Kafka and ClickHouse: the local stack's SASL_SSL listener (TLS from its
 * own CA, SCRAM users in the cluster metadata) and ClickHouse's HTTPS port (the same CA, a client
 * certificate required), started by `vigil infra up` like the rest of the stack.
 */
const res = useResources();
const start = usePipelines();

/** A message that is not JSON, produced over the plaintext listener, reaches the dead-letter topic. */
async function expectDeadLetter(topic: string, dlqTopic: string): Promise<void> {
  const producer = res.kafka.producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: [{ value: '{"not json' }] });
  await producer.disconnect();
  const [letter] = await readTopic(res.kafka, dlqTopic, 1);
  expect(letter?.headers['vigil-error-code']).toBe('VIGIL_ERR_DECODE_JSON');
}

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
    await expectDeadLetter(topic, env['VIGIL_KAFKA_DLQ_TOPIC'] as string);
    expect(await pipeline.readyz()).toBe(200);
  }, 120_000);
});

describe('ClickHouse over HTTPS with a client certificate (the local stack\'s port, its own CA)', () => {
  const tls = () => join(res.config.dataDir, 'tls');
  const https = () => `https://127.0.0.1:${res.config.infra.clickhouseHttpsPort}`;

  it('refuses a client without the certificate, and one that does not trust the server\'s CA', async () => {
    const attempts = {
      'no client certificate': { caFile: join(tls(), 'ca.pem') },
      'the system CAs only': { certFile: join(tls(), 'client.pem'), keyFile: join(tls(), 'client-key.pem') },
    };
    for (const [name, files] of Object.entries(attempts)) {
      const s = new ClickHouseSink({ ...res.config.clickhouse, url: https(), database: 'vigil_never_created', requestTimeoutMs: 5000, caFile: '', certFile: '', keyFile: '', ...files });
      const err = await s.start().then(
        () => null,
        (e: unknown) => e,
      );
      await s.close();
      expect(isVigilError(err, 'VIGIL_ERR_CLICKHOUSE_UNAVAILABLE'), `${name}: ${String(err)}`).toBe(true);
    }
  });

  it('Kafka over SASL_SSL and ClickHouse over HTTPS at once: points, rollups and dead letters all through the secured paths', async () => {
    const { produce } = await import('../../../bench/generator.js');
    const { topic, db, env } = await res.pipelineEnv('secure_ch', 2);
    const pipeline = await start({
      ...env,
      VIGIL_KAFKA_BROKERS: `127.0.0.1:${res.config.infra.kafkaSaslSslPort}`,
      VIGIL_KAFKA_SSL_CA_FILE: join(tls(), 'ca.pem'),
      VIGIL_KAFKA_SASL_MECHANISM: 'scram-sha-256',
      VIGIL_KAFKA_SASL_USERNAME: 'vigil',
      VIGIL_KAFKA_SASL_PASSWORD_FILE: join(tls(), 'scram-password'),
      VIGIL_CLICKHOUSE_URL: https(),
      VIGIL_CLICKHOUSE_CA_FILE: join(tls(), 'ca.pem'),
      VIGIL_CLICKHOUSE_CERT_FILE: join(tls(), 'client.pem'),
      VIGIL_CLICKHOUSE_KEY_FILE: join(tls(), 'client-key.pem'),
      VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '1500',
    });
    const sent = await produce(res.kafka, { topic, series: 20, points: 500, pointsPerMessage: 10, format: 'json', rate: 0, durationMs: 0, intervalMs: 1000, startMs: Date.now() - 600_000, seed: 11 });
    await waitFor('the points through HTTPS', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= sent.points, 60_000);
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup`)).toBe(500);
    await waitFor('rollups through HTTPS', async () => (await res.scalar(`SELECT count() FROM ${db}.rollups`)) > 0, 60_000);
    await expectDeadLetter(topic, env['VIGIL_KAFKA_DLQ_TOPIC'] as string);
    expect(await pipeline.readyz()).toBe(200);
  }, 120_000);
});
