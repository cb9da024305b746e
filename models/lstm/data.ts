/**
 * Training data helpers: per-series robust normalisation, and a reader for `timestamp,value[,series]`
 * CSV files (the `vigil backtest` input shape).
 */
import { readFile } from 'node:fs/promises';
import { VigilError } from '../../core/errors.js';

/** Normal-consistency factor of the MAD: 1.4826·MAD estimates σ for Gaussian data. */
const MAD_TO_SIGMA = 1.4826;
/** Normal-consistency factor of the mean absolute deviation: √(π/2). */
const MEAN_AD_TO_SIGMA = Math.sqrt(Math.PI / 2);
/** Scales below this fraction of |median| are treated as zero spread. */
const RELATIVE_EPSILON = 1e-6;

export interface Normalised {
  /** (value − median) / scale; non-finite inputs stay NaN. */
  values: Float64Array;
  median: number;
  scale: number;
}

/**
 * Robust per-series normalisation: median and 1.4826·MAD over the finite values. When more than
 * half the values are equal (a mostly-idle counter) the MAD is 0, so the scale falls back to the
 * mean absolute deviation; it is floored at 1e-6·|median|, and a constant series gets scale 1.
 */
export function normalise(values: ArrayLike<number>): Normalised {
  const finite: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isFinite(v)) finite.push(v);
  }
  if (finite.length === 0) throw new VigilError('VIGIL_ERR_MODEL_TRAIN', 'cannot normalise a series with no finite values');
  const sorted = Float64Array.from(finite).sort();
  const median = medianOfSorted(sorted);
  const deviations = sorted.map((v) => Math.abs(v - median)).sort();
  const floor = RELATIVE_EPSILON * Math.abs(median);
  let scale = MAD_TO_SIGMA * medianOfSorted(deviations);
  if (scale <= floor) scale = (MEAN_AD_TO_SIGMA * deviations.reduce((a, b) => a + b, 0)) / deviations.length;
  if (scale <= floor) scale = floor;
  if (!(scale > 0)) scale = 1;
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    out[i] = Number.isFinite(v) ? (v - median) / scale : Number.NaN;
  }
  return { values: out, median, scale };
}

function medianOfSorted(a: Float64Array): number {
  const mid = a.length >> 1;
  return a.length % 2 === 1 ? a[mid]! : (a[mid - 1]! + a[mid]!) / 2;
}

/** Series name used for rows of a two-column CSV. */
export const DEFAULT_SERIES = 'default';

/** Reads a `timestamp,value[,series]` CSV file; see `parseSeriesCsv`. */
export async function readSeriesCsv(path: string): Promise<Map<string, Float64Array>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new VigilError('VIGIL_ERR_BACKTEST_INPUT', `cannot read ${path}`, { cause: err });
  }
  return parseSeriesCsv(text, path);
}

/**
 * Parses `timestamp,value[,series]` rows into one value array per series, ordered by timestamp
 * (stable for equal timestamps). The header is optional: a first row whose value column is not a
 * number is one, and its names (`timestamp`/`ts`/`time`, `value`, `series`) locate the columns.
 * Timestamps are numbers or anything `Date.parse` reads; an empty or `NaN` value is a gap (NaN).
 * Blank lines and lines starting with `#` are skipped; fields may be double-quoted.
 */
export function parseSeriesCsv(text: string, source = 'csv'): Map<string, Float64Array> {
  const lines = text.split(/\r?\n/);
  let cols = { ts: 0, value: 1, series: 2 };
  const rows = new Map<string, { ts: number; value: number }[]>();
  let first = true;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    if (line.trim() === '' || line.startsWith('#')) continue;
    const fields = splitCsvLine(line, source, n + 1);
    if (first) {
      first = false;
      const rawValue = fields[cols.value]?.trim() ?? '';
      if (rawValue !== '' && Number.isNaN(Number(rawValue)) && rawValue.toLowerCase() !== 'nan') {
        cols = headerColumns(fields);
        continue;
      }
    }
    const rawTs = fields[cols.ts]?.trim() ?? '';
    const ts = rawTs !== '' && Number.isFinite(Number(rawTs)) ? Number(rawTs) : Date.parse(rawTs);
    if (!Number.isFinite(ts)) throw dataError(source, n + 1, `timestamp ${JSON.stringify(rawTs)} is neither a number nor a date`);
    const rawValue = fields[cols.value]?.trim();
    if (rawValue === undefined) throw dataError(source, n + 1, 'missing value column');
    const value = rawValue === '' ? Number.NaN : Number(rawValue);
    if (Number.isNaN(value) && rawValue !== '' && rawValue.toLowerCase() !== 'nan') throw dataError(source, n + 1, `value ${JSON.stringify(rawValue)} is not a number`);
    const series = fields[cols.series]?.trim() || DEFAULT_SERIES;
    let list = rows.get(series);
    if (!list) rows.set(series, (list = []));
    list.push({ ts, value });
  }
  const out = new Map<string, Float64Array>();
  for (const [series, list] of rows) {
    list.sort((a, b) => a.ts - b.ts);
    out.set(series, Float64Array.from(list, (r) => r.value));
  }
  return out;
}

function headerColumns(fields: string[]): { ts: number; value: number; series: number } {
  const names = fields.map((f) => f.trim().toLowerCase());
  const find = (candidates: string[], fallback: number): number => {
    const i = names.findIndex((name) => candidates.includes(name));
    return i >= 0 ? i : fallback;
  };
  return { ts: find(['timestamp', 'ts', 'time'], 0), value: find(['value'], 1), series: find(['series'], 2) };
}

function splitCsvLine(line: string, source: string, lineNo: number): string[] {
  if (!line.includes('"')) return line.split(',');
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      fields.push(field);
      field = '';
    } else field += ch;
  }
  if (quoted) throw dataError(source, lineNo, 'unterminated quoted field');
  fields.push(field);
  return fields;
}

function dataError(source: string, line: number, message: string): VigilError {
  return new VigilError('VIGIL_ERR_BACKTEST_INPUT', `${source}:${line}: ${message}`);
}
