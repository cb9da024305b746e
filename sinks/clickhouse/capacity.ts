import type { ClickHouseClient } from '@clickhouse/client';
import { textTable } from '../../core/table.js';
import { sqlString } from '../../core/sql.js';
import { nestedTags, seriesText } from './tags.js';

/**
 * `vigil capacity` (issue 17): time to a threshold per series, from each series' latest forecast
 * (`forecasts_latest`). When the forecast first reaches the threshold, and when its 95 % interval
 * first does on either side: the earliest the threshold is plausibly reached (the interval's near
 * edge) and the time by which it is reached with 97.5 % confidence (its far edge).
 */
export interface CapacityQuery {
  database: string;
  /** ClickHouse LIKE pattern on the metric name (`disk.%`), or the name itself. */
  metricLike: string;
  threshold: number;
  /** A threshold to fall to (free space), instead of to rise to. */
  below: boolean;
}

export interface CapacityRow {
  metric: string;
  tags: Record<string, string>;
  /** When the forecast was made (the end of the last bucket it learnt), ms. */
  issuedMs: number;
  /** The forecast's first bucket value and the end of its horizon, ms. */
  firstValue: number;
  horizonEndMs: number;
  /** Start of the first forecast bucket at or past the threshold (null: not within the horizon). */
  reachesMs: number | null;
  /** The same for the 95 % interval's near edge (the earliest plausible) and far edge (the latest). */
  earliestMs: number | null;
  latestMs: number | null;
}

export async function capacity(client: ClickHouseClient, q: CapacityQuery): Promise<CapacityRow[]> {
  const t = Number(q.threshold);
  const [near, far] = q.below ? ['lower_95', 'upper_95'] : ['upper_95', 'lower_95'];
  const past = (column: string) => `${column} ${q.below ? '<=' : '>='} ${t}`;
  // 18.16: no window functions; argMin for the first bucket's value, countIf for "reached at all".
  const query =
    `SELECT metric, \`tags.key\` AS keys, \`tags.value\` AS vals, toUInt32(issued_at) AS issued, argMin(value, bucket_start) AS first_value, toUInt32(max(bucket_start)) AS horizon_end, ` +
    `countIf(${past('value')}) AS n_value, toUInt32(minIf(bucket_start, ${past('value')})) AS at_value, ` +
    `countIf(${past(near)}) AS n_near, toUInt32(minIf(bucket_start, ${past(near)})) AS at_near, ` +
    `countIf(${past(far)}) AS n_far, toUInt32(minIf(bucket_start, ${past(far)})) AS at_far ` +
    `FROM ${q.database}.forecasts_latest WHERE metric LIKE ${sqlString(q.metricLike)} ` +
    `GROUP BY series_id, metric, keys, vals, issued ORDER BY n_value = 0, at_value, metric, vals`;
  const rs = await client.query({ query, format: 'JSONEachRow' });
  const rows = await rs.json<Record<string, string | number | string[]>>();
  const at = (n: unknown, s: unknown) => (Number(n) > 0 ? Number(s) * 1000 : null);
  return rows.map((r) => {
    const keys = r['keys'] as string[];
    const vals = r['vals'] as string[];
    return {
      metric: r['metric'] as string,
      tags: nestedTags(keys, vals),
      issuedMs: Number(r['issued']) * 1000,
      firstValue: Number(r['first_value']),
      horizonEndMs: Number(r['horizon_end']) * 1000,
      reachesMs: at(r['n_value'], r['at_value']),
      earliestMs: at(r['n_near'], r['at_near']),
      latestMs: at(r['n_far'], r['at_far']),
    };
  });
}

/** "3h 20m" from ms (minutes at least; days past two days). */
export function humanDuration(ms: number): string {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 === 0 ? `${hours}h` : `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** The rows as a text table, soonest first: series, its forecast now, when it reaches the threshold (and the 95 % range), from when the forecast was made. */
export function capacityTable(rows: readonly CapacityRow[], q: Pick<CapacityQuery, 'threshold' | 'below'>): string {
  const when = (ms: number | null, from: number) => (ms === null ? '–' : `${humanDuration(ms - from)}`);
  const header = ['series', 'forecast now', `reaches ${q.below ? '<=' : '>='} ${q.threshold} in`, 'earliest (95 %)', 'latest (95 %)', 'forecast made'];
  const body = rows.map((r) => {
    const series = seriesText(r.metric, r.tags);
    const reaches = r.reachesMs === null ? `not within ${humanDuration(r.horizonEndMs - r.issuedMs)}` : when(r.reachesMs, r.issuedMs);
    return [series, String(Math.round(r.firstValue * 100) / 100), reaches, when(r.earliestMs, r.issuedMs), when(r.latestMs, r.issuedMs), new Date(r.issuedMs).toISOString()];
  });
  return textTable(header, body);
}
