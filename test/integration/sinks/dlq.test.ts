import { describe, expect, it } from 'vitest';
import { DLQ_HEADERS, DeadLetterProducer, MAX_DEAD_LETTER_BYTES, MIN_DEAD_LETTER_BYTES } from '../../../sinks/kafka/dlq.js';
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

describe('dead-letter producer: letters the broker refuses for good (a topic with max.message.bytes = 20000)', () => {
  it('cuts a refused letter to 1 KiB without its original headers, once; produces the others whole; never retries forever', async () => {
    const topic = await res.topic('dlq_small', 1, { 'max.message.bytes': '20000' });
    const dlq = new DeadLetterProducer(res.kafka, topic);
    await dlq.start();
    res.onClose(() => dlq.close());
    const big = { key: Buffer.from('big'), value: Buffer.alloc(100_000, 0x62), headers: { [DLQ_HEADERS.code]: 'VIGIL_ERR_DECODE_JSON', [DLQ_HEADERS.offset]: '7', original: 'x'.repeat(5000) } };
    const small = Array.from({ length: 5 }, (_, i) => ({ key: null, value: Buffer.from(`ok ${i}`), headers: { n: String(i) } }));
    const outcome = await dlq.send([small[0]!, small[1]!, big, small[2]!, small[3]!, small[4]!]);
    expect(outcome).toEqual({ cut: 1, dropped: [] });
    const got = await readTopic(res.kafka, topic, 6);
    expect(got.map((m) => m.value.length)).toEqual([4, 4, MIN_DEAD_LETTER_BYTES, 4, 4, 4]);
    const cut = got[2]!;
    expect(cut.key).toBe(''); // readTopic shows a null key as ''
    expect(cut.headers['original']).toBeUndefined();
    expect(cut.headers[DLQ_HEADERS.code]).toBe('VIGIL_ERR_DECODE_JSON');
    expect(cut.headers[DLQ_HEADERS.offset]).toBe('7');
    expect(cut.headers[DLQ_HEADERS.originalSize]).toBe('100000');
    expect(cut.headers[DLQ_HEADERS.cut]).toMatch(/^the broker refused the letter: /);
    expect(got.filter((_, i) => i !== 2).map((m) => m.headers['n'])).toEqual(['0', '1', '2', '3', '4']);
  }, 90_000);

  it('sets a letter aside (dropped, not thrown, not retried) when even its cut form is refused', async () => {
    const topic = await res.topic('dlq_tiny', 1, { 'max.message.bytes': '200' });
    const dlq = new DeadLetterProducer(res.kafka, topic);
    await dlq.start();
    res.onClose(() => dlq.close());
    const letter = { key: null, value: Buffer.alloc(5000, 0x63), headers: { [DLQ_HEADERS.code]: 'VIGIL_ERR_DECODE_JSON' } };
    const outcome = await dlq.send([letter]);
    expect(outcome.cut).toBe(1);
    expect(outcome.dropped).toHaveLength(1);
    expect(outcome.dropped[0]?.value.length).toBe(MIN_DEAD_LETTER_BYTES);
  }, 90_000);
});
