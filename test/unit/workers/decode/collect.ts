import { expect } from 'vitest';
import { ErrorCodes } from '../../../../core/errors.js';
import { loadConfig } from '../../../../core/config/index.js';
import { decodeMessage } from '../../../../workers/decode/index.js';
import type { DecodeContext, DecodeErrorCode, Format, MetricTypeCode } from '../../../../workers/decode/index.js';

/** 2024-01-15T10:30:00Z, the moment every test decodes at unless it says otherwise. */
export const NOW = Date.UTC(2024, 0, 15, 10, 30);
/** The per-point limits at their configured defaults (core/config/schema.ts is their one source). */
export const DEFAULT_LIMITS = loadConfig({ env: {} }).limits;
export const CTX: DecodeContext = { kafkaTimestampMs: NOW - 5_000, nowMs: NOW, maxFutureMs: 10 * 60_000, limits: DEFAULT_LIMITS };

export interface Point {
  metric: string;
  tags: string[];
  value: number;
  tsMs: number;
  type: MetricTypeCode;
  pointIndex: number;
}

export interface Reject {
  code: DecodeErrorCode;
  reason: string;
  /** The reject's bytes decoded back to text, for readable assertions. */
  text?: string;
  bytes?: Uint8Array;
  line?: number;
  element?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });

export function bytesOf(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes a whole message (or bytes[start, end)) and collects what the sinks received. */
export function decode(
  input: string | Uint8Array,
  format: Format = 'auto',
  ctx: DecodeContext = CTX,
  start = 0,
  end?: number,
): { points: Point[]; rejects: Reject[] } {
  const bytes = typeof input === 'string' ? bytesOf(input) : input;
  const points: Point[] = [];
  const rejects: Reject[] = [];
  decodeMessage(
    bytes,
    start,
    end ?? bytes.length,
    format,
    ctx,
    {
      point(metric, tags, value, tsMs, type, pointIndex) {
        points.push({ metric, tags: [...tags], value, tsMs, type, pointIndex });
        return null;
      },
    },
    {
      reject(code, reason, detail) {
        // Every code must exist in the catalogue, and every reason must say something.
        expect(Object.keys(ErrorCodes)).toContain(code);
        expect(reason.length).toBeGreaterThan(10);
        const r: Reject = { code, reason };
        if (detail.bytes !== undefined) {
          r.bytes = detail.bytes;
          r.text = decoder.decode(detail.bytes);
        }
        if (detail.line !== undefined) r.line = detail.line;
        if (detail.element !== undefined) r.element = detail.element;
        rejects.push(r);
      },
    },
  );
  return { points, rejects };
}

/** Decodes a message expected to yield exactly one point and no reject. */
export function onePoint(input: string | Uint8Array, format: Format = 'auto', ctx: DecodeContext = CTX): Point {
  const { points, rejects } = decode(input, format, ctx);
  expect(rejects).toEqual([]);
  expect(points).toHaveLength(1);
  return points[0] as Point;
}

/** Decodes a message expected to yield exactly one reject and no point. */
export function oneReject(input: string | Uint8Array, format: Format = 'auto', ctx: DecodeContext = CTX): Reject {
  const { points, rejects } = decode(input, format, ctx);
  expect(points).toEqual([]);
  expect(rejects).toHaveLength(1);
  return rejects[0] as Reject;
}
