import type { ClickHouseClient } from '@clickhouse/client';
import { sqlUInt } from '../../core/sql.js';
import { correlate, type Correlation } from './correlate.js';
import { seriesId, sortTags } from '../../workers/series.js';
import { nestedTags } from './tags.js';

/**
 * Correlated incidents (issue 17): anomaly onsets (the first flagged bucket of an episode,
 * `anomalies.anomaly = 1`) of different series that come within `windowSeconds` of one another
 * are one incident. Grouped from the `anomalies` table itself, not from what one instance's shards
 * saw: every instance of a consumer group, and a replay after a crash, computes the same incidents
 * from the same rows (the incident's id is its first onset's series and time), and the
 * ReplacingMergeTree keeps one row per incident, its latest version.
 */
export interface Onset {
  seriesId: string;
  metric: string;
  tags: Record<string, string>;
  /** The series' tenant ('' the default tenant): an incident groups one tenant's onsets. */
  tenant: string;
  /** Start of the flagged bucket, s. */
  t: number;
  score: number;
}

export interface Incident {
  /** `<first member's series id, hex>-<its onset, s>`. */
  id: string;
  tenant: string;
  startS: number;
  /** The last member's onset, s. */
  lastS: number;
  /** One per series, by onset, then score (highest first): each series at its first onset in the incident, with its highest score there. */
  members: Onset[];
}

/**
 * Single-linkage in time: onsets sorted by time, a gap of more than `windowSeconds` starts the
 * next incident. Per tenant: two tenants' onsets are never one incident (issue 18).
 */
