import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Partitioners, type Message } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { readAlertsTopic } from '../../helpers/alerts.js';
import { readTopic } from '../../helpers/kafka.js';
import { usePipelines, waitFor } from '../../helpers/pipeline.js';
import { useResources } from '../../helpers/resources.js';
import { seriesId, sortTags } from '../../../workers/series.js';

/**
 * Tenants (issue 18) through the real Kafka and ClickHouse 18.16: a tenant from a topic, a header
 * and a tag; claims against the topic's tenant refused; the tenant a column of points, rollups
 * and alerts and a field of the alert events; one metric and tag set in two tenants two series.
 */
const res = useResources();
const start = usePipelines();
const dir = mkdtempSync(join(tmpdir(), 'vigil-tenants-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function send(topic: string, messages: Message[]): Promise<void> {
  const producer = res.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: messages.map((m) => ({ ...m, partition: 0 })) });
  await producer.disconnect();
}

const MINUTE = 60_000;

describe('tenants (real Kafka and ClickHouse)', () => {
  it('a point\'s tenant comes from its topic, else its header, else its tag; other claims are dead-lettered; tables and alert events carry it', async () => {
    const { topic, db, env } = await res.pipelineEnv('tenants', 1);
    const acmeTopic = await res.topic('tenants_acme', 1);
    const rules = join(dir, 'rules.yaml');
    writeFileSync(rules, 'rules:\n  - id: hot\n    kind: threshold\n    metric: tenant.cpu\n    op: ">"\n    value: 90\n    for: 1m\n');
    // acme's own rules: a lower threshold, for its series only.
    const tenantRules = join(dir, 'tenant-rules');
    mkdirSync(tenantRules);
    writeFileSync(join(tenantRules, 'acme.yaml'), 'rules:\n  - id: warm\n    kind: threshold\n    metric: tenant.cpu\n    op: ">"\n    value: 80\n    for: 1m\n');
    writeFileSync(join(tenantRules, 'README.txt'), 'not rules');
    const configFile = join(dir, 'vigil.json');
    writeFileSync(configFile, JSON.stringify({ tenants: { tag: 'tenant', topics: { [acmeTopic]: 'acme' } } }));
    await start({
      ...env,
      VIGIL_CONFIG: configFile,
      VIGIL_KAFKA_TOPICS: `${topic},${acmeTopic}`,
      VIGIL_ALERTS_RULES_FILE: rules,
      VIGIL_ALERTS_TENANT_RULES_DIR: tenantRules,
      VIGIL_ROLLUPS_WIDTHS_SECONDS: '60',
      VIGIL_MODELS_WIDTH_SECONDS: '60',
      VIGIL_ROLLUPS_ALLOWED_LATENESS_MS: '0',
      VIGIL_ROLLUPS_IDLE_TIMEOUT_MS: '86400000',
      VIGIL_PIPELINE_INSERT_LINGER_MS: '100',
      VIGIL_TENANTS_MAX_SERIES_PER_SHARD: '2',
    });
    const t0 = Math.floor(Date.now() / MINUTE) * MINUTE - 120 * MINUTE;
    const point = (i: number, value: number, tags: Record<string, string>) => JSON.stringify({ name: 'tenant.cpu', value, timestamp: t0 + i * MINUTE + 30_000, tags });
    // Buckets 0-2 hot (> 90 for a minute fires at the end of bucket 1), bucket 4 closes them.
    const steps = [95, 96, 97, 50, 50];
    const shared: Message[] = [];
    const acme: Message[] = [];
    steps.forEach((v, i) => {
      shared.push({ key: 'h', value: point(i, v, { host: 'h1' }) }); // the default tenant
      shared.push({ key: 'h', value: point(i, v, { host: 'h1', tenant: 'gamma' }) }); // by tag
      shared.push({ key: 'h', value: point(i, v, { host: 'h1' }), headers: { 'vigil-tenant': 'beta' } }); // by header
      acme.push({ key: 'h', value: point(i, v, { host: 'h1' }) }); // by topic
      // Not keyed: through the repartition topic, the tenant travelling with the series.
      shared.push({ key: null, value: point(i, 10, { host: 'h1' }), headers: { 'vigil-tenant': 'delta' } });
    });
    // Refused: a tag against its header; a tag against the topic; a header against the topic; a bad name.
    shared.push({ key: 'h', value: point(0, 1, { host: 'h2', tenant: 'gamma' }), headers: { 'vigil-tenant': 'beta' } });
    acme.push({ key: 'h', value: point(0, 1, { host: 'h2', tenant: 'beta' }) });
    acme.push({ key: 'h', value: point(0, 1, { host: 'h2' }), headers: { 'vigil-tenant': 'beta' } });
    shared.push({ key: 'h', value: point(0, 1, { host: 'h2', tenant: 'no spaces' }) });
    // Taken: a tag naming the topic's own tenant.
    acme.push({ key: 'h', value: point(0, 7, { host: 'h3', tenant: 'acme' }) });
    // The repartition topic's watermark is its sources' least: the acme topic forwards a point too.
    acme.push({ key: null, value: point(4, 7, { host: 'h4' }) });
    // A cardinality storm of one tenant: 6 series, at most 2 per shard held (2 shards).
    for (let h = 0; h < 6; h++) shared.push({ key: 'h', value: point(0, 1, { host: `storm-${h}` }), headers: { 'vigil-tenant': 'storm' } });
    await send(topic, shared);
    await send(acmeTopic, acme);

    await waitFor('every good point stored', async () => (await res.scalar(`SELECT count() FROM ${db}.points_dedup`)) >= 5 * steps.length + 2 + 6, 60_000, 250);
    const rs = await res.clickhouse().query({
      query: `SELECT tenant, toString(series_id) AS id, count() AS n, any(\`tags.key\`) AS keys FROM ${db}.points_dedup WHERE \`tags.value\` = ['h1'] GROUP BY tenant, series_id ORDER BY tenant`,
      format: 'JSONEachRow',
    });
    const byTenant = await rs.json<{ tenant: string; id: string; n: string; keys: string[] }>();
    expect(byTenant.map((r) => [r.tenant, Number(r.n), r.keys])).toEqual([
      ['', 5, ['host']],
      ['acme', 5, ['host']],
      ['beta', 5, ['host']],
      ['delta', 5, ['host']],
      ['gamma', 5, ['host']], // the tag left the tags
    ]);
    // Series ids: the default tenant's as before tenants existed; a named tenant's with its name.
    const tags = sortTags(['host', 'h1']);
    expect(byTenant.map((r) => r.id)).toEqual([seriesId('tenant.cpu', tags), seriesId('tenant.cpu', tags, 'acme'), seriesId('tenant.cpu', tags, 'beta'), seriesId('tenant.cpu', tags, 'delta'), seriesId('tenant.cpu', tags, 'gamma')].map(String));
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup WHERE tenant = 'acme' AND \`tags.value\` = ['h3']`)).toBe(1);

    // Four claims refused, each a dead letter naming the tenant code.
    const dlq = env['VIGIL_KAFKA_DLQ_TOPIC'] as string;
    const all = await readTopic(res.kafka, dlq, 5);
    const letters = all.filter((l) => l.headers['vigil-error-code'] === 'VIGIL_ERR_DECODE_TENANT');
    expect(letters).toHaveLength(4);
    // The storm's new series past its limit: stored raw, refused the stages, in a letter naming the tenant.
    const storm = all.filter((l) => l.headers['vigil-error-code'] === 'VIGIL_ERR_LIMIT_TENANT_SERIES');
    expect(storm.length).toBeGreaterThanOrEqual(1);
    expect(storm.every((l) => l.headers['vigil-tenant'] === 'storm' && l.headers['vigil-raw-stored'] === 'true')).toBe(true);
    expect(all.filter((l) => !String(l.headers['vigil-error-code']).match(/TENANT/))).toEqual([]);
    expect(await res.scalar(`SELECT count() FROM ${db}.points_dedup WHERE tenant = 'storm'`)).toBe(6);
    const reasons = letters.map((l) => l.headers['vigil-error-reason']).join('\n');
    expect(reasons).toContain('claims tenant "gamma", but the header "vigil-tenant" is tenant "beta"');
    expect(reasons).toContain(`claims tenant "beta", but the topic "${acmeTopic}" is tenant "acme"`);
    expect(reasons).toContain('header "vigil-tenant" claims tenant "beta", but the topic is tenant "acme"');
    expect(reasons).toContain('"no spaces": expected a tenant name');

    // Rollups and metric_rollups per tenant.
    await waitFor('the rollups of every tenant', async () => (await res.scalar(`SELECT uniqExact(tenant) FROM ${db}.rollups_merged WHERE tenant != 'storm'`)) === 5, 30_000, 250);
    const rollups = await res.clickhouse().query({ query: `SELECT tenant, sum(count) AS n FROM ${db}.rollups_merged WHERE \`tags.value\` = ['h1'] GROUP BY tenant ORDER BY tenant`, format: 'JSONEachRow' });
    // Buckets 0-3 closed (bucket 4 waits for a point past its end).
    expect((await rollups.json<{ tenant: string; n: string }>()).map((r) => [r.tenant, Number(r.n)])).toEqual([['', 4], ['acme', 4], ['beta', 4], ['delta', 4], ['gamma', 4]]);
    const perMetric = await res.clickhouse().query({ query: `SELECT tenant, countMerge(count) AS n FROM ${db}.metric_rollups WHERE tenant != 'storm' GROUP BY tenant ORDER BY tenant`, format: 'JSONEachRow' });
    expect((await perMetric.json<{ tenant: string; n: string }>()).map((r) => [r.tenant, Number(r.n)])).toEqual([['', 5], ['acme', 7], ['beta', 5], ['delta', 5], ['gamma', 5]]);

    // One episode of the shared rule per tenant, and one of acme's own rule for acme alone; each
    // event names its tenant, the table's column too.
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const events = await waitFor('an episode per tenant and rule', async () => {
      const msgs = await readAlertsTopic(res.config.kafka.brokers[0] as string, alertsTopic);
      return msgs.filter((m) => m.event.status === 'resolved').length >= 5 && msgs;
    }, 60_000, 250);
    const seen = events.map((m) => `${m.event.tenant}:${m.event.rule.id}:${m.event.status}`).sort();
    expect(seen).toEqual([':hot:firing', ':hot:resolved', 'acme:acme/warm:firing', 'acme:acme/warm:resolved', 'acme:hot:firing', 'acme:hot:resolved', 'beta:hot:firing', 'beta:hot:resolved', 'gamma:hot:firing', 'gamma:hot:resolved']);
    expect(new Set(events.map((m) => m.event.fingerprint)).size).toBe(5);
    await waitFor('the alerts table', async () => (await res.scalar(`SELECT count() FROM ${db}.alerts_dedup`)) === 10, 30_000, 250);
    const table = await res.clickhouse().query({ query: `SELECT tenant, count() AS n FROM ${db}.alerts_dedup GROUP BY tenant ORDER BY tenant`, format: 'JSONEachRow' });
    expect((await table.json<{ tenant: string; n: string }>()).map((r) => [r.tenant, Number(r.n)])).toEqual([['', 2], ['acme', 4], ['beta', 2], ['gamma', 2]]);
  });
});
