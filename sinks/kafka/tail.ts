import { randomUUID } from 'node:crypto';
import type { Kafka, KafkaMessage } from 'kafkajs';

/**
 * Reads every message a topic received since `sinceMs` (by record timestamp), to its current end,
 * with a throwaway consumer group that commits nothing. For small topics (alert events): the
 * alerts topic is the record of what was published, so a member that takes over partitions asks
 * it, not only the alerts table, which a crash between the two writes may have left behind.
 */
export async function readTopicSince(kafka: Kafka, topic: string, sinceMs: number, onMessage: (m: KafkaMessage) => void, timeoutMs = 30_000): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  let starts: { partition: number; offset: string }[];
  let ends: { partition: number; offset: string; high: string }[];
  try {
    starts = await admin.fetchTopicOffsetsByTimestamp(topic, sinceMs);
    ends = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  // Per partition, the next offset to reach (the high watermark) from where `sinceMs` begins.
  const pending = new Map<number, { from: string; high: number }>();
  for (const e of ends) {
    const from = starts.find((s) => s.partition === e.partition)?.offset ?? e.high;
    const start = Number(from) < 0 ? Number(e.high) : Number(from);
    if (start < Number(e.high)) pending.set(e.partition, { from: String(start), high: Number(e.high) });
  }
  if (pending.size === 0) return 0;
  const consumer = kafka.consumer({ groupId: `vigil-tail-${randomUUID()}`, allowAutoTopicCreation: false });
  let read = 0;
  let timer: NodeJS.Timeout | undefined;
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: false });
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`reading ${topic} since ${new Date(sinceMs).toISOString()}: ${pending.size} partitions not read to their end in ${timeoutMs} ms`)), timeoutMs);
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            const p = pending.get(partition);
            if (!p || Number(message.offset) < Number(p.from)) return;
            onMessage(message);
            read++;
            if (Number(message.offset) >= p.high - 1) pending.delete(partition);
            if (pending.size === 0) resolve();
          },
        })
        .then(() => {
          for (const [partition, p] of pending) consumer.seek({ topic, partition, offset: p.from });
        }, reject);
    });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
  return read;
}
