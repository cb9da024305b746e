import type { ClickHouseClient } from '@clickhouse/client';
import { textTable } from '../../core/table.js';
import { sqlString, sqlUInt } from '../../core/sql.js';
import { mergedRollupsSql } from './schema.js';
import { nestedTags, seriesText } from './tags.js';

/**
 * `vigil correlate` (issue 17): the brief's `find_correlations(primary_metric, secondary_patterns,
 * correlation_threshold)` answered from ClickHouse. The bucket means of the primary metric's series
 * and of the series matching `with`, at one rollup width over the last `since`, read through
 * `rollups_merged` (filters inside its FINAL, as "Reading at scale" says; 18.16 and newer), then
 * Pearson's correlation of each pair at every lag up to `maxLag` buckets either way. A pair is
 * reported at the lag where |r| is largest, when that reaches the threshold: a positive lag means
 * the other series moves that long after the primary one (it follows), a negative one before it.
 */
export interface CorrelateQuery {
  database: string;
  /** The primary metric: a LIKE pattern or the name itself. */
  metric: string;
  /** LIKE patterns of the series to compare it with (default: every metric). */
  with: readonly string[];
  widthSeconds: number;
  /** From this many seconds before the newest bucket of the primary metric. */
  sinceSeconds: number;
  /** |r| at or above which a pair is reported. */
  threshold: number;
  /** Lags tried, in buckets either way (0: aligned buckets only). */
  maxLag: number;
  /** The window's end, s (default: the primary metric's newest bucket). */
  untilS?: number;
  /** Only the primary metric's series with exactly these tags (default: each of its series). */
  primaryTags?: Record<string, string>;
  /** Only this tenant's series (issue 18; default: every tenant's). */
  tenant?: string;
}

export interface Correlation {
  primary: { metric: string; tags: Record<string, string> };
  series: { metric: string; tags: Record<string, string> };
  /** Pearson's r at the best lag. */
  r: number;
  /** Seconds the series lags the primary one (negative: it leads). */
  lagSeconds: number;
  /** Buckets both had at that lag. */
  n: number;
}

interface Series {
  id: string;
  metric: string;
  tags: Record<string, string>;
  /** Bucket start (s) → mean. */
  values: Map<number, number>;
}

/** Fewest shared buckets a correlation is computed from. */
export const MIN_PAIRS = 8;

/** Pearson's r of y[t] against x[t - lag·width], over the buckets both have (NaN: fewer than MIN_PAIRS, or a constant side). */
export function laggedCorrelation(x: ReadonlyMap<number, number>, y: ReadonlyMap<number, number>, lagSeconds: number): { r: number; n: number } {
  let n = 0;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let syy = 0;
  let sxy = 0;
  for (const [t, a] of x) {
    const b = y.get(t + lagSeconds);
    if (b === undefined) continue;
    n++;
    sx += a;
    sy += b;
    sxx += a * a;
    syy += b * b;
    sxy += a * b;
  }
  if (n < MIN_PAIRS) return { r: Number.NaN, n };
  const vx = sxx - (sx * sx) / n;
  const vy = syy - (sy * sy) / n;
  if (vx <= 1e-12 * Math.max(1, sxx) || vy <= 1e-12 * Math.max(1, syy)) return { r: Number.NaN, n };
  return { r: Math.max(-1, Math.min(1, (sxy - (sx * sy) / n) / Math.sqrt(vx * vy))), n };
}

