/**
 * JSON decoder: one object, an array of objects, {"metrics": [...]}, or newline-delimited objects.
 * Also reads prometheus-kafka-adapter objects ({"name", "value": "1.5", "labels": {"__name__"}}).
 */
import type { DecodeContext, DecodeErrorCode, MetricTypeCode, PointSink, RejectSink } from './types.js';
import { MetricType } from './types.js';
import { parseTimestamp } from './timestamp.js';
import { describe, errorMessage, isBlankRange, parseDecimal, tagLimit, utf8Encoder } from './text.js';

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Prometheus naming conventions for cumulative series (counters, and histogram/summary parts). */
function hasCounterSuffix(name: string): boolean {
  return name.endsWith('_total') || name.endsWith('_count') || name.endsWith('_sum') || name.endsWith('_bucket');
}

/** First present (not undefined, not null) of two keys; returns the key used, for reasons. */
function pick(obj: JsonObject, a: string, b: string): string {
  const v = obj[a];
  return v === undefined || v === null ? b : a;
}

const SHAPE_EXPECTED = 'expected a JSON object, an array of objects or {"metrics": [...]}';

/**
 * Decodes `text` (BOM already removed). `prometheus` turns the Prometheus typing rule on for every
 * object, not only those whose labels carry `__name__`.
 */
export function decodeJson(
  text: string,
  prometheus: boolean,
  ctx: DecodeContext,
  points: PointSink,
  rejects: RejectSink,
): void {
  new JsonDecoder(prometheus, ctx, points, rejects).decode(text);
}

/** Where the point being decoded came from; set once per candidate, read only when rejecting. */
const WHOLE = 0;
const ELEMENT = 1;
const LINE = 2;

class JsonDecoder {
  private where: typeof WHOLE | typeof ELEMENT | typeof LINE = WHOLE;
  private element = 0;
  private elementValue: unknown = undefined;
  private line = 0;
  private lineText = '';

  constructor(
    private readonly prometheus: boolean,
    private readonly ctx: DecodeContext,
    private readonly points: PointSink,
    private readonly rejects: RejectSink,
  ) {}

  decode(text: string): void {
    let root: unknown;
    try {
      root = JSON.parse(text);
    } catch (err) {
      if (hasSeveralLines(text)) this.decodeLines(text);
      else this.reject('VIGIL_ERR_DECODE_JSON', `message is not valid JSON: ${errorMessage(err)}`);
      return;
    }
    if (Array.isArray(root)) {
      this.decodeArray(root);
    } else if (isObject(root)) {
      // A point never has "metrics"; a wrapper never has "value". Checking both keeps a point that
      // happens to carry a "metrics" field decodable.
      if (Object.hasOwn(root, 'metrics') && !Object.hasOwn(root, 'value')) {
        const metrics = root['metrics'];
        if (Array.isArray(metrics)) this.decodeArray(metrics);
        else this.reject('VIGIL_ERR_DECODE_SHAPE', `expected "metrics" to be an array of objects, got ${describe(metrics)}`);
      } else {
        this.decodePoint(root, 0);
      }
    } else {
      this.reject('VIGIL_ERR_DECODE_SHAPE', `${SHAPE_EXPECTED}, got ${describe(root)}`);
    }
  }

