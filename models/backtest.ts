import { readFileSync } from 'node:fs';
import { VigilError } from '../core/errors.js';
import type { Observation } from './detector.js';
import { DETECTORS, Ensemble, type EnsembleScore, type EnsembleSettings, type SeriesModels } from './ensemble.js';
import { COST_PROFILES, evaluate, windowedScore, type LabelSpan, type Quality, type WindowedScore } from './evaluate.js';
import type { LstmWeights } from './lstm/index.js';

/**
 * `vigil backtest`: a CSV of (timestamp, value) rows, one series or several with a `series`
 * column, run through the same Ensemble the shard threads use, in the same streaming order (by
 * timestamp; each row is one closed bucket, rows sharing a series and timestamp one bucket), one
 * output row per input row in input order. With a `label` column (non-empty = anomalous row)
 * it also reports event-wise precision, recall, F1 and delay (models/evaluate.ts).
 */
export interface BacktestRow {
  series: string;
  tsMs: number;
  value: number;
  label: string;
}

export interface BacktestResult {
  rows: number;
  series: number;
  widthMs: Map<string, number>;
  quality: Quality | null;
  /** With labels: the windowed event score (models/evaluate.ts) under both cost profiles. */
  windowed: Record<keyof typeof COST_PROFILES, WindowedScore> | null;
  /** Time spent in the ensemble's steps alone (the scoring cost a shard thread pays). */
  stepNs: number;
}

/** Timestamps: RFC 3339, or epoch seconds / milliseconds (by magnitude). */
function parseTime(text: string, line: number): number {
  const t = text.trim();
  if (/^-?\d+(\.\d+)?$/.test(t)) {
    const n = Number(t);
    return Math.abs(n) < 1e11 ? n * 1000 : n;
  }
  const ms = Date.parse(t.includes('T') || t.endsWith('Z') ? t : t.replace(' ', 'T') + 'Z');
  if (Number.isNaN(ms)) throw new VigilError('VIGIL_ERR_BACKTEST_INPUT', `line ${line}: timestamp ${JSON.stringify(text)} is neither RFC 3339 nor epoch seconds/milliseconds`);
  return ms;
}

function splitCsv(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quoted && c === '"' && line[i + 1] === '"') {
      cur += '"';
      i++;
    } else if (c === '"') quoted = !quoted;
    else if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function parseBacktestCsv(text: string): BacktestRow[] {
  const lines = text.split(/\r?\n/);
  const first = splitCsv(lines[0] ?? '').map((h) => h.trim().toLowerCase());
  const hasHeader = first.some((h) => h === 'value' || h === 'timestamp');
  const col = (name: string, fallback: number): number => (hasHeader ? first.indexOf(name) : fallback);
  const tsCol = col('timestamp', 0);
  const valueCol = col('value', 1);
  const seriesCol = col('series', -1);
  const labelCol = col('label', -1);
  if (tsCol < 0 || valueCol < 0) throw new VigilError('VIGIL_ERR_BACKTEST_INPUT', `line 1: the header needs "timestamp" and "value" columns (got ${first.join(',')})`);
  const rows: BacktestRow[] = [];
  for (let i = hasHeader ? 1 : 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === '') continue;
    const cells = splitCsv(line);
    const raw = cells[valueCol];
    const value = raw === undefined || raw.trim() === '' ? Number.NaN : Number(raw);
    if (Number.isNaN(value)) throw new VigilError('VIGIL_ERR_BACKTEST_INPUT', `line ${i + 1}: value ${JSON.stringify(raw ?? '')} is not a number`);
    rows.push({
      series: seriesCol >= 0 ? (cells[seriesCol] ?? '').trim() : '',
      tsMs: parseTime(cells[tsCol] ?? '', i + 1),
      value,
      label: labelCol >= 0 ? (cells[labelCol] ?? '').trim() : '',
    });
  }
  return rows;
}

/** Bucket width of a series: the median spacing of its timestamps. */
function medianSpacing(ts: number[]): number {
  const d: number[] = [];
  for (let i = 1; i < ts.length; i++) d.push((ts[i] as number) - (ts[i - 1] as number));
  d.sort((a, b) => a - b);
  return d.length ? Math.max(1, d[d.length >> 1] as number) : 60_000;
}

/** Label spans: runs of consecutive labelled rows of a series (a change of label starts a new span). */
export function labelSpans(rows: readonly BacktestRow[], widthMs: ReadonlyMap<string, number>): LabelSpan[] {
  const spans: LabelSpan[] = [];
  const open = new Map<string, LabelSpan>();
  for (const r of rows) {
    const cur = open.get(r.series);
    const width = widthMs.get(r.series) ?? 60_000;
    const contiguous = cur && r.label === cur.kind && r.tsMs <= cur.endMs + width;
    if (r.label && contiguous) cur.endMs = r.tsMs + width;
    else if (r.label) {
      const span = { series: r.series, kind: r.label, startMs: r.tsMs, endMs: r.tsMs + width };
      spans.push(span);
      open.set(r.series, span);
    } else open.delete(r.series);
  }
  return spans;
}

export interface BacktestOptions {
  settings: EnsembleSettings;
  lstm?: { weights: LstmWeights; validationRmse: number } | null | undefined;
  /** Called once per input row with its score (its bucket's), in input order, after scoring. */
  onRow?: (row: BacktestRow, score: EnsembleScore) => void;
}

