/**
 * Influx line protocol (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/):
 *
 *   measurement[,tag=v...] field=v[,field2=v2...] [timestamp]
 *
 * A hand scanner over the decoded string (charCodeAt, no regex): this is the hot path for Telegraf.
 * Each line is parsed completely before any of its points is emitted, so a line is all-or-nothing,
 * as in InfluxDB. A line's fields are held in reusable scratch arrays until its timestamp is known.
 */
import type { DecodeContext, DecodeErrorCode, PointSink, RejectSink } from './types.js';
import { MetricType, stableTags } from './types.js';
import { checkTimestamp, epochStringToMs, inRange, parseTimestamp } from './timestamp.js';
import { parseDecimal, quote, skipDigits, tagLimit, utf8Encoder } from './text.js';

const TAB = 0x09;
const CR = 0x0d;
const SPACE = 0x20;
const QUOTE = 0x22;
const HASH = 0x23;
const COMMA = 0x2c;
const MINUS = 0x2d;
const ZERO = 0x30;
const EQUALS = 0x3d;
const BACKSLASH = 0x5c;
const LOWER_I = 0x69;
const LOWER_U = 0x75;

const INT64_MAX = '9223372036854775807';
const INT64_MIN_ABS = '9223372036854775808';
const UINT64_MAX = '18446744073709551615';

/**
 * Series sections (`measurement[,tag=v...]`, no backslash) already parsed, and what they parsed
 * to. Telegraf repeats the same few thousand sections in every message; a known one costs a slice
 * and a lookup instead of scanning and checking every tag. Its tags array is handed out again for
 * every line of it (sinks only read it), which also lets the ingest stage find its series by the
 * array itself (workers/ingest.ts). Limits are checked again on a hit: a task may carry others.
 */
interface Section {
  measurement: string;
  tags: string[];
  /** The longest tag key and value, for the limits. */
  maxKey: number;
  maxValue: number;
}
const SECTION_CACHE_MAX = 100_000;
const sections = new Map<string, Section>();

/** Test hook: forget every cached section (a fresh thread has none). */
export function clearSectionCache(): void {
  sections.clear();
}

function withinLimits(hit: Section, limits: DecodeContext['limits']): boolean {
  return hit.tags.length / 2 <= limits.maxTagsPerPoint && hit.maxKey <= limits.maxTagKeyLength && hit.maxValue <= limits.maxTagValueLength;
}

/** Decodes text[from, ...) as line protocol; `from` skips a BOM without shifting line numbers. */
export function decodeInflux(text: string, from: number, ctx: DecodeContext, points: PointSink, rejects: RejectSink): void {
  new LineDecoder(text, ctx, points, rejects).decode(from);
}

class LineDecoder {
  private pointIndex = 0;
  // The line being parsed: text[lineStart, end), `pos` the scan position.
  private lineNo = 0;
  private lineStart = 0;
  private end = 0;
  private pos = 0;
  private sawBackslash = false;
  // What the line parsed to.
  private measurement = '';
  private tags: string[] = [];
  private readonly fieldNames: string[] = [];
  private readonly fieldValues: number[] = [];
  private fieldCount = 0;
  private tsStart = -1;
  private tsMs = 0;
  // Why it did not parse.
  private errCode: DecodeErrorCode = 'VIGIL_ERR_DECODE_LINE_PROTOCOL';
  private errReason = '';
  private errAt = 0;

  constructor(
    private readonly text: string,
    private readonly ctx: DecodeContext,
    private readonly points: PointSink,
    private readonly rejects: RejectSink,
  ) {}

  decode(from: number): void {
    const text = this.text;
    let start = from;
    for (;;) {
      const nl = text.indexOf('\n', start);
      const lineEnd = nl === -1 ? text.length : nl;
      this.lineNo++;
      this.decodeLine(start, lineEnd > start && text.charCodeAt(lineEnd - 1) === CR ? lineEnd - 1 : lineEnd);
      if (nl === -1) break;
      start = nl + 1;
    }
    // Every message yields points or a dead letter: one of comments alone is set aside, not skipped unseen.
    if (this.pointIndex === 0) this.rejects.reject('VIGIL_ERR_DECODE_EMPTY', 'message contains only blank and comment lines', {});
  }

