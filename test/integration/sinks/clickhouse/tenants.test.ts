import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, describe, expect, it } from 'vitest';
import { localUsersDir } from '../../../../infra/index.js';
import { ClickHouseSink, insertTarget } from '../../../../sinks/clickhouse/index.js';
import { syncTenants, tenantDatabase, tenantViewsDatabase } from '../../../../sinks/clickhouse/tenants.js';
import { uniqueName, useResources } from '../../../helpers/resources.js';

/**
 * Read isolation per tenant (issue 18) on the real server (18.16 locally): `vigil tenants sync`'s
 * users read their own rows of every table and view, none of another tenant's, and neither the
 * shared database nor the hidden views.
 */
const res = useResources();
const secrets = mkdtempSync(join(tmpdir(), 'vigil-tenant-secrets-'));
const usersDir = localUsersDir(res.config);
const clients: ClickHouseClient[] = [];
const userFiles: string[] = [];
afterAll(async () => {
  for (const c of clients) await c.close();
  for (const f of userFiles) rmSync(f, { force: true });
  rmSync(secrets, { recursive: true, force: true });
});

/** The server's error code of a query that must fail (0 when it did not). */
async function codeOf(c: ClickHouseClient, query: string): Promise<number> {
  try {
    await (await c.query({ query, format: 'JSONEachRow' })).json();
    return 0;
  } catch (err) {
    return Number(/Code: (\d+)/.exec(String((err as Error).message))?.[1] ?? -1);
  }
}

async function rows<T>(c: ClickHouseClient, query: string): Promise<T[]> {
  return (await c.query({ query, format: 'JSONEachRow' })).json<T>();
}

