import { Partitioners, type Kafka, type Producer } from 'kafkajs';

/**
 * A kafkajs producer bound to one of Vigil's own topics (dead letters, the repartition topic):
 * topics are created by Vigil at start, never by a produce, and the partitioner is Kafka's own.
 */
export class TopicProducer {
  protected readonly producer: Producer;

  constructor(
    kafka: Kafka,
    readonly topic: string,
  ) {
    this.producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  }

  async start(): Promise<void> {
    await this.producer.connect();
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}