export async function correlate(client: ClickHouseClient, q: CorrelateQuery): Promise<Correlation[]> {
  const width = sqlUInt(q.widthSeconds);
  const patterns = [q.metric, ...(q.with.length > 0 ? q.with : ['%'])];
  const metricFilter = patterns.map((p) => `metric LIKE ${sqlString(p)}`).join(' OR ');
  // The newest bucket of the primary metric bounds the window (history works as well as now).
  let newest = q.untilS ?? 0;
  if (q.untilS === undefined) {
    const newestRs = await client.query({ query: `SELECT toUInt32(max(bucket_start)) AS t FROM ${q.database}.rollups WHERE width_s = ${width} AND metric LIKE ${sqlString(q.metric)}`, format: 'JSONEachRow' });
    newest = Number((await newestRs.json<{ t: number }>())[0]?.t ?? 0);
  }
  if (newest === 0) return [];
  const from = Math.max(0, newest - Number(sqlUInt(q.sinceSeconds)));
  const tenant = q.tenant === undefined ? '' : ` AND tenant = ${sqlString(q.tenant)}`;
  const filter = ` WHERE width_s = ${width} AND bucket_start >= ${from} AND bucket_start <= ${newest} AND (${metricFilter})${tenant}`;
  const rs = await client.query({
    query: `SELECT toString(series_id) AS id, metric, \`tags.key\` AS keys, \`tags.value\` AS vals, toUInt32(bucket_start) AS t, mean FROM (${mergedRollupsSql(q.database, filter)}) ORDER BY id, t`,
    format: 'JSONEachRow',
  });
  const byId = new Map<string, Series>();
  for (const row of await rs.json<{ id: string; metric: string; keys: string[]; vals: string[]; t: number; mean: number }>()) {
    let s = byId.get(row.id);
    if (!s) byId.set(row.id, (s = { id: row.id, metric: row.metric, tags: nestedTags(row.keys, row.vals), values: new Map() }));
    if (Number.isFinite(Number(row.mean))) s.values.set(Number(row.t), Number(row.mean));
  }
  const like = (p: string) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\*?]/g, '\\$&').replaceAll('%', '.*').replaceAll('_', '.')}$`, 's');
  const primaryRe = like(q.metric);
  const withRes = (q.with.length > 0 ? q.with : ['%']).map(like);
  const all = [...byId.values()];
  const out: Correlation[] = [];
  const wanted = q.primaryTags ? JSON.stringify(Object.entries(q.primaryTags).sort()) : null;
  for (const p of all.filter((s) => primaryRe.test(s.metric) && (wanted === null || JSON.stringify(Object.entries(s.tags).sort()) === wanted))) {
    for (const s of all) {
      if (s.id === p.id || !withRes.some((re) => re.test(s.metric))) continue;
      let best = { r: Number.NaN, n: 0, lag: 0 };
      for (let k = -q.maxLag; k <= q.maxLag; k++) {
        const c = laggedCorrelation(p.values, s.values, k * q.widthSeconds);
        // Ties go to the smaller lag.
        if (!Number.isNaN(c.r) && (Number.isNaN(best.r) || Math.abs(c.r) > Math.abs(best.r) + 1e-12 || (Math.abs(Math.abs(c.r) - Math.abs(best.r)) <= 1e-12 && Math.abs(k) < Math.abs(best.lag)))) best = { ...c, lag: k };
      }
      if (!Number.isNaN(best.r) && Math.abs(best.r) >= q.threshold) {
        out.push({ primary: { metric: p.metric, tags: p.tags }, series: { metric: s.metric, tags: s.tags }, r: best.r, lagSeconds: best.lag * q.widthSeconds, n: best.n });
      }
    }
  }
  // |r| to nine places (float noise does not order equals), then the smaller lag first.
  const strength = (c: Correlation) => Math.round(Math.abs(c.r) * 1e9);
  return out.sort((a, b) => strength(b) - strength(a) || Math.abs(a.lagSeconds) - Math.abs(b.lagSeconds));
}

/** The correlations as a text table, strongest first. */
export function correlationTable(rows: readonly Correlation[]): string {
  const header = ['primary', 'series', 'r', 'lag', 'buckets'];
  const body = rows.map((c) => [seriesText(c.primary.metric, c.primary.tags), seriesText(c.series.metric, c.series.tags), c.r.toFixed(3), c.lagSeconds === 0 ? '0s' : `${c.lagSeconds > 0 ? '+' : ''}${c.lagSeconds}s`, String(c.n)]);
  return textTable(header, body);
}
