import type { ClickHouseClient } from '@clickhouse/client';
import type { VigilConfig } from '../../core/config/index.js';
import { sqlString } from '../../core/sql.js';
import { onCluster } from './schema.js';

/**
 * Retention (DESIGN.md §7b): how long each table keeps its rows, by event time. A server with TTL
 * gets it as the table's TTL (the server drops what expired as it merges); on one without (18.16)
 * Vigil drops whole expired partitions (daily; those of `alerts` and `metric_rollups` are months), which costs the
 * server nothing but a file removal, and deletes a rollup width that expires before the table's
 * other widths with a mutation.
 */
export const RETENTION_TABLES = ['points', 'rollups', 'metric_rollups', 'anomalies', 'forecasts', 'incidents', 'alerts'] as const;
export type RetentionTable = (typeof RETENTION_TABLES)[number];

/** Days each table keeps (0: for ever); rollups per width in seconds, others at `rollups`. */
export interface RetentionPolicy {
  points: number;
  rollups: number;
  rollupsByWidth: ReadonlyMap<number, number>;
  /** `metric_rollups` (per minute): as the rollups' 60-second width. */
  metricRollups: number;
  anomalies: number;
  forecasts: number;
  incidents: number;
  alerts: number;
}

const DAY_MS = 86_400_000;
/** The event-time column each table expires by. */
export const TIME_COLUMN: Record<RetentionTable, string> = { points: 'ts', rollups: 'bucket_start', metric_rollups: 'bucket_start', anomalies: 'bucket_start', forecasts: 'issued_at', incidents: 'started_at', alerts: 'starts_at' };
/** A DateTime no row reaches: the TTL of a rollup width kept for ever beside widths that expire. */
const NEVER = "toDateTime('2105-12-31 00:00:00')";

export function retentionPolicy(r: VigilConfig['retention']): RetentionPolicy {
  const rollupsByWidth = new Map<number, number>();
  for (const entry of r.rollupsWidthDays) {
    const [width, days] = entry.split(':').map(Number) as [number, number];
    rollupsByWidth.set(width, days);
  }
  return { points: r.pointsDays, rollups: r.rollupsDays, rollupsByWidth, metricRollups: rollupsByWidth.get(60) ?? r.rollupsDays, anomalies: r.anomaliesDays, forecasts: r.forecastsDays, incidents: r.incidentsDays, alerts: r.alertsDays };
}

/** The table's TTL expression under the policy (null: it keeps everything). */
export function ttlExpression(table: RetentionTable, policy: RetentionPolicy): string | null {
  const column = TIME_COLUMN[table];
  if (table !== 'rollups') {
    const days = table === 'metric_rollups' ? policy.metricRollups : policy[table];
    return days > 0 ? `${column} + toIntervalDay(${days})` : null;
  }
  const at = (days: number) => (days > 0 ? `addDays(${column}, ${days})` : NEVER);
  const widths = [...policy.rollupsByWidth].filter(([, days]) => days !== policy.rollups);
  if (widths.length === 0) return policy.rollups > 0 ? `${column} + toIntervalDay(${policy.rollups})` : null;
  return `multiIf(${widths.map(([width, days]) => `width_s = ${width}, ${at(days)}`).join(', ')}, ${at(policy.rollups)})`;
}

/** The TTL clause a server reports for a table (`system.tables.engine_full`), without spaces; '' for none. */
function ttlOf(engineFull: string): string {
  const m = /\sTTL\s+(.*?)(?:\s+SETTINGS\s|$)/s.exec(engineFull);
  return m ? (m[1] as string).replace(/\s+/g, '') : '';
}

/**
 * The ALTERs that bring each table's TTL to the policy on a server with TTL, given what the
 * server reports now (`engine_full` per table): nothing for a table already there, since a
 * MODIFY TTL rewrites every part of the table.
 */
export function ttlStatements(db: string, policy: RetentionPolicy, engines: Partial<Record<RetentionTable, string>>, cluster = ''): string[] {
  const out: string[] = [];
  for (const table of RETENTION_TABLES) {
    const engine = engines[table];
    if (engine === undefined) continue;
    const want = ttlExpression(table, policy);
    const have = ttlOf(engine);
    if (want && want.replace(/\s+/g, '') !== have) out.push(`ALTER TABLE ${db}.${table} MODIFY TTL ${want}`);
    else if (!want && have) out.push(`ALTER TABLE ${db}.${table} REMOVE TTL`);
  }
  return out.map((q) => onCluster(q, cluster));
}