  private decodeLine(start: number, end: number): void {
    const text = this.text;
    let i = start;
    while (i < end && (text.charCodeAt(i) === SPACE || text.charCodeAt(i) === TAB)) i++;
    if (i === end || text.charCodeAt(i) === HASH) return; // blank or comment

    this.lineStart = start;
    this.end = end;
    this.pos = i;
    if (!this.parseLine()) {
      // A line that does not parse counts as one candidate: its field count is unknowable.
      this.pointIndex++;
      this.rejectLine(this.errCode, this.errReason, this.errAt);
      return;
    }
    // From here the line parsed, so each numeric field holds its index even if the line is then
    // rejected for its timestamp (which depends on the clock, not on the bytes).
    const first = this.pointIndex;
    this.pointIndex += this.fieldCount;

    const tsMs =
      this.tsStart < 0
        ? parseTimestamp(undefined, this.ctx)
        : inRange(this.tsMs, this.ctx)
          ? this.tsMs
          : checkTimestamp(this.tsMs, this.ctx, `timestamp ${text.slice(this.tsStart, this.end).trimEnd()}`);
    if (typeof tsMs === 'string') {
      if (this.tsStart < 0) this.rejectLine('VIGIL_ERR_DECODE_TIMESTAMP', `no timestamp and the ${tsMs}`, -1);
      else this.rejectLine('VIGIL_ERR_DECODE_TIMESTAMP', tsMs, this.tsStart);
      return;
    }
    const { fieldNames, fieldValues, tags } = this;
    for (let k = 0; k < this.fieldCount; k++) {
      // k < fieldCount, so both scratch slots were written for this line.
      // Every field of a line has the line's tags: a refused tenant claim is refused at the first.
      const refused = this.points.point(fieldNames[k]!, tags, fieldValues[k]!, tsMs, MetricType.gauge, first + k);
      if (refused !== null) {
        this.rejectLine('VIGIL_ERR_DECODE_TENANT', refused, -1);
        return;
      }
    }
  }

  /** `at` is an index into text (reported as an offset in the line), or -1 for the whole line. */
  private rejectLine(code: DecodeErrorCode, reason: string, at: number): void {
    const where = at < 0 ? `line ${String(this.lineNo)}` : `line ${String(this.lineNo)}, offset ${String(at - this.lineStart)}`;
    this.rejects.reject(code, `${where}: ${reason}`, {
      bytes: utf8Encoder.encode(this.text.slice(this.lineStart, this.end)),
      line: this.lineNo,
    });
  }

  /** Records why the line is bad and where (`at`, an index into text); always returns false. */
  private fail(code: DecodeErrorCode, reason: string, at: number): false {
    this.errCode = code;
    this.errReason = reason;
    this.errAt = at;
    return false;
  }

  private parseLine(): boolean {
    const text = this.text;
    const end = this.end;

    const mStart = this.pos;
    // The series section ends at the first space; one with a backslash takes the full scan.
    let sectionEnd = mStart;
    for (; sectionEnd < end; sectionEnd++) {
      const c = text.charCodeAt(sectionEnd);
      if (c === SPACE) break;
      if (c === BACKSLASH) {
        sectionEnd = -1;
        break;
      }
    }
    const sectionKey = sectionEnd > mStart && sectionEnd < end ? text.slice(mStart, sectionEnd) : null;
    const hit = sectionKey === null ? undefined : sections.get(sectionKey);
    if (hit && withinLimits(hit, this.ctx.limits)) {
      this.measurement = hit.measurement;
      this.tags = hit.tags;
      this.pos = sectionEnd;
    } else {
      this.scanName(false);
      if (this.pos === mStart) return this.fail('VIGIL_ERR_DECODE_NAME', 'expected a measurement name', mStart);
      this.measurement = this.sawBackslash ? this.unescape(mStart, this.pos, false) : text.slice(mStart, this.pos);

      this.tags = []; // handed to the sink, so never reused across lines (but kept by the section cache)
      while (this.pos < end && text.charCodeAt(this.pos) === COMMA) {
        this.pos++;
        if (!this.parseTag()) return false;
      }
      if (sectionKey !== null && this.pos === sectionEnd) {
        let maxKey = 0;
        let maxValue = 0;
        for (let j = 0; j < this.tags.length; j += 2) {
          maxKey = Math.max(maxKey, (this.tags[j] as string).length);
          maxValue = Math.max(maxValue, (this.tags[j + 1] as string).length);
        }
        if (sections.size >= SECTION_CACHE_MAX) sections.clear();
        sections.set(sectionKey, { measurement: this.measurement, tags: this.tags, maxKey, maxValue });
        stableTags.add(this.tags);
      }
    }

    if (this.pos >= end) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', 'expected a space and a field set (key=value) after the measurement', end);
    }
    this.skipSpaces();
    const fieldsStart = this.pos;
    if (fieldsStart >= end) return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', 'expected a field set (key=value)', end);
    this.fieldCount = 0;
    for (;;) {
      if (!this.parseField()) return false;
      if (this.pos < end && text.charCodeAt(this.pos) === COMMA) this.pos++;
      else break;
    }

