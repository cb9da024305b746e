import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';

const res = useResources();
const start = usePipelines();

/** The README's "Producing to Vigil" section. */
function guide(): string {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  return readme.slice(readme.indexOf('### Producing to Vigil'), readme.indexOf('### Bad input and dead letters'));
}

/** The guide's fenced code blocks in `lang`. */
function guideBlocks(lang: string): string[] {
  return [...guide().matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1] as string);
}

interface Stored {
  metric: string;
  type: string;
  tags: string;
}

describe('the README\'s producer guide, run against a pipeline (real Kafka and ClickHouse)', () => {
  it('kcat, a kafkajs application, Telegraf\'s and prometheus-kafka-adapter\'s messages: stored as the guide says; keyed ones straight, unkeyed ones through the repartition topic', async () => {
    const { topic, db, env } = await res.pipelineEnv('producers', 2);
    const pipeline = await start(env);
    const broker = res.config.kafka.brokers[0] as string;
    const here = (text: string) => text.replaceAll('127.0.0.1:9092', broker).replaceAll(/-t metrics\b/g, `-t ${topic}`).replaceAll("topic: 'metrics'", `topic: '${topic}'`);

    const commands = guideBlocks('sh').filter((b) => b.includes('| kcat -P'));
    expect(commands).toHaveLength(2);
    for (const command of commands) execFileSync('sh', ['-c', here(command)]);
    const apps = guideBlocks('js');
    expect(apps).toHaveLength(1);
    execFileSync(process.execPath, ['--input-type=module', '-e', here(apps[0] as string)], { cwd: new URL('../../../', import.meta.url) });
    const keyed = 4;
    await waitFor('the keyed points stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= keyed, 30_000, 200);
    expect(await pipeline.metric('vigil_repartition_points_total')).toBe(0);

    // Telegraf's outputs.kafka with data_format influx and routing_tag host: one metric per
    // message, nanosecond timestamps, the host's value as the key.
    const producer = res.kafka.producer();
    await producer.connect();
    const ns = `${Date.now()}000000`;
    await producer.send({
      topic,
      acks: -1,
      messages: [
        { key: 'db-2', value: `mem,host=db-2 used_percent=61.5,available=123456789i ${ns}` },
        { key: 'db-2', value: `net,host=db-2,interface=eth0 bytes_recv=9876543210i,up=true ${ns}` },
      ],
    });
    // prometheus-kafka-adapter's JSON, as the guide shows it: no key.
    const adapter = /\{"timestamp".*?"labels": \{[^}]*\}\}/.exec(guide())?.[0];
    expect(adapter).toBeDefined();
    await producer.send({ topic, acks: -1, messages: [{ key: null, value: (adapter as string).replace('2024-01-15T10:30:00Z', new Date().toISOString()) }, { key: null, value: JSON.stringify({ timestamp: new Date().toISOString(), value: '7', name: 'http_requests_total', labels: { __name__: 'http_requests_total', job: 'api' } }) }] });
    await producer.disconnect();
    const all = keyed + 4 + 2;
    await waitFor('every point stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= all, 30_000, 200);
    await waitFor('the unkeyed points forwarded', async () => (await pipeline.metric('vigil_repartition_points_total')) >= 2, 30_000, 200);
    expect(await pipeline.metric('vigil_repartition_points_total')).toBe(2);

    const rs = await res.clickhouse().query({
      query: `SELECT metric, toString(type) AS type, toString(arrayMap((k, v) -> concat(k, '=', v), \`tags.key\`, \`tags.value\`)) AS tags FROM ${db}.points_dedup ORDER BY metric`,
      format: 'JSONEachRow',
    });
    expect(await rs.json<Stored>()).toEqual([
      { metric: 'cpu.usage_system', type: 'gauge', tags: "['cpu=cpu-total','host=web-1']" },
      { metric: 'cpu.usage_user', type: 'gauge', tags: "['cpu=cpu-total','host=web-1']" },
      { metric: 'crypto.key.access_count', type: 'counter', tags: "['key_type=encryption','service=vault']" },
      { metric: 'http_requests_total', type: 'counter', tags: "['job=api']" },
      { metric: 'mem.available', type: 'gauge', tags: "['host=db-2']" },
      { metric: 'mem.used_percent', type: 'gauge', tags: "['host=db-2']" },
      { metric: 'net.bytes_recv', type: 'gauge', tags: "['host=db-2','interface=eth0']" },
      { metric: 'net.up', type: 'gauge', tags: "['host=db-2','interface=eth0']" },
      { metric: 'system.cpu.usage_total', type: 'gauge', tags: "['host=web-1']" },
      { metric: 'up', type: 'gauge', tags: "['job=api']" },
    ]);
    expect(await pipeline.metric('vigil_dead_letters_total')).toBe(0);
  });
});