  /** Array elements: element i is point candidate i, valid or not. */
  private decodeArray(items: unknown[]): void {
    // Every message yields points or a dead letter: an empty batch is set aside, not skipped unseen.
    if (items.length === 0) {
      this.reject('VIGIL_ERR_DECODE_EMPTY', 'the array has no elements');
      return;
    }
    this.where = ELEMENT;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      this.element = i;
      this.elementValue = item;
      if (isObject(item)) this.decodePoint(item, i);
      else this.reject('VIGIL_ERR_DECODE_SHAPE', `expected a JSON object, got ${describe(item)}`);
    }
  }

  /** NDJSON: each non-blank line is one candidate; a bad line costs only itself. */
  private decodeLines(text: string): void {
    this.where = LINE;
    let pointIndex = 0;
    let start = 0;
    for (let lineNo = 1; ; lineNo++) {
      const nl = text.indexOf('\n', start);
      const lineEnd = nl === -1 ? text.length : nl;
      const contentEnd = lineEnd > start && text.charCodeAt(lineEnd - 1) === 0x0d ? lineEnd - 1 : lineEnd;
      if (!isBlankRange(text, start, contentEnd)) {
        this.line = lineNo;
        this.lineText = text.slice(start, contentEnd);
        this.decodeLine(this.lineText, pointIndex);
        pointIndex++;
      }
      if (nl === -1) return;
      start = nl + 1;
    }
  }

  private decodeLine(lineText: string, pointIndex: number): void {
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (err) {
      this.reject('VIGIL_ERR_DECODE_JSON', `not valid JSON: ${errorMessage(err)}`);
      return;
    }
    if (isObject(value)) this.decodePoint(value, pointIndex);
    else this.reject('VIGIL_ERR_DECODE_SHAPE', `expected one JSON object per line, got ${describe(value)}`);
  }

  private decodePoint(obj: JsonObject, pointIndex: number): void {
    const tagsKey = pick(obj, 'tags', 'labels');
    const tagsValue = obj[tagsKey];
    const labelName = isObject(tagsValue) ? tagsValue['__name__'] : undefined;
    const prometheus = this.prometheus || (tagsKey === 'labels' && labelName !== undefined);

    // Name: metric_id, then name, then the Prometheus __name__ label.
    let nameKey = pick(obj, 'metric_id', 'name');
    let name = obj[nameKey];
    if ((name === undefined || name === null) && typeof labelName === 'string') {
      nameKey = `${tagsKey}.__name__`;
      name = labelName;
    }
    if (typeof name !== 'string' || name.length === 0) {
      this.reject(
        'VIGIL_ERR_DECODE_NAME',
        name === undefined || name === null ? 'expected a metric name in "metric_id" or "name", found neither' : `expected "${nameKey}" to be a non-empty string, got ${describe(name)}`,
      );
      return;
    }
    const limits = this.ctx.limits;
    if (name.length > limits.maxMetricNameLength) {
      this.reject('VIGIL_ERR_LIMIT_NAME', `"${nameKey}" is ${String(name.length)} characters, over limits.maxMetricNameLength = ${String(limits.maxMetricNameLength)}`);
      return;
    }

    const rawValue = obj['value'];
    const value =
      typeof rawValue === 'number' ? rawValue : typeof rawValue === 'string' ? parseDecimal(rawValue, 0, rawValue.length) : NaN;
    if (!Number.isFinite(value)) {
      this.reject(
        'VIGIL_ERR_DECODE_VALUE',
        rawValue === undefined
          ? 'expected "value" (a finite number or numeric string), found none'
          : `expected "value" to be a finite number or numeric string, got ${describe(rawValue)}`,
      );
      return;
    }

    const typeKey = pick(obj, 'metric_type', 'type');
    const rawType = obj[typeKey];
    let type: MetricTypeCode;
    if (rawType === undefined || rawType === null) {
      type = prometheus && hasCounterSuffix(name) ? MetricType.counter : MetricType.gauge;
    } else if (rawType === 'gauge' || rawType === 'untyped') {
      type = MetricType.gauge;
    } else if (rawType === 'counter') {
      type = MetricType.counter;
    } else {
      this.reject('VIGIL_ERR_DECODE_TYPE', `expected "${typeKey}" to be "gauge", "counter" or "untyped", got ${describe(rawType)}`);
      return;
    }

    let tsKey = pick(obj, 'timestamp', 'time');
    if (tsKey === 'time') tsKey = pick(obj, 'time', 'ts');
    const tsMs = parseTimestamp(obj[tsKey], this.ctx);
    if (typeof tsMs === 'string') {
      const present = obj[tsKey] !== undefined && obj[tsKey] !== null;
      this.reject('VIGIL_ERR_DECODE_TIMESTAMP', present ? `"${tsKey}": ${tsMs}` : `no "timestamp" and the ${tsMs}`);
      return;
    }

    const tags: string[] = [];
    if (tagsValue !== undefined && tagsValue !== null) {
      if (!isObject(tagsValue)) {
        this.reject('VIGIL_ERR_DECODE_TAGS', `expected "${tagsKey}" to be a flat object of strings, got ${describe(tagsValue)}`);
        return;
      }
      for (const key in tagsValue) {
        const raw = tagsValue[key];
        if (key === '__name__') {
          // The Prometheus name label is the metric name, never a tag.
          if (typeof raw === 'string') continue;
          this.reject('VIGIL_ERR_DECODE_TAGS', `expected "${tagsKey}.__name__" to be a string, got ${describe(raw)}`);
          return;
        }
        let tagValue: string;
        if (typeof raw === 'string') tagValue = raw;
        else if (typeof raw === 'number' && Number.isFinite(raw)) tagValue = String(raw);
        else if (typeof raw === 'boolean') tagValue = raw ? 'true' : 'false';
        else {
          this.reject(
            'VIGIL_ERR_DECODE_TAGS',
            `expected "${tagsKey}.${key}" to be a string, finite number or boolean, got ${describe(raw)}`,
          );
          return;
        }
        if (key.length === 0) {
          this.reject('VIGIL_ERR_DECODE_TAGS', `expected every key of "${tagsKey}" to be non-empty`);
          return;
        }
        // Prometheus: a label with an empty value is the same as no label.
        if (prometheus && tagValue.length === 0) continue;
        const over = tagLimit(limits, tags.length / 2, key, tagValue);
        if (over) {
          this.reject('VIGIL_ERR_LIMIT_TAGS', `"${tagsKey}": ${over}`);
          return;
        }
        tags.push(key, tagValue);
      }
    }

    const refused = this.points.point(name, tags, value, tsMs, type, pointIndex);
    if (refused !== null) this.reject('VIGIL_ERR_DECODE_TENANT', refused);
  }

  private reject(code: DecodeErrorCode, reason: string): void {
    switch (this.where) {
      case WHOLE:
        this.rejects.reject(code, reason, {});
        return;
      case ELEMENT: {
        const bytes = reencode(this.elementValue);
        this.rejects.reject(code, `element ${String(this.element)}: ${reason}`, bytes ? { bytes, element: this.element } : { element: this.element });
        return;
      }
      case LINE:
        this.rejects.reject(code, `line ${String(this.line)}: ${reason}`, {
          bytes: utf8Encoder.encode(this.lineText),
          line: this.line,
        });
        return;
    }
  }
}

/**
 * An element's JSON text again, for its dead letter; undefined when it cannot be re-encoded
 * (JSON.stringify recurses, and nesting deeper than the stack throws): the letter then carries the
 * whole message instead.
 */
function reencode(value: unknown): Uint8Array | undefined {
  try {
    return utf8Encoder.encode(JSON.stringify(value));
  } catch {
    return undefined;
  }
}

/** True when text has a second non-blank line (cheap: stops at the second one). */
function hasSeveralLines(text: string): boolean {
  let seen = 0;
  let start = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    const end = nl === -1 ? text.length : nl;
    if (!isBlankRange(text, start, end) && ++seen === 2) return true;
    if (nl === -1) return false;
    start = nl + 1;
  }
}
