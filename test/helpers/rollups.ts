import { expect } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';

type Agg = { count: number; sum: number; min: number; max: number; last: number };

async function rows(ch: ClickHouseClient, query: string): Promise<Map<string, Agg>> {
  const rs = await ch.query({ query, format: 'JSONEachRow' });
  const out = new Map<string, Agg>();
  for (const r of await rs.json<{ s: string; w: number; b: number } & Record<'count' | 'sum' | 'min' | 'max' | 'last', number | string>>()) {
    const round = (v: number | string) => Math.round(Number(v) * 1e6) / 1e6;
    out.set(`${r.s}/${r.w}/${r.b}`, { count: Number(r.count), sum: round(r.sum), min: round(r.min), max: round(r.max), last: round(r.last) });
  }
  return out;
}

/** Merged gauge rollups, per series, width and bucket (the documented read path). */
export function mergedRollups(ch: ClickHouseClient, db: string): Promise<Map<string, Agg>> {
  return rows(ch, `SELECT toString(series_id) AS s, width_s AS w, toUInt32(bucket_start) AS b, count, sum, min, max, last FROM ${db}.rollups_merged WHERE type = 'gauge'`);
}

/** The same aggregates computed by ClickHouse from the raw points. */
export function groupByPoints(ch: ClickHouseClient, db: string, widths: readonly number[]): Promise<Map<string, Agg>> {
  return rows(
    ch,
    `SELECT toString(series_id) AS s, w, toUInt32(intDiv(toUInt32(ts), w) * w) AS b, count() AS count, sum(value) AS sum, min(value) AS min, max(value) AS max, argMax(value, ts_ms) AS last ` +
      `FROM ${db}.points_dedup ARRAY JOIN [${widths.join(', ')}] AS w WHERE type = 'gauge' GROUP BY s, w, b`,
  );
}

/**
 * README "Reading at scale": rollups_merged's merge with the filter inside the FINAL (what 18.16
 * needs to read by key range), per metric, gathered over every gauge metric of the database.
 */
export async function documentedRollups(ch: ClickHouseClient, db: string): Promise<Map<string, Agg>> {
  const metrics = await (await ch.query({ query: `SELECT DISTINCT metric FROM ${db}.rollups WHERE type = 'gauge'`, format: 'JSONEachRow' })).json<{ metric: string }>();
  const out = new Map<string, Agg>();
  for (const { metric } of metrics) {
    const where = `metric = '${metric.replaceAll("'", "\\'")}' AND type = 'gauge'`;
    const part = await rows(
      ch,
      `SELECT toString(series_id) AS s, width_s AS w, toUInt32(bucket_start) AS b, sum(c) AS count, sum(sm) AS sum, min(mn) AS min, max(mx) AS max, argMax(l, lt) AS last ` +
        `FROM (SELECT series_id, width_s, bucket_start, count AS c, sum AS sm, min AS mn, max AS mx, last AS l, last_ts_ms AS lt FROM ${db}.rollups FINAL WHERE ${where}) ` +
        'GROUP BY series_id, width_s, bucket_start',
    );
    for (const [k, v] of part) out.set(k, v);
  }
  return out;
}

export async function expectRollupsMatchPoints(ch: ClickHouseClient, db: string, widths: readonly number[]): Promise<void> {
  const expected = await groupByPoints(ch, db, widths);
  expect(expected.size).toBeGreaterThan(0);
  expect(await mergedRollups(ch, db)).toEqual(expected);
  // The documented fast form answers as the view does (after replays, late points, corrections).
  expect(await documentedRollups(ch, db)).toEqual(expected);
}
