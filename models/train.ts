import type { ClickHouseClient } from '@clickhouse/client';
import { VigilError } from '../core/errors.js';
import { sqlString, sqlUInt } from '../core/sql.js';
import { normalise, save, train, trainFromCsv, type LstmMetadata, type TrainOptions } from './lstm/index.js';

/**
 * `vigil train`: history for the LSTM forecaster, read from ClickHouse (`rollups_merged`, the
 * bucket means of the scored width) or a CSV, normalised per series, trained with TensorFlow.js
 * and saved as model.json + weights.bin + metadata.json for `models.lstmModelDir`.
 */
export interface HistoryQuery {
  database: string;
  widthSeconds: number;
  /** ClickHouse LIKE pattern on the metric name (default: every metric). */
  metricLike?: string;
  /** Only buckets of the last this many hours (0: all). */
  hours?: number;
  /** At most this many series (the most recent first). */
  maxSeries?: number;
}

/** Bucket means per series, in time order. Gaps are left out (the forecaster sees buckets, not time). */
export async function readHistory(client: ClickHouseClient, q: HistoryQuery): Promise<Map<string, Float64Array>> {
  // Literals, not query parameters: 18.16 has none ("Unknown setting param_width").
  const where = [`width_s = ${sqlUInt(q.widthSeconds)}`];
  if (q.metricLike) where.push(`metric LIKE ${sqlString(q.metricLike)}`);
  if (q.hours) where.push(`bucket_start >= now() - toIntervalHour(${sqlUInt(q.hours)})`);
  const rs = await client.query({
    query: `SELECT toString(series_id) AS id, groupArray(mean) AS values FROM (SELECT series_id, bucket_start, mean FROM ${q.database}.rollups_merged WHERE ${where.join(' AND ')} ORDER BY series_id, bucket_start) GROUP BY series_id LIMIT ${sqlUInt(q.maxSeries ?? 10_000)}`,
    format: 'JSONEachRow',
  });
  const out = new Map<string, Float64Array>();
  for (const row of await rs.json<{ id: string; values: number[] }>()) out.set(row.id, Float64Array.from(row.values));
  return out;
}

export async function trainSeries(history: Map<string, Float64Array>, options: TrainOptions, dir: string): Promise<LstmMetadata> {
  const window = options.window ?? 32;
  const series = [...history.values()].filter((v) => v.length >= window * 2).map((v) => normalise(v).values);
  if (series.length === 0) {
    throw new VigilError('VIGIL_ERR_MODEL_TRAIN', `no series has ${window * 2} buckets of history (the window is ${window}); ${history.size} series read`);
  }
  const { model, metadata } = await train(series, options);
  await save(dir, model, metadata);
  model.dispose();
  return metadata;
}

export async function trainCsv(path: string, options: TrainOptions, dir: string): Promise<LstmMetadata> {
  const { model, metadata } = await trainFromCsv(path, options);
  await save(dir, model, metadata);
  model.dispose();
  return metadata;
}