    this.tsStart = -1;
    this.skipSpaces();
    if (this.pos < end) {
      const tsStart = this.pos;
      while (this.pos < end && text.charCodeAt(this.pos) !== SPACE) this.pos++;
      const ms = epochStringToMs(text, tsStart, this.pos, false);
      if (Number.isNaN(ms)) {
        return this.fail(
          'VIGIL_ERR_DECODE_TIMESTAMP',
          `expected an integer epoch timestamp after the field set, got ${quote(text.slice(tsStart, this.pos))}`,
          tsStart,
        );
      }
      this.skipSpaces();
      if (this.pos < end) return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', 'expected the end of the line after the timestamp', this.pos);
      this.tsStart = tsStart;
      this.tsMs = ms;
    }

    if (this.fieldCount === 0) {
      return this.fail('VIGIL_ERR_DECODE_VALUE', 'expected at least one numeric or boolean field; string fields are not points', fieldsStart);
    }
    return true;
  }

  /**
   * A tag or field key and the "=" after it; leaves `pos` after the "=". Sets `keyStart`,
   * `keyEnd` and `keyEscaped`; false (with the error set) when the key is empty or has no "=".
   */
  private keyStart = 0;
  private keyEnd = 0;
  private keyEscaped = false;

  private scanKey(what: 'tag key' | 'field key', missing: string): boolean {
    const text = this.text;
    const kStart = this.pos;
    this.scanName(true);
    const kEnd = this.pos;
    this.keyStart = kStart;
    this.keyEnd = kEnd;
    this.keyEscaped = this.sawBackslash;
    if (kEnd === kStart) return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', missing, kStart);
    if (kEnd >= this.end || text.charCodeAt(kEnd) !== EQUALS) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', `expected "=" after ${what} ${quote(text.slice(kStart, kEnd))}`, kEnd);
    }
    this.pos++;
    return true;
  }

  /** `key=value` after a comma in the tag set. */
  private parseTag(): boolean {
    const text = this.text;
    const end = this.end;
    if (!this.scanKey('tag key', 'expected a tag key after ","')) return false;
    const { keyStart: kStart, keyEnd: kEnd, keyEscaped } = this;
    const vStart = this.pos;
    this.scanName(true);
    const vEnd = this.pos;
    if (vEnd === vStart) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', `expected a value for tag ${quote(text.slice(kStart, kEnd))}`, vStart);
    }
    if (vEnd < end && text.charCodeAt(vEnd) === EQUALS) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', `expected "=" in the value of tag ${quote(text.slice(kStart, kEnd))} to be escaped as "\\="`, vEnd);
    }
    const key = keyEscaped ? this.unescape(kStart, kEnd, true) : text.slice(kStart, kEnd);
    const value = this.sawBackslash ? this.unescape(vStart, vEnd, true) : text.slice(vStart, vEnd);
    const tags = this.tags;
    for (let j = 0; j < tags.length; j += 2) {
      if (tags[j] === key) return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', `expected tag keys to be unique, ${quote(key)} repeats`, kStart);
    }
    const over = tagLimit(this.ctx.limits, tags.length / 2, key, value);
    if (over) return this.fail('VIGIL_ERR_LIMIT_TAGS', over, kStart);
    tags.push(key, value);
    return true;
  }

  /** `key=value` in the field set; numeric and boolean values go to the scratch arrays. */
  private parseField(): boolean {
    const text = this.text;
    const end = this.end;
    if (!this.scanKey('field key', 'expected a field key')) return false;
    const { keyStart: kStart, keyEnd: kEnd, keyEscaped } = this;
    const vStart = this.pos;
    const first = vStart < end ? text.charCodeAt(vStart) : SPACE;
    if (first === SPACE || first === COMMA) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', `expected a value for field ${quote(text.slice(kStart, kEnd))}`, vStart);
    }
    if (first === QUOTE) return this.skipStringValue(kStart, kEnd);

    while (this.pos < end) {
      const c = text.charCodeAt(this.pos);
      if (c === COMMA || c === SPACE) break;
      this.pos++;
    }
    const value = this.fieldValue(vStart, this.pos, kStart, kEnd);
    if (Number.isNaN(value)) return false;

    const key = keyEscaped ? this.unescape(kStart, kEnd, true) : text.slice(kStart, kEnd);
    const name = key === 'value' ? this.measurement : `${this.measurement}.${key}`;
    const limits = this.ctx.limits;
    if (name.length > limits.maxMetricNameLength) {
      return this.fail('VIGIL_ERR_LIMIT_NAME', `the metric name is ${String(name.length)} characters, over limits.maxMetricNameLength = ${String(limits.maxMetricNameLength)}`, kStart);
    }
    if (this.fieldCount >= limits.maxFieldsPerLine) {
      return this.fail('VIGIL_ERR_LIMIT_FIELDS', `more than limits.maxFieldsPerLine = ${String(limits.maxFieldsPerLine)} numeric or boolean fields`, kStart);
    }
    this.fieldNames[this.fieldCount] = name;
    this.fieldValues[this.fieldCount] = value;
    this.fieldCount++;
    return true;
  }

  /** Steps over a quoted string value (escapes `\"` and `\\`); string fields are not points. */
  private skipStringValue(kStart: number, kEnd: number): boolean {
    const text = this.text;
    const end = this.end;
    const open = this.pos;
    let i = open + 1;
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c === BACKSLASH) i += 2;
      else if (c === QUOTE) break;
      else i++;
    }
    if (i >= end) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', `expected a closing '"' for the string value of field ${quote(text.slice(kStart, kEnd))}`, open);
    }
    this.pos = i + 1;
    if (this.pos < end && text.charCodeAt(this.pos) !== COMMA && text.charCodeAt(this.pos) !== SPACE) {
      return this.fail('VIGIL_ERR_DECODE_LINE_PROTOCOL', 'expected "," or a space after the closing \'"\'', this.pos);
    }
    return true;
  }

  /** A numeric or boolean field value → number; NaN (with the failure recorded) when invalid. */
  private fieldValue(start: number, end: number, kStart: number, kEnd: number): number {
    const text = this.text;
    const last = text.charCodeAt(end - 1);
    if (last === LOWER_I || last === LOWER_U) {
      const v = this.integerValue(start, end - 1, last === LOWER_I);
      if (!Number.isNaN(v)) return v;
    } else {
      const first = text.charCodeAt(start) | 0x20; // lower-cased
      if (first === 0x74 || first === 0x66) {
        switch (text.slice(start, end)) {
          case 't': case 'T': case 'true': case 'True': case 'TRUE': return 1;
          case 'f': case 'F': case 'false': case 'False': case 'FALSE': return 0;
        }
      }
      const v = parseDecimal(text, start, end);
      if (Number.isFinite(v)) return v;
      if (!Number.isNaN(v)) {
        this.fail('VIGIL_ERR_DECODE_VALUE', `expected field ${quote(text.slice(kStart, kEnd))} to be within the float64 range, got ${quote(text.slice(start, end))}`, start);
        return NaN;
      }
    }
    this.fail(
      'VIGIL_ERR_DECODE_VALUE',
      `expected field ${quote(text.slice(kStart, kEnd))} to be a float (1.5), integer (1i), unsigned (1u), boolean or "string", got ${quote(text.slice(start, end))}`,
      start,
    );
    return NaN;
  }

  /** Digits in text[start, end) (the i/u suffix already cut) within int64 / uint64; NaN otherwise. */
  private integerValue(start: number, end: number, signed: boolean): number {
    const text = this.text;
    const negative = signed && text.charCodeAt(start) === MINUS;
    const digitsStart = negative ? start + 1 : start;
    if (digitsStart === end || skipDigits(text, digitsStart, end) !== end) return NaN;
    let sig = digitsStart;
    while (sig < end - 1 && text.charCodeAt(sig) === ZERO) sig++;
    const limit = signed ? (negative ? INT64_MIN_ABS : INT64_MAX) : UINT64_MAX;
    const n = end - sig;
    // Equal-length digit strings compare like the numbers they spell.
    if (n > limit.length || (n === limit.length && text.slice(sig, end) > limit)) return NaN;
    return Number(text.slice(start, end));
  }

  /** Advances pos to the first unescaped `,` or space (or `=` when stopAtEquals), or the line end. */
  private scanName(stopAtEquals: boolean): void {
    const text = this.text;
    const end = this.end;
    let i = this.pos;
    let sawBackslash = false;
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c === BACKSLASH) {
        // Whatever follows a backslash is part of the name, never a delimiter.
        sawBackslash = true;
        i += 2;
      } else if (c === COMMA || c === SPACE || (stopAtEquals && c === EQUALS)) break;
      else i++;
    }
    this.pos = i > end ? end : i;
    this.sawBackslash = sawBackslash;
  }

  /**
   * text[start, end) with `\,` `\ ` `\\` (and `\=` when equalsEscapes: keys and tag values) turned
   * into the character; any other backslash is literal, as the line-protocol reference says.
   */
  private unescape(start: number, end: number, equalsEscapes: boolean): string {
    const text = this.text;
    let out = '';
    let run = start;
    for (let i = start; i < end - 1; i++) {
      if (text.charCodeAt(i) !== BACKSLASH) continue;
      const next = text.charCodeAt(i + 1);
      if (next === COMMA || next === SPACE || next === BACKSLASH || (equalsEscapes && next === EQUALS)) {
        out += text.slice(run, i);
        run = i + 1;
      }
      i++; // the escaped character is taken as is
    }
    return out + text.slice(run, end);
  }

  private skipSpaces(): void {
    while (this.pos < this.end && this.text.charCodeAt(this.pos) === SPACE) this.pos++;
  }
}
