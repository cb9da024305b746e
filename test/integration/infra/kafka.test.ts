import { describe, expect, it } from 'vitest';
import { readTopic } from '../../helpers/kafka.js';
import { kcat } from '../../helpers/kcat.js';
import { useResources } from '../../helpers/resources.js';

const res = useResources();
const broker = res.config.kafka.brokers[0] as string;

async function consumeAll(topic: string, count: number) {
  return (await readTopic(res.kafka, topic, count)).map((m) => ({ key: m.key, value: m.value.toString(), partition: m.partition }));
}

describe('local Kafka broker', () => {
  it('round-trips messages with kafkajs across partitions', async () => {
    const topic = await res.topic('smoke_kafkajs', 3);
    const producer = res.kafka.producer();
    await producer.connect();
    const sent = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}` }));
    await producer.send({ topic, acks: -1, messages: sent });
    await producer.disconnect();
    const got = await consumeAll(topic, sent.length);
    expect(got.map((m) => m.value).sort()).toEqual(sent.map((m) => m.value).sort());
    expect(new Set(got.map((m) => m.partition)).size).toBeGreaterThan(1);
  });

  it('round-trips messages with kcat, and kcat reads what kafkajs wrote', async () => {
    const topic = await res.topic('smoke_kcat', 1);
    await kcat(['-b', broker, '-t', topic, '-P', '-K', ':'], 'a:one\nb:two\nc:three\n');
    const out = await kcat(['-b', broker, '-t', topic, '-C', '-e', '-q', '-f', '%k=%s\n']);
    expect(out.trim().split('\n')).toEqual(['a=one', 'b=two', 'c=three']);

    const producer = res.kafka.producer();
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: 'd', value: 'four' }] });
    await producer.disconnect();
    const after = await kcat(['-b', broker, '-t', topic, '-C', '-e', '-q', '-o', '3', '-f', '%k=%s\n']);
    expect(after.trim()).toBe('d=four');

    const viaKafkajs = await consumeAll(topic, 4);
    expect(viaKafkajs.map((m) => `${m.key}=${m.value}`)).toEqual(['a=one', 'b=two', 'c=three', 'd=four']);
  });
});