/**
 * Scores the rows as the shard threads score closed buckets: per series in timestamp order. Rows
 * of one series with the same timestamp (a repeated daylight-saving hour, duplicates) are one
 * bucket, as the pipeline would aggregate them (mean, min, max, count, spread), scored once; each
 * of them gets that bucket's score. `onRow` is called once per input row, in input order.
 */
export function backtest(rows: BacktestRow[], options: BacktestOptions): BacktestResult {
  const bySeries = new Map<string, number[]>();
  const buckets = new Map<string, number[]>();
  rows.forEach((r, i) => {
    let list = bySeries.get(r.series);
    if (!list) bySeries.set(r.series, (list = []));
    const key = `${r.series}\u0000${r.tsMs}`;
    const bucket = buckets.get(key);
    if (bucket) bucket.push(i);
    else {
      buckets.set(key, [i]);
      list.push(r.tsMs);
    }
  });
  const widthMs = new Map<string, number>();
  for (const [s, ts] of bySeries) widthMs.set(s, medianSpacing(ts.sort((a, b) => a - b)));
  // Streaming order: by timestamp, then by where the bucket first appears in the input.
  const ordered = [...buckets.values()].sort((a, b) => (rows[a[0] as number] as BacktestRow).tsMs - (rows[b[0] as number] as BacktestRow).tsMs || (a[0] as number) - (b[0] as number));

  const ensemble = new Ensemble(options.settings, options.lstm?.weights ?? null, options.lstm?.validationRmse ?? 1);
  const state = new Map<string, SeriesModels>();
  const scores: EnsembleScore[] = new Array<EnsembleScore>(rows.length);
  const scored: { series: string; tsMs: number; flagged: boolean }[] = [];
  let stepNs = 0;
  const obs: Observation = { tsMs: 0, widthMs: 0, value: 0, count: 1, min: 0, max: 0, std: 0 };
  for (const bucket of ordered) {
    const first = rows[bucket[0] as number] as BacktestRow;
    let m = state.get(first.series);
    if (!m) state.set(first.series, (m = ensemble.init()));
    let sum = 0;
    let sumsq = 0;
    obs.min = Infinity;
    obs.max = -Infinity;
    for (const i of bucket) {
      const v = (rows[i] as BacktestRow).value;
      sum += v;
      sumsq += v * v;
      if (v < obs.min) obs.min = v;
      if (v > obs.max) obs.max = v;
    }
    obs.tsMs = first.tsMs;
    obs.widthMs = widthMs.get(first.series) as number;
    obs.count = bucket.length;
    obs.value = sum / bucket.length;
    obs.std = Math.sqrt(Math.max(0, sumsq / bucket.length - obs.value * obs.value));
    const t0 = process.hrtime.bigint();
    const score = ensemble.step(m, obs);
    stepNs += Number(process.hrtime.bigint() - t0);
    scored.push({ series: first.series, tsMs: first.tsMs, flagged: score.anomaly });
    for (const i of bucket) scores[i] = score;
  }
  if (options.onRow) rows.forEach((r, i) => options.onRow?.(r, scores[i] as EnsembleScore));
  const labelled = rows.some((r) => r.label !== '');
  const width = [...widthMs.values()].sort((a, b) => a - b)[widthMs.size >> 1] ?? 60_000;
  const spans = labelled ? labelSpans(sortedByTime(rows), widthMs) : [];
  return {
    rows: rows.length,
    series: state.size,
    widthMs,
    quality: labelled ? evaluate(scored, spans, width) : null,
    windowed: labelled
      ? { fewFalsePositives: windowedScore(scored, spans, width, COST_PROFILES.fewFalsePositives), fewMisses: windowedScore(scored, spans, width, COST_PROFILES.fewMisses) }
      : null,
    stepNs,
  };
}

/** The rows in timestamp order (input order among equal timestamps), as label spans are read. */
function sortedByTime(rows: readonly BacktestRow[]): BacktestRow[] {
  return rows
    .map((r, i) => [r, i] as const)
    .sort((a, b) => a[0].tsMs - b[0].tsMs || a[1] - b[1])
    .map(([r]) => r);
}

/** The output CSV's header; `backtestLine` writes one row of it. */
export const BACKTEST_HEADER = ['series', 'timestamp', 'value', 'score', 'anomaly', 'expected', 'lower', 'upper', ...DETECTORS, 'explanation'].join(',');

export function backtestLine(r: BacktestRow, s: EnsembleScore): string {
  const num = (x: number): string => (Number.isFinite(x) ? String(Math.round(x * 1e6) / 1e6) : '');
  const explanation = `"${JSON.stringify(s.explanation).replaceAll('"', '""')}"`;
  return [r.series, new Date(r.tsMs).toISOString(), num(r.value), num(s.score), s.anomaly ? 1 : 0, num(s.expected), num(s.lower), num(s.upper), ...DETECTORS.map((d) => num(s.scores[d])), explanation].join(',');
}

export function readBacktestCsv(path: string): BacktestRow[] {
  try {
    return parseBacktestCsv(readFileSync(path, 'utf8'));
  } catch (err) {
    if (err instanceof VigilError) throw err;
    throw new VigilError('VIGIL_ERR_BACKTEST_INPUT', `${path}: ${(err as Error).message}`, { cause: err });
  }
}
