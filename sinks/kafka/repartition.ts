import { Partitioners, type IHeaders, type Kafka, type Producer } from 'kafkajs';
import { VigilError } from '../../core/errors.js';

/** One record for the repartition topic: a partition picked by series id, points as RowBinary rows. */
export interface ForwardRecord {
  partition: number;
  value: Buffer;
  headers: IHeaders;
  /** The source message's Kafka timestamp (ms). */
  timestamp: number;
}

/**
 * Produces the first stage's forwarded points to the repartition topic (pipeline/repartition.ts),
 * acks=all. The caller sends one source partition's records in offset order, one send at a time;
 * a failed send may have stored some records, and sending them again is safe (the second stage
 * skips points it applied).
 */
export class RepartitionProducer {
  private readonly producer: Producer;

  constructor(
    kafka: Kafka,
    readonly topic: string,
  ) {
    this.producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  }

  async start(): Promise<void> {
    await this.producer.connect();
  }

  async send(records: readonly ForwardRecord[]): Promise<void> {
    if (records.length === 0) return;
    try {
      await this.producer.send({
        topic: this.topic,
        acks: -1,
        messages: records.map((r) => ({ partition: r.partition, value: r.value, headers: r.headers, timestamp: String(r.timestamp) })),
      });
    } catch (err) {
      throw new VigilError('VIGIL_ERR_KAFKA_PRODUCE', `forwarding ${records.length} records to ${this.topic} failed: ${(err as Error).message}`, { cause: err, retryable: true });
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}
