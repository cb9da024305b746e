import type { ClickHouseClient } from '@clickhouse/client';
import type { LabelledWorkload } from './anomalies.js';
import { scoreGrouping, type GroupingScore, type InjectedIncident } from './grouping.js';

/**
 * What the harness reads back of a running pipeline's forecasts and incidents (issue 17), scored
 * against the labelled workloads it produced: the same measures as bench:forecast and
 * bench:incidents, from what Vigil wrote to ClickHouse instead of from the models run offline.
 */

/** The metric of the forecast workload (`forecasts.series` selects it). */
export const FORECAST_METRIC = 'forecast.value';
/** Days of the forecast workload; forecasts are scored from the start of the last one. */
export const FORECAST_DAYS = 3;
const DAY_MS = 86_400_000;

export interface ForecastQuality {
  series: number;
  /** Forecasts scored (issued in the last day, each over its horizon) and their buckets. */
  forecasts: number;
  buckets: number;
  horizonBuckets: number;
  /** MAE relative to the seasonal naive's (the value a season earlier); naive: the last value at issue. */
  relativeMae: number;
  naiveRelativeMae: number;
  /** MAE over the in-sample MAE of the one-step seasonal naive (Hyndman & Koehler), mean over series; the seasonal naive's own. */
  mase: number;
  seasonalNaiveMase: number;
  /** Shares of actual values inside the 80 % and 95 % intervals. */
  covered80: number;
  covered95: number;
}

export interface IncidentQuality extends GroupingScore {
  injected: number;
  windowSeconds: number;
}

/**
 * The forecasts Vigil wrote for the forecast workload's series (`series` tag `s<i>`), issued in
 * its last day (a season and a day of judged origins behind them), against what came.
 */
export async function readForecastQuality(ch: ClickHouseClient, db: string, w: LabelledWorkload): Promise<ForecastQuality | null> {
  const { startMs, widthMs, periodMs } = w.options;
  const period = Math.round(periodMs / widthMs);
  const fromMs = startMs + (FORECAST_DAYS - 1) * DAY_MS;
  const rs = await ch
    .query({
      query: `SELECT tags.value[indexOf(tags.key, 'series')] AS s, toUInt32(issued_at) AS i, toUInt32(bucket_start) AS b, value, lower_80, upper_80, lower_95, upper_95 FROM ${db}.forecasts FINAL WHERE metric = '${FORECAST_METRIC}' AND issued_at >= ${Math.floor(fromMs / 1000)} ORDER BY s, i, b`,
      format: 'JSONEachRow',
    })
    .catch(() => null);
  if (!rs) return null;
  const rows = await rs.json<{ s: string; i: number; b: number; value: number; lower_80: number; upper_80: number; lower_95: number; upper_95: number }>();
  if (rows.length === 0) return null;
  const at = (series: number, t: number): number => (t >= 0 ? (w.series[series]?.values[t] ?? Number.NaN) : Number.NaN);
  const err = { vigil: 0, snaive: 0, naive: 0 };
  const perSeries = new Map<number, { vigil: number; snaive: number; n: number }>();
  const issued = new Set<string>();
  let n = 0;
  let in80 = 0;
  let in95 = 0;
  let horizon = 0;
  for (const r of rows) {
    const s = Number(r.s.slice(1));
    const t = Math.round((Number(r.b) * 1000 - startMs) / widthMs);
    const origin = Math.round((Number(r.i) * 1000 - startMs) / widthMs);
    const actual = at(s, t);
    const seasonal = at(s, t - period);
    let last = Number.NaN;
    for (let k = origin - 1; k >= 0 && Number.isNaN(last); k--) last = at(s, k);
    if (Number.isNaN(actual) || Number.isNaN(seasonal) || Number.isNaN(last)) continue;
    issued.add(`${r.s}/${r.i}`);
    horizon = Math.max(horizon, t - origin + 1);
    err.vigil += Math.abs(actual - r.value);
    err.snaive += Math.abs(actual - seasonal);
    err.naive += Math.abs(actual - last);
    const p = perSeries.get(s) ?? { vigil: 0, snaive: 0, n: 0 };
    p.vigil += Math.abs(actual - r.value);
    p.snaive += Math.abs(actual - seasonal);
    p.n++;
    perSeries.set(s, p);
    if (actual >= r.lower_80 && actual <= r.upper_80) in80++;
    if (actual >= r.lower_95 && actual <= r.upper_95) in95++;
    n++;
  }
  if (n === 0) return null;
  // MASE's scale: the one-step seasonal naive's mean absolute error before the scored day.
  let mase = 0;
  let snaiveMase = 0;
  let scaled = 0;
  const firstScored = Math.round((fromMs - startMs) / widthMs);
  for (const [s, p] of perSeries) {
    let sum = 0;
    let count = 0;
    for (let t = period; t < firstScored; t++) {
      const d = Math.abs(at(s, t) - at(s, t - period));
      if (Number.isNaN(d)) continue;
      sum += d;
      count++;
    }
    if (count === 0 || sum === 0) continue;
    mase += p.vigil / p.n / (sum / count);
    snaiveMase += p.snaive / p.n / (sum / count);
    scaled++;
  }
  return {
    series: perSeries.size,
    forecasts: issued.size,
    buckets: n,
    horizonBuckets: horizon,
    relativeMae: err.vigil / err.snaive,
    naiveRelativeMae: err.naive / err.snaive,
    mase: scaled > 0 ? mase / scaled : Number.NaN,
    seasonalNaiveMase: scaled > 0 ? snaiveMase / scaled : Number.NaN,
    covered80: in80 / n,
    covered95: in95 / n,
  };
}

/** The incidents Vigil wrote (`incidents_dedup`), scored against the incidents injected into the labelled workload (`series` tag `s<i>` of `metric`). */
export async function readIncidentQuality(
  ch: ClickHouseClient,
  db: string,
  metric: string,
  w: LabelledWorkload,
  injected: readonly InjectedIncident[],
  shiftBuckets: number,
  windowSeconds: number,
): Promise<IncidentQuality | null> {
  const rs = await ch
    .query({ query: `SELECT incident_id AS id, members.metric AS m, members.tags AS tags, arrayMap(x -> toUInt32(x), members.onset) AS o FROM ${db}.incidents_dedup`, format: 'JSONEachRow' })
    .catch(() => null);
  if (!rs) return null;
  const rows = await rs.json<{ id: string; m: string[]; tags: string[]; o: number[] }>();
  const found = rows.map((r) => ({
    id: r.id,
    members: r.m.map((m, k) => {
      const series = m === metric ? (JSON.parse(r.tags[k] ?? '{}') as Record<string, string>)['series'] : undefined;
      return { series: series ? Number(series.slice(1)) : null, t: Number(r.o[k]) };
    }),
  }));
  return { ...scoreGrouping(found, injected, w.options.startMs, w.options.widthMs, shiftBuckets), injected: injected.length, windowSeconds };
}
