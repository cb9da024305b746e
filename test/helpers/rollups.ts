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

export async function expectRollupsMatchPoints(ch: ClickHouseClient, db: string, widths: readonly number[]): Promise<void> {
  const expected = await groupByPoints(ch, db, widths);
  expect(expected.size).toBeGreaterThan(0);
  expect(await mergedRollups(ch, db)).toEqual(expected);
}
