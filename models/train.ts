import { endianness } from 'node:os';
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

/**
 * Bucket means per series, in time order. Gaps are left out (the forecaster sees buckets, not time).
 * Read as RowBinary (series id, then the array of means): the values arrive as the server holds
 * them and are copied into Float64Arrays, where JSONEachRow made the server print and Vigil parse
 * text per value (`npm run bench:history`: README "Benchmarks").
 */
export async function readHistory(client: ClickHouseClient, q: HistoryQuery): Promise<Map<string, Float64Array>> {
  return decodeHistory(await historyBody(client, q));
}

/** The history query's RowBinary response body. */
async function historyBody(client: ClickHouseClient, q: HistoryQuery): Promise<Uint8Array> {
  // Literals, not query parameters: 18.16 has none ("Unknown setting param_width").
  const where = [`width_s = ${sqlUInt(q.widthSeconds)}`];
  if (q.metricLike) where.push(`metric LIKE ${sqlString(q.metricLike)}`);
  if (q.hours) where.push(`bucket_start >= now() - toIntervalHour(${sqlUInt(q.hours)})`);
  const { stream } = await client.exec({
    query: `SELECT series_id, groupArray(mean) AS values FROM (SELECT series_id, bucket_start, mean FROM ${q.database}.rollups_merged WHERE ${where.join(' AND ')} ORDER BY series_id, bucket_start) GROUP BY series_id LIMIT ${sqlUInt(q.maxSeries ?? 10_000)} FORMAT RowBinary`,
  });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Rows of (series_id UInt64, values Array(Float64)) in RowBinary; a truncated body is refused with the byte offset. */
export function decodeHistory(body: Uint8Array): Map<string, Float64Array> {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out = new Map<string, Float64Array>();
  const truncated = (at: number, what: string) => new VigilError('VIGIL_ERR_MODEL_TRAIN', `history body truncated at byte ${at} of ${body.length}: expected ${what}`);
  let o = 0;
  while (o < body.length) {
    if (o + 8 > body.length) throw truncated(o, 'a series id (UInt64)');
    const id = view.getBigUint64(o, true);
    o += 8;
    // The array's length: unsigned LEB128.
    let n = 0;
    let scale = 1;
    for (;;) {
      if (o >= body.length) throw truncated(o, 'an array length (LEB128)');
      const b = body[o++] as number;
      n += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 128;
    }
    if (o + 8 * n > body.length) throw truncated(o, `${n} Float64 values`);
    const values = new Float64Array(n);
    if (LITTLE_ENDIAN && (body.byteOffset + o) % 8 === 0) values.set(new Float64Array(body.buffer, body.byteOffset + o, n));
    else for (let i = 0; i < n; i++) values[i] = view.getFloat64(o + 8 * i, true);
    o += 8 * n;
    out.set(id.toString(), values);
  }
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
