/**
 * workers/decode: the bytes of one Kafka message → metric points, or rejections with a
 * VIGIL_ERR_DECODE_* code. Pure functions for worker threads: no I/O, no logging, no allocation per
 * point beyond what JSON.parse does and the metric name / tags array each point needs.
 *
 * Contract
 * - UTF-8: decoded with one shared fatal TextDecoder (ignoreBOM: true, so a BOM stays in the text
 *   and is skipped here). Invalid → whole message VIGIL_ERR_DECODE_UTF8, reason naming the byte
 *   offset (from the message start) of the first bad sequence. Empty, whitespace-only or BOM-only →
 *   VIGIL_ERR_DECODE_EMPTY. A leading BOM is not part of line 1's bytes in line rejects.
 * - Format `auto`: first non-blank character `{` or `[` → JSON (which recognises Prometheus adapter
 *   objects by shape); anything else → Influx line protocol. `json`, `influx` force one decoder;
 *   `prometheus` is the JSON decoder with the Prometheus typing rule always on.
 * - JSON: one object; an array of objects; {"metrics": [...]} (an object with "metrics" and no
 *   "value"); or newline-delimited objects (when JSON.parse of the whole text fails and it has
 *   several non-blank lines: each line is parsed alone, a bad one → VIGIL_ERR_DECODE_JSON with its
 *   bytes and line number). One invalid line → whole message VIGIL_ERR_DECODE_JSON with
 *   JSON.parse's message. Array elements that are not objects → VIGIL_ERR_DECODE_SHAPE; a top-level
 *   value that is not an object or array → whole message VIGIL_ERR_DECODE_SHAPE.
 *   - name: `metric_id`, else `name`, else the `__name__` label; a non-empty string, else
 *     VIGIL_ERR_DECODE_NAME; longer than `limits.maxMetricNameLength` → VIGIL_ERR_LIMIT_NAME.
 *   - value: `value`, a finite number or a decimal string ("1.5"); NaN, ±Infinity (1e999), "NaN",
 *     "+Inf", "", booleans, null, missing → VIGIL_ERR_DECODE_VALUE.
 *   - tags: `tags`, else `labels`; a flat object of strings, finite numbers or booleans (the latter
 *     two stringified), non-empty keys, else VIGIL_ERR_DECODE_TAGS; more than `limits.maxTagsPerPoint`,
 *     or a key or value longer than `limits.maxTagKeyLength` / `maxTagValueLength` →
 *     VIGIL_ERR_LIMIT_TAGS (Influx too). `__name__` is never a tag. Order is the object's key order (JSON.parse puts integer-like keys first).
 *   - type: `metric_type`, else `type`: "gauge", "counter", "untyped" (→ gauge), missing (→ gauge);
 *     anything else → VIGIL_ERR_DECODE_TYPE. Prometheus objects (labels carry `__name__`, or format
 *     `prometheus`) without a type: counter when the name ends in _total, _count, _sum or _bucket,
 *     else gauge; and a label with an empty value is dropped, as Prometheus treats it as absent.
 *   - timestamp: `timestamp`, else `time`, else `ts`; see timestamp.ts (RFC 3339, or epoch s/ms/µs/ns
 *     by magnitude; missing → the Kafka record timestamp; accepted from 2000-01-01 to
 *     min(now + maxFutureMs, 2105-12-31)), else VIGIL_ERR_DECODE_TIMESTAMP.
 *   - null counts as missing for the optional keys (tags, type, timestamp) and for the name aliases.
 * - Influx line protocol: many lines; blank and `#` comment lines skipped; `\r\n` accepted. Each
 *   numeric or boolean field is one gauge named `<measurement>.<field>` (`<measurement>` for a field
 *   named `value`; past `limits.maxMetricNameLength` → VIGIL_ERR_LIMIT_NAME; more than
 *   `limits.maxFieldsPerLine` fields → VIGIL_ERR_LIMIT_FIELDS); string fields are skipped, but a line with only string fields →
 *   VIGIL_ERR_DECODE_VALUE. A bad line → VIGIL_ERR_DECODE_LINE_PROTOCOL (or the more precise NAME,
 *   VALUE, TAGS, TIMESTAMP) with that line's bytes, its 1-based number, and the 0-based character
 *   offset in the reason; the other lines still decode. A line is all-or-nothing.
 * - pointIndex: JSON array element i (or {"metrics"} element i) is candidate i; a single object is
 *   0; NDJSON counts non-blank lines. Influx: each numeric/boolean field of a line that parses is
 *   one candidate, also when the line is then rejected for its timestamp (clock-dependent); a line
 *   that does not parse counts as one.
 * - Reasons name the place: `element 2: ...`, `line 3: ...`, `line 3, offset 17: ...`.
 * - decodeMessage never throws for bad input. It is not re-entrant from inside a sink callback.
 */
import type { DecodeContext, Format, PointSink, RejectSink } from './types.js';
import { decodeInflux } from './influx.js';
import { decodeJson } from './json.js';
import { BOM, invalidUtf8Offset, isBlankCode, utf8Decoder } from './text.js';

export { MetricType, stableTags } from './types.js';
export type { DecodeContext, DecodeErrorCode, DecodeLimits, Format, MetricTypeCode, PointSink, RejectSink } from './types.js';
export { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, parseTimestamp } from './timestamp.js';

/** Decodes bytes[start, end) (one Kafka message value). Never throws for bad input. */
export function decodeMessage(
  bytes: Uint8Array,
  start: number,
  end: number,
  format: Format,
  ctx: DecodeContext,
  points: PointSink,
  rejects: RejectSink,
): void {
  const from = Math.min(Math.max(start, 0), bytes.length);
  const to = Math.min(Math.max(end, from), bytes.length);

  let firstByte = from;
  while (firstByte < to && isBlankCode(bytes[firstByte] ?? 0)) firstByte++;
  if (firstByte === to) {
    rejects.reject('VIGIL_ERR_DECODE_EMPTY', from === to ? 'message is empty' : 'message contains only whitespace', {});
    return;
  }

  let text: string;
  try {
    text = utf8Decoder.decode(bytes.subarray(from, to));
  } catch {
    const offset = invalidUtf8Offset(bytes, from, to);
    const at = offset < 0 ? '' : `: invalid sequence at byte offset ${String(offset)} (0x${(bytes[from + offset] ?? 0).toString(16).toUpperCase().padStart(2, '0')})`;
    rejects.reject('VIGIL_ERR_DECODE_UTF8', `message is not valid UTF-8${at}`, {});
    return;
  }

  // ignoreBOM keeps a BOM in the text; it marks the encoding, it is not content.
  const bodyStart = text.charCodeAt(0) === BOM ? 1 : 0;
  let first = bodyStart;
  while (first < text.length && isBlankCode(text.charCodeAt(first))) first++;
  if (first === text.length) {
    rejects.reject('VIGIL_ERR_DECODE_EMPTY', 'message contains only a byte order mark and whitespace', {});
    return;
  }

  const c = text.charCodeAt(first);
  const json = format === 'json' || format === 'prometheus' || (format === 'auto' && (c === 0x7b || c === 0x5b));
  if (json) decodeJson(bodyStart === 0 ? text : text.slice(bodyStart), format === 'prometheus', ctx, points, rejects);
  else decodeInflux(text, bodyStart, ctx, points, rejects);
}
