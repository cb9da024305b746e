import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Forecaster, initForecast } from '../models/forecast.js';
import { LstmForecaster, normalise } from '../models/lstm/index.js';
import { loadLstm } from '../models/lstm-detector.js';
import { Seasonal, SEASONAL_DEFAULTS } from '../models/statistical.js';
import { defaultLabelledOptions, labelledWorkload } from './anomalies.js';
import { CORPUS_SHAPES, realisticCorpus } from './corpus.js';

/**
 * Forecast accuracy (issue 17): the shard's forecaster (models/forecast.ts) against the plain
 * baselines of the field, in the same run, on the labelled corpora the detectors are measured on
 * (their incidents included: a forecast meets them too).
 *
 * Every series is run bucket by bucket through the seasonal detector and the forecaster, as a
 * shard runs it; from forecast origins every 12 hours (once the series has `--warmup-days`), each
 * method forecasts the next `--horizon-hours` and is compared with what came:
 * - seasonal naive: the value one day earlier (and one week earlier, where the history has it);
 * - naive: the last value; drift: the last value plus the history's mean step (Hyndman & Athanasopoulos, FPP3 §5.2).
 * Reported per series group: MAE relative to the daily seasonal naive (< 1 is better), MASE
 * (MAE over the in-sample MAE of the one-step daily seasonal naive, Hyndman & Koehler 2006), and
 * the share of actual values inside the forecaster's 80 % and 95 % intervals.
 *
 * `npm run bench:forecast -- [--seeds 4,5,6] [--horizon-hours 24] [--warmup-days 7] [--lstm DIR]`
 */

interface Series {
  group: string;
  widthMs: number;
  /** Bucket start of index 0 and the values (NaN: no bucket). */
  startMs: number;
  values: Float64Array;
}

interface Tally {
  absErr: Record<string, number>;
  n: number;
  in80: number;
  in95: number;
  mase: Record<string, number>;
  maseN: number;
}

const METHODS = ['vigil', 'snaive-day', 'snaive-week', 'naive', 'drift', 'lstm'] as const;

function corpusSeries(seed: number): Series[] {
  const corpus = realisticCorpus(seed);
  const by = new Map<string, Series>();
  const startMs = Math.min(...corpus.rows.map((r) => r.tsMs));
  const n = 14 * 288;
  for (const r of corpus.rows) {
    let s = by.get(r.series);
    if (!s) by.set(r.series, (s = { group: corpus.shapes.get(r.series) ?? '', widthMs: corpus.widthMs, startMs, values: new Float64Array(n).fill(Number.NaN) }));
    const i = Math.round((r.tsMs - startMs) / corpus.widthMs);
    // A repeated hour (clock change): the first measurement of a bucket stands.
    if (i < n && Number.isNaN(s.values[i] as number)) s.values[i] = r.value;
  }
  return [...by.values()];
}

function syntheticSeries(seed: number): Series[] {
  const o = defaultLabelledOptions({ seed, series: 30, buckets: 9 * 1440 });
  const w = labelledWorkload(o);
  return w.series.map((s, i) => ({ group: i % 3 === 2 ? 'synthetic-flat' : 'synthetic-daily', widthMs: o.widthMs, startMs: o.startMs, values: s.values }));
}

/**
 * `--lstm DIR`: the LSTM `vigil train` wrote, forecasting the horizon recursively (each step's
 * forecast fed back as the next input) from the state it carried through the history, the series
 * normalised by its first `warmupDays` (median and MAD, as training normalises).
 */