describe('vigil tenants sync (real ClickHouse)', () => {
  it('a tenant user reads its own points, rollups, anomalies, alerts and metric_rollups, none of another tenant\'s, and not the shared or hidden databases', async ({ annotate }) => {
    const db = uniqueName('tenancy');
    res.own('database', db);
    const suffix = db.slice(-6);
    const [acme, beta] = [`acme_${suffix}`, `beta_${suffix}`];
    for (const t of [acme, beta]) {
      res.own('database', tenantDatabase(db, t));
      userFiles.push(join(usersDir, `vigil-tenant-${t}.xml`));
    }
    res.own('database', tenantViewsDatabase(db));
    const cluster = res.config.clickhouse.cluster;
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    await sink.close();
    const ch = res.clickhouse();
    const t = Math.floor(Date.now() / 60_000) * 60 - 600;
    // Points of three tenants (the default one too), a rollup, an anomaly and an alert of each.
    const tenants = ['', acme, beta];
    await ch.command({
      query: `INSERT INTO ${db}.${insertTarget('points', cluster)} (series_id, metric, tenant, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) VALUES ${tenants.map((x, i) => `(${i + 1}, 'cpu', '${x}', 'gauge', ${t}, ${t * 1000}, ${10 * (i + 1)}, 't', 0, ${i}, 0)`).join(', ')}`,
    });
    await ch.command({ query: `INSERT INTO ${db}.rollups (series_id, metric, tenant, type, width_s, bucket_start, source_topic, source_partition, kind, count, sum, min, max, last, sumsq, version) VALUES ${tenants.map((x, i) => `(${i + 1}, 'cpu', '${x}', 'gauge', 60, ${t}, 't', 0, 'bucket', 1, ${10 * (i + 1)}, 0, 0, 0, 0, 1)`).join(', ')}` });
    await ch.command({ query: `INSERT INTO ${db}.anomalies (series_id, metric, tenant, type, width_s, bucket_start, value, score, anomaly, version) VALUES ${tenants.map((x, i) => `(${i + 1}, 'cpu', '${x}', 'gauge', 60, ${t}, 1, 0.9, 1, 1)`).join(', ')}` });
    await ch.command({ query: `INSERT INTO ${db}.alerts (id, fingerprint, status, rule_id, rule_kind, severity, metric, tenant, starts_at, observed_at, observed_ms) VALUES ${tenants.map((x, i) => `('e${i}', 'f${i}', 'firing', 'hot', 'threshold', 'warning', 'cpu', '${x}', ${t}, ${t}, ${t * 1000})`).join(', ')}` });

    const connect = (username: string, password: string) => createClient({ url: res.config.clickhouse.url, username, password });
    const started = Date.now();
    const synced = await syncTenants(ch, { db, readCluster: res.config.tenants.readCluster, cluster, usersDir, secretsDir: secrets, tenants: [acme, beta], topicTenants: [], connect });
    await annotate(`users loaded by the server ${Date.now() - started} ms after the sync began`);
    expect(synced.map((s) => [s.tenant, s.user, s.database])).toEqual([
      [acme, `tenant_${acme}`, tenantDatabase(db, acme)],
      [beta, `tenant_${beta}`, tenantDatabase(db, beta)],
    ]);
    const as = (tenant: string): ClickHouseClient => {
      const c = createClient({ url: res.config.clickhouse.url, username: `tenant_${tenant}`, password: readFileSync(join(secrets, `${tenant}.password`), 'utf8').trim() });
      clients.push(c);
      return c;
    };
    // The sync returns once the server has loaded its users.
    const a = as(acme);
    expect(await codeOf(a, 'SELECT 1')).toBe(0);

    const own = tenantDatabase(db, acme);
    for (const table of ['points', 'points_dedup', 'rollups', 'rollups_merged', 'anomalies', 'anomalies_dedup', 'alerts', 'alerts_dedup']) {
      expect(await rows<{ tenant: string }>(a, `SELECT tenant FROM \`${own}\`.${table}`), table).toEqual([{ tenant: acme }]);
      expect(await rows(a, `SELECT tenant FROM \`${own}\`.${table} WHERE tenant != '${acme}'`), table).toEqual([]);
    }
    expect((await rows<{ v: number }>(a, `SELECT sumMerge(sum) AS v FROM \`${own}\`.metric_rollups`)).map((r) => Number(r.v))).toEqual([20]);
    expect(await rows(a, `SELECT count() AS n FROM \`${own}\`.forecasts_latest`)).toEqual([{ n: '0' }]);
    expect(await rows(a, `SELECT count() AS n FROM \`${own}\`.incidents_dedup`)).toEqual([{ n: '0' }]);
    // Not the shared database, the hidden views, nor another tenant's database: access denied (291).
    expect(await codeOf(a, `SELECT count() FROM ${db}.points`)).toBe(291);
    expect(await codeOf(a, `SELECT count() FROM ${tenantViewsDatabase(db)}.\`points_${acme}\``)).toBe(291);
    expect(await codeOf(a, `SELECT count() FROM \`${tenantDatabase(db, beta)}\`.points`)).toBe(291);
    // Read-only: no table functions reaching around the databases, no settings changed.
    expect(await codeOf(a, `SELECT count() FROM remote('127.0.0.1', ${db}.points)`)).toBe(164);
    expect(await codeOf(a, `SELECT count() FROM \`${own}\`.points SETTINGS prefer_localhost_replica = 1`)).toBe(164);

    // The other tenant sees its own only.
    const b = as(beta);
    expect(await rows(b, `SELECT tenant, value FROM \`${tenantDatabase(db, beta)}\`.points`)).toEqual([{ tenant: beta, value: 30 }]);

    // A second sync keeps the passwords and makes the same databases again.
    const before = readFileSync(join(secrets, `${acme}.password`), 'utf8');
    await syncTenants(ch, { db, readCluster: res.config.tenants.readCluster, cluster, usersDir, secretsDir: secrets, tenants: [acme], topicTenants: [], connect });
    expect(readFileSync(join(secrets, `${acme}.password`), 'utf8')).toBe(before);
    expect(await rows<{ tenant: string }>(a, `SELECT tenant FROM \`${own}\`.points`)).toEqual([{ tenant: acme }]);
  });
});
