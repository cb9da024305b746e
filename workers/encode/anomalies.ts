import { RowBinaryWriter } from './rowbinary.js';
import { BUCKET_KEY_COLUMNS, writeBucketKey, type BucketKey } from './rollups.js';

/**
 * Columns of one `anomalies` row in encoding order (the DDL in sinks/clickhouse/schema.ts is
 * built from this): per series and scored bucket, the value, the expected value and band, each
 * detector's score, the ensemble's, and the explanation as JSON. `version` is how many buckets of
 * the series the detectors have scored, this one included: after a restart the replayed buckets
 * are scored again by detectors that know less, and the ReplacingMergeTree keeps the
 * better-informed row.
 */
export const ANOMALY_COLUMNS = [
  ...BUCKET_KEY_COLUMNS,
  ['value', 'Float64'],
  ['expected', 'Float64'],
  ['lower', 'Float64'],
  ['upper', 'Float64'],
  ['score', 'Float64'],
  ['anomaly', 'UInt8'],
  ['score_robust', 'Float64'],
  ['score_ewma', 'Float64'],
  ['score_seasonal', 'Float64'],
  ['score_iforest', 'Float64'],
  ['score_lstm', 'Float64'],
  ['explanation', 'String'],
  ['source_topic', 'String'],
  ['source_partition', 'UInt32'],
  ['version', 'UInt64'],
] as const;

export interface AnomalyRow extends BucketKey {
  value: number;
  expected: number;
  lower: number;
  upper: number;
  score: number;
  anomaly: boolean;
  scores: { robust: number; ewma: number; seasonal: number; iforest: number; lstm: number };
  explanation: string;
  topic: string;
  partition: number;
  version: number;
}

export class AnomalyEncoder {
  readonly rows = new RowBinaryWriter(1 << 14);
  count = 0;

  add(r: AnomalyRow): void {
    const w = this.rows;
    writeBucketKey(w, r);
    w.float64(r.value);
    w.float64(r.expected);
    w.float64(r.lower);
    w.float64(r.upper);
    w.float64(r.score);
    w.uint8(r.anomaly ? 1 : 0);
    w.float64(r.scores.robust);
    w.float64(r.scores.ewma);
    w.float64(r.scores.seasonal);
    w.float64(r.scores.iforest);
    w.float64(r.scores.lstm);
    w.string(r.explanation);
    w.string(r.topic);
    w.uint32(r.partition);
    w.uint64(r.version);
    this.count++;
  }
}
