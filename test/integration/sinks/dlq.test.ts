import { describe, expect, it } from 'vitest';
import { DLQ_HEADERS, DeadLetterProducer, MAX_DEAD_LETTER_BYTES } from '../../../sinks/kafka/dlq.js';
import { readTopic } from '../../helpers/kafka.js';
import { useResources } from '../../helpers/resources.js';

const res = useResources();

describe('dead-letter producer (the real broker)', () => {
  it('produces every letter with its key and headers; an oversized value is cut to MAX_DEAD_LETTER_BYTES with its original size', async () => {
    const topic = await res.topic('dlq', 1);
    const dlq = new DeadLetterProducer(res.kafka, topic);
    await dlq.start();
    res.onClose(() => dlq.close());
    const big = Buffer.alloc(700 * 1024, 0x61);
    // Enough small letters to need several produce requests (grouped by about 256 KiB).
    const small = Array.from({ length: 300 }, (_, i) => ({ key: Buffer.from(`k${i}`), value: Buffer.alloc(2048, i % 256), headers: { [DLQ_HEADERS.code]: 'VIGIL_ERR_DECODE_JSON', n: String(i) } }));
    await dlq.send([{ key: Buffer.from('big'), value: big, headers: { [DLQ_HEADERS.code]: 'VIGIL_ERR_DECODE_TOO_LARGE' } }, ...small]);
    const got = await readTopic(res.kafka, topic, 301);
    expect(got).toHaveLength(301);
    const first = got[0];
    expect(first?.key).toBe('big');
    expect(first?.value.length).toBe(MAX_DEAD_LETTER_BYTES);
    expect(first?.value.equals(big.subarray(0, MAX_DEAD_LETTER_BYTES))).toBe(true);
    expect(first?.headers[DLQ_HEADERS.originalSize]).toBe(String(big.length));
    expect(first?.headers[DLQ_HEADERS.code]).toBe('VIGIL_ERR_DECODE_TOO_LARGE');
    got.slice(1).forEach((m, i) => {
      expect(m.key).toBe(`k${i}`);
      expect(m.headers['n']).toBe(String(i));
      expect(m.headers[DLQ_HEADERS.originalSize]).toBeUndefined();
      expect(m.value.equals(Buffer.alloc(2048, i % 256))).toBe(true);
    });
  });

  it('fails with VIGIL_ERR_KAFKA_PRODUCE (retryable) when the topic does not exist', async () => {
    const dlq = new DeadLetterProducer(res.kafka, 'vigil_no_such_topic_for_dlq_test');
    await dlq.start();
    res.onClose(() => dlq.close());
    const err = await dlq.send([{ key: null, value: Buffer.from('x'), headers: {} }]).then(
      () => null,
      (e: unknown) => e as { code?: string; retryable?: boolean },
    );
    expect(err?.code).toBe('VIGIL_ERR_KAFKA_PRODUCE');
    expect(err?.retryable).toBe(true);
  }, 90_000);
});
