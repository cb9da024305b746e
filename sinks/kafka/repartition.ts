import type { IHeaders } from 'kafkajs';
import { VigilError } from '../../core/errors.js';
import { TopicProducer } from './producer.js';

/** One record for the repartition topic: a partition picked by series id, points as RowBinary rows. */
export interface ForwardRecord {
  partition: number;
  value: Buffer;
  headers: IHeaders;
  /** The source message's Kafka timestamp (ms). */
  timestamp: number;
}

/** The records in sends of at most one record per partition, each partition's in order. */
export function rounds<T extends { partition: number }>(records: readonly T[]): T[][] {
  const out: T[][] = [];
  const seen = new Map<number, number>();
  for (const r of records) {
    const k = seen.get(r.partition) ?? 0;
    seen.set(r.partition, k + 1);
    (out[k] ??= []).push(r);
  }
  return out;
}

/**
 * Produces the first stage's forwarded points to the repartition topic (pipeline/repartition.ts),
 * acks=all. The caller sends one source partition's records in offset order, one send at a time;
 * a failed send may have stored some records, and sending them again is safe (the second stage
 * skips points it applied).
 */
export class RepartitionProducer extends TopicProducer {
  /**
   * Sends the records in rounds of at most one record per partition: kafkajs puts a send's
   * records for one partition into one record batch, which the broker checks against
   * `max.message.bytes` (1 MiB by default) as a whole, so two 512 KiB records of a partition must
   * not share a send. Each partition's records keep their order.
   */
  async send(records: readonly ForwardRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      for (const round of rounds(records)) {
        await this.producer.send({
          topic: this.topic,
          acks: -1,
          messages: round.map((r) => ({ partition: r.partition, value: r.value, headers: r.headers, timestamp: String(r.timestamp) })),
        });
      }
    } catch (err) {
      throw new VigilError('VIGIL_ERR_KAFKA_PRODUCE', `forwarding ${records.length} records to ${this.topic} failed: ${(err as Error).message}`, { cause: err, retryable: true });
    }
  }
}
