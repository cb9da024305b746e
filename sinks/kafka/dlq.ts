import { Partitioners, type IHeaders, type Kafka, type Producer } from 'kafkajs';
import { VigilError } from '../../core/errors.js';

/**
 * Dead letters (DESIGN.md §3): the offending message (or line, or JSON element) with the
 * original key and headers plus `vigil-error-code`, `vigil-error-reason`, `vigil-source-topic`,
 * `vigil-source-partition`, `vigil-source-offset` and, where it applies, `vigil-source-line` or
 * `vigil-source-element`. Produced with acks=all before the source offset is committed; a retry
 * after a failure may produce a dead letter twice (at-least-once). A value larger than
 * MAX_DEAD_LETTER_BYTES (a message rejected as too large) is cut to that size and carries
 * `vigil-original-size`, since the broker would refuse the whole record otherwise.
 */
export interface DeadLetter {
  key: Buffer | null;
  value: Buffer;
  headers: IHeaders;
}

export const DLQ_HEADERS = {
  code: 'vigil-error-code',
  reason: 'vigil-error-reason',
  topic: 'vigil-source-topic',
  partition: 'vigil-source-partition',
  offset: 'vigil-source-offset',
  line: 'vigil-source-line',
  element: 'vigil-source-element',
  originalSize: 'vigil-original-size',
} as const;

/** Below Kafka's default max.message.bytes (1 MiB) with room for key and headers. */
export const MAX_DEAD_LETTER_BYTES = 512 * 1024;
/** Records per produce request are grouped up to about this many bytes. */
const MAX_REQUEST_BYTES = 256 * 1024;

/** Cuts an oversized value and records its original size. */
export function fitDeadLetter(letter: DeadLetter): DeadLetter {
  if (letter.value.length <= MAX_DEAD_LETTER_BYTES) return letter;
  return {
    key: letter.key,
    value: letter.value.subarray(0, MAX_DEAD_LETTER_BYTES),
    headers: { ...letter.headers, [DLQ_HEADERS.originalSize]: String(letter.value.length) },
  };
}

function approxSize(l: DeadLetter): number {
  let n = l.value.length + (l.key?.length ?? 0) + 64;
  for (const [k, v] of Object.entries(l.headers)) n += k.length + String(v).length;
  return n;
}

export class DeadLetterProducer {
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

  async send(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    try {
      let chunk: DeadLetter[] = [];
      let bytes = 0;
      const flush = async () => {
        if (chunk.length === 0) return;
        await this.producer.send({ topic: this.topic, acks: -1, messages: chunk.map((l) => ({ key: l.key, value: l.value, headers: l.headers })) });
        chunk = [];
        bytes = 0;
      };
      for (const raw of letters) {
        const letter = fitDeadLetter(raw);
        const size = approxSize(letter);
        if (bytes + size > MAX_REQUEST_BYTES) await flush();
        chunk.push(letter);
        bytes += size;
      }
      await flush();
    } catch (err) {
      throw new VigilError('VIGIL_ERR_KAFKA_PRODUCE', `producing ${letters.length} dead letters to ${this.topic} failed: ${(err as Error).message}`, {
        cause: err,
        retryable: true,
      });
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}
