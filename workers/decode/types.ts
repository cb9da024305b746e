import type { ErrorCode } from '../../core/errors.js';

/** Metric types as small integers so a point can travel in a typed column. No TS enums (STYLE.md). */
export const MetricType = { gauge: 0, counter: 1 } as const;
export type MetricTypeCode = (typeof MetricType)[keyof typeof MetricType];

export type Format = 'auto' | 'json' | 'influx' | 'prometheus';

/** Every decode rejection carries a VIGIL_ERR_DECODE_* (malformed) or VIGIL_ERR_LIMIT_* (over a configured limit) code. */
export type DecodeErrorCode = Extract<ErrorCode, `VIGIL_ERR_DECODE_${string}` | 'VIGIL_ERR_LIMIT_TAGS' | 'VIGIL_ERR_LIMIT_NAME' | 'VIGIL_ERR_LIMIT_FIELDS'>;

/** Per-point limits (config `limits.*`): input past them is dead-lettered with a VIGIL_ERR_LIMIT_* code. */
export interface DecodeLimits {
  maxTagsPerPoint: number;
  maxTagKeyLength: number;
  maxTagValueLength: number;
  maxMetricNameLength: number;
  maxFieldsPerLine: number;
}

export interface DecodeContext {
  /** Kafka record timestamp: used when a point has no timestamp. */
  kafkaTimestampMs: number;
  /** Wall clock when the task started. */
  nowMs: number;
  /** A point more than this after nowMs is rejected (VIGIL_ERR_DECODE_TIMESTAMP). */
  maxFutureMs: number;
  limits: DecodeLimits;
}

/**
 * Receives each valid point. `tags` is a flat array [k1, v1, k2, v2, ...] in input order (not
 * sorted); keys unique, non-empty. Treat it as read-only: the points of one Influx line share one
 * array. `tsMs` is an integer epoch millisecond (sub-ms precision is floored). `pointIndex` is the
 * 0-based ordinal of the point inside the message (deterministic for the same bytes; counts every
 * point-candidate, valid or not, so it never shifts when an earlier one is bad).
 */
export interface PointSink {
  /**
   * Null when the point is taken; else why its tenant claim is refused (issue 18): the decoder
   * rejects the point's line or element with VIGIL_ERR_DECODE_TENANT and that reason.
   */
  point(metric: string, tags: string[], value: number, tsMs: number, type: MetricTypeCode, pointIndex: number): string | null;
}

/**
 * Receives each rejection. `bytes` undefined means the whole message is bad; otherwise the exact
 * bytes of the offending line (line formats, no trailing newline) or the JSON.stringify of the
 * offending array element. `line` is 1-based for line formats, `element` 0-based for JSON arrays /
 * {"metrics": [...]}. `reason` is a short human sentence naming what was expected and where.
 */
export interface RejectSink {
  reject(code: DecodeErrorCode, reason: string, detail: { bytes?: Uint8Array; line?: number; element?: number }): void;
}

/**
 * Tags arrays a decoder hands out again for every point of the same series and never changes
 * (influx.ts's series sections): the ingest stage may look a series up by the array itself.
 */
export const stableTags = new WeakSet<readonly string[]>();
