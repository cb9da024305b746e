import { createRequire } from 'node:module';
import { Kafka, logLevel, type KafkaConfig, type LogEntry, type SASLOptions } from 'kafkajs';
import { tlsFiles } from '../core/redact.js';
import type { VigilConfig } from '../core/config/index.js';
import type { Logger } from '../core/log.js';
import { repartitionTopicOf } from './repartition.js';

interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: unknown;
  scheduleCheckPendingRequests(): void;
}

/**
 * kafkajs 2.2.4 (its last release) re-arms a timer of `throttledUntil - now` ms (negative, so 1 ms)
 * after every response even when nothing waits and nothing is throttled: every broker connection
 * wakes the event loop a thousand times a second for nothing (tulios/kafkajs#1556, #1704; the fix
 * of #1667 and #1768 never released). The same method, minus that timer: a request waiting behind
 * the in-flight limit or a throttle is still checked again, as before.
 */
export function mendRequestQueue(proto: RequestQueueInternals): boolean {
  const original = proto.scheduleCheckPendingRequests;
  if (typeof original !== 'function' || (original as { vigilMended?: true }).vigilMended) return false;
  const mended = function (this: RequestQueueInternals): void {
    if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
    original.call(this);
  };
  (mended as { vigilMended?: true }).vigilMended = true;
  proto.scheduleCheckPendingRequests = mended;
  return true;
}

const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as { prototype: RequestQueueInternals };
mendRequestQueue(RequestQueue.prototype);

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
