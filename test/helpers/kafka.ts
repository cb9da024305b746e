import type { IHeaders, Kafka } from 'kafkajs';
import { uniqueName } from './resources.js';

export interface ReadMessage {
  partition: number;
  offset: string;
  key: string;
  value: Buffer;
  headers: Record<string, string>;
}

function headersOf(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) out[k] = Array.isArray(v) ? String(v[0]) : String(v ?? '');
  return out;
}

/** Reads `count` messages of a topic from the beginning with a throwaway consumer group. */
export async function readTopic(kafka: Kafka, topic: string, count: number, timeoutMs = 30_000): Promise<ReadMessage[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('reader') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen: ReadMessage[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.length}/${count} messages arrived on ${topic}`)), timeoutMs);
      if (count === 0) {
        clearTimeout(timer);
        resolve();
      }
      consumer
        .run({
          eachMessage: async ({ message, partition }) => {
            seen.push({
              partition,
              offset: message.offset,
              key: message.key?.toString() ?? '',
              value: message.value ?? Buffer.alloc(0),
              headers: headersOf(message.headers),
            });
            if (seen.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return seen;
}
