import { RowBinaryWriter } from './rowbinary.js';
import { BUCKET_KEY_COLUMNS, writeBucketKey, type BucketKey } from './rollups.js';

/**
 * Columns of one `forecasts` row in encoding order (the DDL in sinks/clickhouse/schema.ts is built
 * from this): per series, forecast (`issued_at`, the end of the last bucket it learnt) and
 * forecast bucket (`bucket_start`), the forecast value and its 80 % and 95 % intervals, and the
 * model that made it as JSON (models/forecast.ts). A replay issues the same forecast from the same
 * state, the same rows: the ReplacingMergeTree keeps one.
 */
export const FORECAST_COLUMNS = [
  ...BUCKET_KEY_COLUMNS,
  ['issued_at', 'DateTime'],
  ['value', 'Float64'],
  ['lower_80', 'Float64'],
  ['upper_80', 'Float64'],
  ['lower_95', 'Float64'],
  ['upper_95', 'Float64'],
  ['model', 'String'],
] as const;

export interface ForecastRow extends BucketKey {
  issuedMs: number;
  value: number;
  lower80: number;
  upper80: number;
  lower95: number;
  upper95: number;
  model: string;
}

export class ForecastEncoder {
  readonly rows = new RowBinaryWriter(1 << 12);
  count = 0;

  add(r: ForecastRow): void {
    const w = this.rows;
    writeBucketKey(w, r);
    w.uint32(Math.floor(r.issuedMs / 1000));
    w.float64(r.value);
    w.float64(r.lower80);
    w.float64(r.upper80);
    w.float64(r.lower95);
    w.float64(r.upper95);
    w.string(r.model);
    this.count++;
  }
}