/** The end (ms) of a partition named by `toYYYYMMDD` or `toYYYYMM` (null for another name). */
export function partitionEndMs(partition: string): number | null {
  const name = partition.replace(/'/g, '');
  let m = /^(\d{4})(\d{2})(\d{2})$/.exec(name);
  if (m) return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + DAY_MS;
  m = /^(\d{4})(\d{2})$/.exec(name);
  if (m) return Date.UTC(Number(m[1]), Number(m[2]), 1);
  return null;
}

export interface RetentionRun {
  /** Per table, the partitions dropped. */
  dropped: Partial<Record<RetentionTable, string[]>>;
  /** Rollup deletes started (a width that expires before the others). */
  mutations: string[];
}

/**
 * One pass on a server without TTL: every partition whose whole range expired is dropped, and a
 * rollup width with a shorter retention than the table's longest has its expired rows deleted
 * (a mutation, started only when there are such rows and none of Vigil's is still running).
 * Partition names are read as the dates the DDL partitions by (ClickHouse's `toYYYYMMDD` is UTC
 * here: the server's time zone decides, and 18.16's default is its host's).
 */
export async function dropExpired(client: ClickHouseClient, db: string, policy: RetentionPolicy, nowMs: number, cluster = ''): Promise<RetentionRun> {
  const run: RetentionRun = { dropped: {}, mutations: [] };
  const rs = await client.query({
    query: `SELECT table, partition FROM system.parts WHERE database = ${sqlString(db)} AND active AND table IN (${RETENTION_TABLES.map(sqlString).join(', ')}) GROUP BY table, partition ORDER BY table, partition`,
    format: 'JSONEachRow',
  });
  const widthDays = [policy.rollups, ...policy.rollupsByWidth.values()];
  const longest: Record<RetentionTable, number> = {
    points: policy.points,
    anomalies: policy.anomalies,
    forecasts: policy.forecasts,
    incidents: policy.incidents,
    alerts: policy.alerts,
    rollups: widthDays.includes(0) ? 0 : Math.max(...widthDays),
    metric_rollups: policy.metricRollups,
  };
  for (const { table, partition } of await rs.json<{ table: RetentionTable; partition: string }>()) {
    const days = longest[table];
    const end = partitionEndMs(partition);
    if (days === 0 || end === null || end > nowMs - days * DAY_MS) continue;
    await client.command({ query: onCluster(`ALTER TABLE ${db}.${table} DROP PARTITION ${partition.replace(/'/g, '')}`, cluster) });
    (run.dropped[table] ??= []).push(partition);
  }
  // Rollup widths that expire before the longest: their rows go by mutation.
  const groups = new Map<number, number[] | null>();
  for (const [width, days] of policy.rollupsByWidth) if (days > 0 && (longest.rollups === 0 || days < longest.rollups)) groups.set(days, [...(groups.get(days) ?? []), width]);
  const listed = [...policy.rollupsByWidth.keys()];
  if (policy.rollups > 0 && (longest.rollups === 0 || policy.rollups < longest.rollups)) groups.set(policy.rollups, null);
  if (groups.size === 0) return run;
  const pending = await client.query({ query: `SELECT count() AS n FROM system.mutations WHERE database = ${sqlString(db)} AND table = 'rollups' AND NOT is_done`, format: 'JSONEachRow' });
  if (Number((await pending.json<{ n: string }>())[0]?.n ?? 0) > 0) return run;
  for (const [days, widths] of groups) {
    const cutoff = Math.floor((nowMs - days * DAY_MS) / 1000);
    const which = widths ? `width_s IN (${widths.join(', ')})` : listed.length > 0 ? `width_s NOT IN (${listed.join(', ')})` : '1';
    const where = `${which} AND bucket_start < toDateTime(${cutoff})`;
    const count = await client.query({ query: `SELECT count() AS n FROM ${db}.rollups WHERE ${where}`, format: 'JSONEachRow' });
    if (Number((await count.json<{ n: string }>())[0]?.n ?? 0) === 0) continue;
    await client.command({ query: onCluster(`ALTER TABLE ${db}.rollups DELETE WHERE ${where}`, cluster) });
    run.mutations.push(where);
  }
  return run;
}

/** On a server with TTL: the tables' engines as the server reports them, for ttlStatements. */
export async function tableEngines(client: ClickHouseClient, db: string): Promise<Partial<Record<RetentionTable, string>>> {
  const rs = await client.query({
    query: `SELECT name, engine_full FROM system.tables WHERE database = ${sqlString(db)} AND name IN (${RETENTION_TABLES.map(sqlString).join(', ')})`,
    format: 'JSONEachRow',
  });
  const out: Partial<Record<RetentionTable, string>> = {};
  for (const r of await rs.json<{ name: RetentionTable; engine_full: string }>()) out[r.name] = r.engine_full;
  return out;
}
