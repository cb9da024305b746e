import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { VigilError } from '../../core/errors.js';
import { sqlString } from '../../core/sql.js';
import { TENANT_NAME, TENANT_NAME_EXPECTED } from '../../core/tenant.js';
import { mergedRollupsSql } from './schema.js';

/**
 * Read isolation per tenant (issue 18), on every server version from 18.16 on. 18.16 has no
 * `CREATE USER` or row policies (users.xml row filters came in 19.x, `CREATE ROW POLICY` in 20.x)
 * and checks a view's tables against the reading user, so a view over the shared tables cannot be
 * granted alone. What it does have, and what this builds:
 *
 * - a hidden database `<db>_tenant_views` of views, one per tenant and table, each the table's
 *   rows of that tenant (`SELECT * FROM <db>.points WHERE tenant = 'acme'`);
 * - per tenant a database `<db>_tenant_<tenant>` whose tables are `Distributed` over those views
 *   through `tenants.readCluster` (a `remote_servers` cluster of the servers themselves, with
 *   Vigil's credentials): a Distributed table reads as the cluster's user, not the reader;
 * - per tenant a read-only user `tenant_<tenant>` whose `allow_databases` is its database alone,
 *   in a file of the server's `users.d` directory (merged and re-read by the running server).
 *
 * The tenant user reads its own rows of every table and view by the names it knows
 * (`points`, `rollups_merged`, `anomalies_dedup`, `alerts_dedup`, …), cannot read the shared or the
 * hidden database (Code 291), and in read-only mode cannot use table functions (`remote()`:
 * Code 164) or change settings.
 */

/** What each tenant database holds: its tables' names, and the SELECT of the hidden view under each. */
export function tenantViews(db: string, tenant: string): { name: string; select: string }[] {
  const own = `tenant = ${sqlString(tenant)}`;
  const rows = (table: string, final = false) => `SELECT * FROM ${db}.${table}${final ? ' FINAL' : ''} WHERE ${own}`;
  return [
    { name: 'points', select: rows('points') },
    { name: 'points_dedup', select: rows('points', true) },
    { name: 'rollups', select: rows('rollups') },
    // The filter inside FINAL, as README "Reading at scale" reads rollups.
    { name: 'rollups_merged', select: mergedRollupsSql(db, ` WHERE ${own}`) },
    { name: 'metric_rollups', select: rows('metric_rollups') },
    { name: 'anomalies', select: rows('anomalies') },
    { name: 'anomalies_dedup', select: rows('anomalies', true) },
    { name: 'forecasts', select: rows('forecasts') },
    { name: 'forecasts_latest', select: `SELECT * FROM ${db}.forecasts_latest WHERE ${own}` },
    { name: 'alerts', select: rows('alerts') },
    { name: 'alerts_dedup', select: rows('alerts', true) },
    { name: 'incidents', select: rows('incidents') },
    { name: 'incidents_dedup', select: rows('incidents', true) },
  ];
}

export const tenantDatabase = (db: string, tenant: string): string => `${db}_tenant_${tenant}`;
export const tenantViewsDatabase = (db: string): string => `${db}_tenant_views`;
export const tenantUser = (tenant: string): string => `tenant_${tenant}`;

const quoted = (name: string): string => `\`${name.replaceAll('\\', '\\\\').replaceAll('`', '\\`')}\``;

/**
 * The statements that make (or make again) a tenant's databases: idempotent, each table dropped
 * and made again so that a sync after an upgrade picks up new columns. With `cluster`
 * (`clickhouse.cluster`), `ON CLUSTER`: a Distributed read may land on any replica.
 */
export function tenantStatements(db: string, tenant: string, readCluster: string, cluster = ''): string[] {
  const on = cluster ? ` ON CLUSTER ${cluster}` : '';
  const views = tenantViewsDatabase(db);
  const own = quoted(tenantDatabase(db, tenant));
  const out = [`CREATE DATABASE IF NOT EXISTS ${views}${on}`, `CREATE DATABASE IF NOT EXISTS ${own}${on}`];
  for (const { name, select } of tenantViews(db, tenant)) {
    const view = `${name}_${tenant}`;
    out.push(
      `DROP TABLE IF EXISTS ${views}.${quoted(view)}${on}`,
      `CREATE VIEW IF NOT EXISTS ${views}.${quoted(view)}${on} AS ${select}`,
      `DROP TABLE IF EXISTS ${own}.${name}${on}`,
      `CREATE TABLE IF NOT EXISTS ${own}.${name}${on} AS ${views}.${quoted(view)} ENGINE = Distributed(${sqlString(readCluster)}, ${sqlString(views)}, ${sqlString(view)})`,
    );
  }
  return out;
}

/** The users.d file shared by the tenant users: their profile (read-only, remote reads) and quota (none). */
export function tenantCommonXml(): string {
  return [
    '<?xml version="1.0"?>',
    '<!-- Written by `vigil tenants sync`: what every tenant user shares. -->',
    '<yandex>',
    // prefer_localhost_replica 0: a Distributed read of the server's own replica goes through a
    // connection as the cluster's user too (with 1 it runs in-process as the tenant user, whom the
    // hidden views' database refuses); read-only, the tenant cannot set it back.
    '  <profiles><vigil_tenant><readonly>1</readonly><prefer_localhost_replica>0</prefer_localhost_replica></vigil_tenant></profiles>',
    '  <quotas><vigil_tenant><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></vigil_tenant></quotas>',
    '</yandex>',
    '',
  ].join('\n');
}