function run(series: Series, horizonHours: number, warmupDays: number, tallies: Map<string, Tally>, lstm: LstmForecaster | null): void {
  const seasonal = new Seasonal(SEASONAL_DEFAULTS);
  const forecaster = new Forecaster(seasonal);
  const s = seasonal.init();
  const f = initForecast(seasonal.periods);
  const w = series.widthMs;
  const v = series.values;
  const day = Math.round(86_400_000 / w);
  const week = 7 * day;
  const horizon = Math.round((horizonHours * 3_600_000) / w);
  const every = Math.round((12 * 3_600_000) / w);
  const tally = tallies.get(series.group) ?? { absErr: Object.fromEntries(METHODS.map((m) => [m, 0])), n: 0, in80: 0, in95: 0, mase: Object.fromEntries(METHODS.map((m) => [m, 0])), maseN: 0 };
  tallies.set(series.group, tally);
  let first = -1;
  const norm = lstm ? normalise(v.slice(0, warmupDays * day)) : null;
  const state = lstm?.initState();
  let next = Number.NaN;
  const recursive = new Float64Array(horizon + 1);
  for (let t = 0; t < v.length; t++) {
    const x = v[t] as number;
    if (!Number.isNaN(x)) {
      const tsMs = series.startMs + t * w;
      seasonal.step(s, { tsMs, widthMs: w, value: x, count: 1, min: x, max: x, std: 0 });
      forecaster.step(f, s, tsMs, w, x);
      if (first < 0) first = t;
      if (lstm && state && norm) next = lstm.step(state, (x - norm.median) / norm.scale);
    }
    // Origins: after bucket t, every 12 h from the warm-up on, with the whole horizon inside the series.
    if (t < warmupDays * day || (t + 1) % every !== 0 || t + horizon >= v.length || Number.isNaN(x)) continue;
    const fc = forecaster.forecast(f, s, w, { horizonMs: horizon * w, stepMs: w });
    if (lstm && state && norm) {
      const copy = state.slice();
      recursive[1] = next;
      for (let h = 2; h <= horizon; h++) recursive[h] = lstm.step(copy, recursive[h - 1] as number);
      for (let h = 1; h <= horizon; h++) recursive[h] = norm.median + norm.scale * (recursive[h] as number);
    }
    // In-sample scale: one-step daily seasonal naive over the history.
    let scale = 0;
    let scaleN = 0;
    for (let i = first + day; i <= t; i++) {
      const a = v[i] as number;
      const b = v[i - day] as number;
      if (!Number.isNaN(a) && !Number.isNaN(b)) {
        scale += Math.abs(a - b);
        scaleN++;
      }
    }
    scale = scaleN > 0 ? scale / scaleN : Number.NaN;
    const lastStep = (x - (v[first] as number)) / Math.max(1, t - first);
    const err: Record<string, number> = Object.fromEntries(METHODS.map((m) => [m, 0]));
    let n = 0;
    for (let h = 1; h <= horizon; h++) {
      const actual = v[t + h] as number;
      const p = fc.points[h - 1];
      if (Number.isNaN(actual) || !p) continue;
      // A seasonal naive takes the last season's value at the same phase (NaN there: the one before).
      const snaive = (m: number): number => {
        for (let back = m * Math.ceil(h / m); t + h - back >= 0; back += m) {
          const y = v[t + h - back] as number;
          if (!Number.isNaN(y)) return y;
        }
        return x;
      };
      const pred: Record<string, number> = { vigil: p.value, 'snaive-day': snaive(day), 'snaive-week': t + h - week >= first ? snaive(week) : snaive(day), naive: x, drift: x + h * lastStep, lstm: lstm ? (recursive[h] as number) : 0 };
      for (const m of METHODS) err[m] = (err[m] as number) + Math.abs(actual - (pred[m] as number));
      if (actual >= p.lower80 && actual <= p.upper80) tally.in80++;
      if (actual >= p.lower95 && actual <= p.upper95) tally.in95++;
      n++;
    }
    if (n === 0) continue;
    tally.n += n;
    for (const m of METHODS) tally.absErr[m] = (tally.absErr[m] as number) + (err[m] as number);
    if (scale > 0) {
      for (const m of METHODS) tally.mase[m] = (tally.mase[m] as number) + (err[m] as number) / n / scale;
      tally.maseN++;
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seeds: { type: 'string', default: '4,5,6' }, 'horizon-hours': { type: 'string', default: '24' }, 'warmup-days': { type: 'string', default: '7' }, lstm: { type: 'string' }, out: { type: 'string', default: 'bench/results' } } });
  const lstm = values.lstm ? new LstmForecaster((await loadLstm(values.lstm)).weights) : null;
  const seeds = (values.seeds ?? '4,5,6').split(',').map(Number);
  const horizonHours = Number(values['horizon-hours']);
  const warmupDays = Number(values['warmup-days']);
  const perSeed: { seed: number; groups: Record<string, Tally> }[] = [];
  const started = process.hrtime.bigint();
  for (const seed of seeds) {
    const tallies = new Map<string, Tally>();
    for (const s of corpusSeries(seed)) run(s, horizonHours, warmupDays, tallies, lstm);
    // The synthetic workload is 9 days: origins from day 3 (two days of daily warm-up and one of forecasts' own).
    for (const s of syntheticSeries(seed)) run(s, horizonHours, Math.min(warmupDays, 3), tallies, lstm);
    perSeed.push({ seed, groups: Object.fromEntries(tallies) });
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const groups = [...CORPUS_SHAPES, 'synthetic-daily', 'synthetic-flat', 'all'];
  const stat = (g: string, pick: (t: Tally) => number): string => {
    const xs = perSeed.map((p) => {
      if (g !== 'all') return pick(p.groups[g] as Tally);
      const all = Object.values(p.groups).reduce<Tally>(
        (a, t) => ({
          absErr: Object.fromEntries(METHODS.map((m) => [m, (a.absErr[m] as number) + (t.absErr[m] as number)])),
          n: a.n + t.n,
          in80: a.in80 + t.in80,
          in95: a.in95 + t.in95,
          mase: Object.fromEntries(METHODS.map((m) => [m, (a.mase[m] as number) + (t.mase[m] as number)])),
          maseN: a.maseN + t.maseN,
        }),
        { absErr: Object.fromEntries(METHODS.map((m) => [m, 0])), n: 0, in80: 0, in95: 0, mase: Object.fromEntries(METHODS.map((m) => [m, 0])), maseN: 0 },
      );
      return pick(all);
    });
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    return xs.length > 1 ? `${mean.toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : mean.toFixed(2);
  };
  const lines = [
    `# Forecast accuracy, ${horizonHours} h ahead (bench/forecast.ts; seeds ${seeds.join(', ')}; mean (min–max) over seeds)`,
    '',
    'MAE relative to the daily seasonal naive (below 1: better than it); MASE (scaled by the in-sample one-step daily seasonal naive); interval coverage of Vigil\'s forecasts.',
    '',
    `| series | Vigil MAE / snaive-day | snaive-week | naive | drift${lstm ? ' | LSTM (recursive)' : ''} | MASE Vigil | MASE snaive-day | 80 % covered | 95 % covered |`,
    `|---|---|---|---|---|${lstm ? '---|' : ''}---|---|---|---|`,
  ];
  const rel = (m: string) => (t: Tally) => (t.absErr[m] as number) / (t.absErr['snaive-day'] as number);
  for (const g of groups) {
    lines.push(`| ${g} | ${stat(g, rel('vigil'))} | ${stat(g, rel('snaive-week'))} | ${stat(g, rel('naive'))} | ${stat(g, rel('drift'))}${lstm ? ` | ${stat(g, rel('lstm'))}` : ''} | ${stat(g, (t) => (t.mase['vigil'] as number) / t.maseN)} | ${stat(g, (t) => (t.mase['snaive-day'] as number) / t.maseN)} | ${stat(g, (t) => (100 * t.in80) / t.n)} % | ${stat(g, (t) => (100 * t.in95) / t.n)} % |`);
  }
  lines.push('', `${(ms / 1000).toFixed(1)} s in all.`);
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  mkdirSync(values.out ?? 'bench/results', { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(values.out ?? 'bench/results', `forecast-${stamp}.md`), text);
  writeFileSync(join(values.out ?? 'bench/results', `forecast-${stamp}.json`), JSON.stringify({ seeds, horizonHours, warmupDays, perSeed }, null, 2));
}

await main();