export function groupOnsets(onsets: readonly Onset[], windowSeconds: number): Incident[] {
  const byTenant = new Map<string, Onset[]>();
  for (const o of onsets) {
    const list = byTenant.get(o.tenant);
    if (list) list.push(o);
    else byTenant.set(o.tenant, [o]);
  }
  const out: Incident[] = [];
  for (const list of byTenant.values()) out.push(...groupTenant(list, windowSeconds));
  return out.sort((a, b) => a.startS - b.startS || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function groupTenant(onsets: readonly Onset[], windowSeconds: number): Incident[] {
  const sorted = [...onsets].sort((a, b) => a.t - b.t || b.score - a.score || (a.seriesId < b.seriesId ? -1 : a.seriesId > b.seriesId ? 1 : 0));
  const out: Incident[] = [];
  let current: Incident | null = null;
  let seen = new Map<string, Onset>();
  for (const o of sorted) {
    if (!current || o.t - current.lastS > windowSeconds) {
      current = { id: `${BigInt(o.seriesId).toString(16).padStart(16, '0')}-${o.t}`, tenant: o.tenant, startS: o.t, lastS: o.t, members: [] };
      out.push(current);
      seen = new Map();
    }
    current.lastS = o.t;
    const known = seen.get(o.seriesId);
    if (known) {
      if (o.t === known.t && o.score > known.score) known.score = o.score;
      continue;
    }
    const member = { ...o };
    seen.set(o.seriesId, member);
    current.members.push(member);
  }
  for (const i of out) i.members.sort((a, b) => a.t - b.t || b.score - a.score);
  return out;
}

/**
 * The onsets of the flagged buckets at `widthSeconds` from `fromS` on: the buckets some version
 * flagged, kept where their latest version (the row FINAL keeps) is flagged — README "Reading at
 * scale": no FINAL over every scored bucket of the lookback, only the flagged buckets' rows read.
 */
export async function readOnsets(client: ClickHouseClient, database: string, widthSeconds: number, fromS: number): Promise<Onset[]> {
  const range = `width_s = ${sqlUInt(widthSeconds)} AND bucket_start >= ${sqlUInt(fromS)}`;
  const rs = await client.query({
    query:
      `SELECT toString(series_id) AS id, any(metric) AS metric, any(\`tags.key\`) AS keys, any(\`tags.value\`) AS vals, any(tenant) AS tenant, toUInt32(bucket_start) AS t, argMax(score, version) AS score ` +
      `FROM ${database}.anomalies WHERE ${range} AND (series_id, width_s, bucket_start) IN (SELECT series_id, width_s, bucket_start FROM ${database}.anomalies WHERE ${range} AND anomaly = 1) ` +
      `GROUP BY series_id, width_s, bucket_start HAVING argMax(anomaly, version) = 1 ORDER BY t, id`,
    format: 'JSONEachRow',
  });
  return (await rs.json<{ id: string; metric: string; keys: string[]; vals: string[]; tenant: string; t: number; score: number }>()).map((r) => ({
    seriesId: r.id,
    metric: r.metric,
    tags: nestedTags(r.keys, r.vals),
    tenant: r.tenant,
    t: Number(r.t),
    score: Number(r.score),
  }));
}

export interface RelatedOptions {
  /** LIKE patterns of the series related ones are looked for among (empty: every metric). */
  patterns: readonly string[];
  threshold: number;
  max: number;
  maxLag: number;
}

/**
 * The series whose bucket means moved with the incident's first member over its span (a window
 * either side), by |r| at the best lag (vigil correlate's measure), its own members left out.
 */
export async function relatedSeries(client: ClickHouseClient, database: string, widthSeconds: number, windowSeconds: number, incident: Incident, o: RelatedOptions): Promise<Correlation[]> {
  const first = incident.members[0];
  if (!first) return [];
  const members = new Set(incident.members.map((m) => `${m.metric}\u0000${JSON.stringify(m.tags)}`));
  const found = await correlate(client, {
    database,
    metric: first.metric,
    with: o.patterns,
    widthSeconds,
    sinceSeconds: incident.lastS - incident.startS + 2 * windowSeconds,
    untilS: incident.lastS + windowSeconds,
    threshold: o.threshold,
    maxLag: o.maxLag,
    primaryTags: first.tags,
    tenant: incident.tenant,
  });
  return found.filter((c) => !members.has(`${c.series.metric}\u0000${JSON.stringify(c.series.tags)}`)).slice(0, o.max);
}

/** One `incidents` row (JSONEachRow): members as Nested columns, related series as JSON. */
export function incidentRow(i: Incident, widthSeconds: number, related: readonly Correlation[] | null): Record<string, unknown> {
  return {
    incident_id: i.id,
    tenant: i.tenant,
    width_s: widthSeconds,
    started_at: i.startS,
    last_onset_at: i.lastS,
    series_count: i.members.length,
    'members.series_id': i.members.map((m) => m.seriesId),
    'members.metric': i.members.map((m) => m.metric),
    'members.tags': i.members.map((m) => JSON.stringify(m.tags)),
    'members.onset': i.members.map((m) => m.t),
    'members.score': i.members.map((m) => m.score),
    related: related === null ? '' : JSON.stringify(related.map((c) => ({ metric: c.series.metric, tags: c.series.tags, r: Math.round(c.r * 1000) / 1000, lagSeconds: c.lagSeconds }))),
    version: incidentVersion(i, related !== null),
  };
}

/** A later version of an incident has a later last onset or more members, or has its related series. */
export function incidentVersion(i: Incident, withRelated: boolean): number {
  return i.lastS * 4096 + Math.min(i.members.length, 2047) * 2 + (withRelated ? 1 : 0);
}

/** A series' onset to place in an incident: its onset in the table between `fromS` and `toS` (bucket starts, s). */
export interface IncidentTarget {
  /** The series id (decimal), as `anomalies.series_id` holds it. */
  seriesId: string;
  fromS: number;
  toS: number;
}

/** The target of a series by its metric and tags (any order), identified as the pipeline identifies it (workers/series.ts). */
export function incidentTarget(metric: string, tags: Readonly<Record<string, string>>, fromS: number, toS: number): IncidentTarget {
  return { seriesId: seriesId(metric, sortTags(Object.entries(tags).flat())).toString(), fromS, toS };
}

/** The incident holding each target's series at its earliest onset within its span (null: no onset of it there). */
export function placeOnsets(onsets: readonly Onset[], incidents: readonly Incident[], targets: readonly IncidentTarget[]): (string | null)[] {
  const bySeries = new Map<string, number[]>();
  for (const o of onsets) {
    const times = bySeries.get(o.seriesId);
    if (times) times.push(o.t);
    else bySeries.set(o.seriesId, [o.t]);
  }
  return targets.map((target) => {
    let at = Number.POSITIVE_INFINITY;
    for (const t of bySeries.get(target.seriesId) ?? []) if (t >= target.fromS && t <= target.toS && t < at) at = t;
    if (at === Number.POSITIVE_INFINITY) return null;
    return incidents.find((i) => i.startS <= at && at <= i.lastS)?.id ?? null;
  });
}

/**
 * The incident each target's series belongs to, as the incidents pass would group the onsets in
 * the table now (null: the series has no onset in its span). Reads back from the targets only as
 * far as the chain of onsets reaches (at most `lookbackSeconds`, as the pass): a window of onsets,
 * widened while an incident may begin before it.
 */
export async function incidentsOf(client: ClickHouseClient, database: string, widthSeconds: number, windowSeconds: number, lookbackSeconds: number, targets: readonly IncidentTarget[]): Promise<(string | null)[]> {
  if (targets.length === 0) return [];
  const hi = Math.max(...targets.map((t) => t.toS));
  let span = hi - Math.min(...targets.map((t) => t.fromS)) + 2 * windowSeconds;
  for (;;) {
    const from = Math.max(0, hi - Math.min(span, lookbackSeconds));
    const onsets = await readOnsets(client, database, widthSeconds, from);
    const incidents = groupOnsets(onsets, windowSeconds);
    const first = incidents[0];
    const whole = from === 0 || span >= lookbackSeconds || !first || first.startS - from > windowSeconds;
    if (whole) return placeOnsets(onsets, incidents, targets);
    span *= 4;
  }
}