/** The users.d file of one tenant's user: its password's SHA-256, its database alone. */
export function tenantUserXml(db: string, tenant: string, password: string): string {
  const sha = createHash('sha256').update(password).digest('hex');
  return [
    '<?xml version="1.0"?>',
    `<!-- Written by \`vigil tenants sync\`: tenant ${tenant}'s read-only user. -->`,
    '<yandex>',
    '  <users>',
    `    <${tenantUser(tenant)}>`,
    `      <password_sha256_hex>${sha}</password_sha256_hex>`,
    '      <networks><ip>::/0</ip></networks>',
    '      <profile>vigil_tenant</profile>',
    '      <quota>vigil_tenant</quota>',
    `      <allow_databases><database>${tenantDatabase(db, tenant)}</database></allow_databases>`,
    `    </${tenantUser(tenant)}>`,
    '  </users>',
    '</yandex>',
    '',
  ].join('\n');
}

export interface SyncedTenant {
  tenant: string;
  user: string;
  database: string;
  /** The file holding the user's password (made once, 0600). */
  passwordFile: string;
}

export interface SyncOptions {
  db: string;
  readCluster: string;
  cluster: string;
  /** The server's users.d directory. */
  usersDir: string;
  /** Where the tenants' password files live. */
  secretsDir: string;
  /** The tenants: named ones of `points` and of `tenants.topics`, when not given. */
  tenants?: readonly string[];
  topicTenants: readonly string[];
  /**
   * A connection as a tenant user: each is tried until the server has loaded it (it re-reads
   * users.d on its own schedule), or `loadTimeoutMs` passes (an error naming `usersDir`).
   */
  connect: (user: string, password: string) => ClickHouseClient;
  loadTimeoutMs?: number;
}

/**
 * `vigil tenants sync`: for each tenant, its databases (tenantStatements) and its user's file in
 * `usersDir`; a password made the first time and kept in `secretsDir/<tenant>.password`. Returns
 * what it made, by tenant.
 */
export async function syncTenants(client: ClickHouseClient, o: SyncOptions): Promise<SyncedTenant[]> {
  let tenants = o.tenants ? [...o.tenants] : [];
  if (!o.tenants) {
    const rs = await client.query({ query: `SELECT DISTINCT tenant FROM ${o.db}.points WHERE tenant != '' ORDER BY tenant`, format: 'JSONEachRow' });
    tenants = [...new Set([...(await rs.json<{ tenant: string }>()).map((r) => r.tenant), ...o.topicTenants])].sort();
  }
  for (const t of tenants) if (!TENANT_NAME.test(t)) throw new VigilError('VIGIL_ERR_CLI_USAGE', `tenant ${JSON.stringify(t)}: expected ${TENANT_NAME_EXPECTED}`);
  mkdirSync(o.usersDir, { recursive: true });
  mkdirSync(o.secretsDir, { recursive: true, mode: 0o700 });
  writeAtomically(join(o.usersDir, 'vigil-tenants.xml'), tenantCommonXml());
  const out: SyncedTenant[] = [];
  for (const tenant of tenants) {
    for (const query of tenantStatements(o.db, tenant, o.readCluster, o.cluster)) await client.command({ query });
    const passwordFile = join(o.secretsDir, `${tenant}.password`);
    if (!existsSync(passwordFile)) writeFileSync(passwordFile, `${randomBytes(18).toString('base64url')}\n`, { mode: 0o600 });
    const password = readFileSync(passwordFile, 'utf8').trim();
    writeAtomically(join(o.usersDir, `vigil-tenant-${tenant}.xml`), tenantUserXml(o.db, tenant, password));
    out.push({ tenant, user: tenantUser(tenant), database: tenantDatabase(o.db, tenant), passwordFile });
  }
  for (const t of out) await untilLoaded(o, t);
  return out;
}

/** Waits until the server lets tenant `t`'s user read its database. */
async function untilLoaded(o: SyncOptions, t: SyncedTenant): Promise<void> {
  const client = o.connect(t.user, readFileSync(t.passwordFile, 'utf8').trim());
  const deadline = Date.now() + (o.loadTimeoutMs ?? 120_000);
  try {
    for (;;) {
      try {
        await (await client.query({ query: `SELECT count() FROM \`${t.database}\`.alerts`, format: 'JSONEachRow' })).json();
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          throw new VigilError('VIGIL_ERR_CLICKHOUSE_SCHEMA', `tenant ${t.tenant}: the server has not loaded user ${t.user} from ${o.usersDir} (${(err as Error).message.split('\n')[0]}): is tenants.usersDir the users.d directory of the server's users config?`, { cause: err });
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  } finally {
    await client.close();
  }
}

/**
 * A users.d file written whole or not at all: the server re-reads the directory on its own
 * schedule, and a half-written file it read once (a parse error: the old users kept) would not
 * be read again until its time stamp changed.
 */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}
