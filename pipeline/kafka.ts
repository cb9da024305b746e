import { Kafka, logLevel, type KafkaConfig, type LogEntry, type SASLOptions } from 'kafkajs';
import { tlsFiles } from '../core/redact.js';
import type { VigilConfig } from '../core/config/index.js';
import type { Logger } from '../core/log.js';
import { repartitionTopicOf } from './repartition.js';

/** A kafkajs client whose logs go to the component's pino logger instead of the console. */
export function createKafka(config: VigilConfig, log: Logger): Kafka {
  const levels: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
    [logLevel.ERROR]: 'error',
    [logLevel.WARN]: 'warn',
    [logLevel.INFO]: 'info',
    [logLevel.DEBUG]: 'debug',
  };
  return new Kafka({
    clientId: config.kafka.clientId,
    brokers: [...config.kafka.brokers],
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        log[levels[level] ?? 'info'](rest, message);
      },
    retry: { initialRetryTime: 300, retries: 8, maxRetryTime: 10_000 },
    ...kafkaSecurity(config.kafka),
  });
}

/** kafkajs `ssl` and `sasl` options from the configuration (none by default). */
export function kafkaSecurity(k: VigilConfig['kafka']): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  const out: Pick<KafkaConfig, 'ssl' | 'sasl'> = {};
  const files = tlsFiles({ ca: k.sslCaFile, cert: k.sslCertFile, key: k.sslKeyFile });
  if (k.ssl || files) out.ssl = { rejectUnauthorized: k.sslRejectUnauthorized, ...files };
  if (k.saslMechanism) out.sasl = { mechanism: k.saslMechanism, username: k.saslUsername, password: k.saslPassword } as SASLOptions;
  return out;
}

/** Creates missing topics (metric topics when listed, dead letters, alerts); existing ones are left as they are. */
export async function ensureTopics(kafka: Kafka, config: VigilConfig, extra: readonly string[] = []): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const wanted = [...(config.kafka.topicPattern ? [] : config.kafka.topics), config.kafka.dlqTopic, config.kafka.alertsTopic, ...extra];
    if (config.kafka.repartition !== 'never') wanted.push(repartitionTopicOf(config));
    const missing = [...new Set(wanted)].filter((t) => !existing.has(t));
    if (missing.length > 0) {
      await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: config.kafka.topicPartitions })) });
    }
    return missing;
  } finally {
    await admin.disconnect();
  }
}
