import { describe, expect, it } from 'vitest';
import { defaultLabelledOptions, labelledWorkload, workloadCsv } from '../../../bench/anomalies.js';
import { backtest, parseBacktestCsv } from '../../../models/backtest.js';
import { CALM_BUCKETS, DEFAULT_ENSEMBLE, Ensemble, type DetectorName, type EnsembleScore, type EnsembleSettings } from '../../../models/ensemble.js';
import { likelihoodScore, TailCalibrator } from '../../../models/calibration.js';
import { NOT_READY, normalTail, type Observation, type Score } from '../../../models/detector.js';
import { IsolationForest } from '../../../models/iforest.js';
import type { LstmWeights } from '../../../models/lstm/index.js';
import { Ewma, EWMA_DEFAULTS, ROBUST_DEFAULTS, RobustZ, Seasonal, SEASONAL_DEFAULTS } from '../../../models/statistical.js';
import { rng } from '../../../bench/generator.js';
import { evaluate } from '../../../models/evaluate.js';
import { isVigilError } from '../../../core/errors.js';
import { ReferenceResolution } from '../../helpers/resolution.js';

describe('evaluate', () => {
  it('counts an event detected by a flag in its span or grace, and each run of flags outside as one false alarm', () => {
    const W = 60_000;
    const flags = (series: string, idx: number[]) => Array.from({ length: 100 }, (_, i) => ({ series, tsMs: i * W, flagged: idx.includes(i) }));
    const q = evaluate(
      [...flags('a', [10, 52, 53, 54, 80]), ...flags('b', [])],
      [
        { series: 'a', kind: 'spike', startMs: 10 * W, endMs: 11 * W },
        { series: 'a', kind: 'dropout', startMs: 40 * W, endMs: 50 * W },
        { series: 'b', kind: 'spike', startMs: 20 * W, endMs: 21 * W },
      ],
      W,
      3,
    );
    // a/52 is within the dropout's grace (50..52): detected with delay 12; 53-54 and 80 are two false alarms.
    expect(q).toMatchObject({ events: 3, detected: 2, falseAlarms: 2, falseBuckets: 3 });
    expect(q.byKind['dropout']).toMatchObject({ detected: 1, meanDelayBuckets: 12 });
    expect(q.recall).toBeCloseTo(2 / 3, 9);
    expect(q.precision).toBeCloseTo(2 / 4, 9);
  });
});

describe('ensemble on the labelled workload', () => {
  const w = labelledWorkload(defaultLabelledOptions({ series: 9, seed: 7 }));
  const rows = parseBacktestCsv(workloadCsv(w));

  it('reaches the quality target at default settings (F1 >= 0.85 here, fewer than 1 false bucket per 1,000)', () => {
    const scored: { series: string; tsMs: number; flagged: boolean }[] = [];
    backtest(rows, { settings: DEFAULT_ENSEMBLE, onRow: (r, s) => scored.push({ series: r.series, tsMs: r.tsMs, flagged: s.anomaly }) });
    const labels = w.labels.map((l) => ({ series: `s${l.series}`, kind: l.kind, startMs: l.startMs, endMs: l.endMs }));
    const q = evaluate(scored, labels, w.options.widthMs);
    expect(q.f1).toBeGreaterThanOrEqual(0.85);
    expect(q.fpPerThousand).toBeLessThan(1);
    expect(q.byKind['spike']?.recall).toBe(1);
  });

  it('explains a spike: expected value, band and the detectors that drove it', () => {
    const e = new Ensemble();
    const m = e.init();
    let r = e.step(m, { tsMs: 0, widthMs: 60_000, value: 10, count: 1, min: 10, max: 10, std: 0 });
    for (let i = 1; i < 1600; i++) r = e.step(m, { tsMs: i * 60_000, widthMs: 60_000, value: 10 + Math.sin(i), count: 1, min: 0, max: 0, std: 0 });
    expect(r.anomaly).toBe(false);
    r = e.step(m, { tsMs: 1600 * 60_000, widthMs: 60_000, value: 40, count: 1, min: 40, max: 40, std: 0 });
    expect(r.anomaly).toBe(true);
    expect(r.explanation.drivers).toContain('robust');
    expect(r.expected).toBeGreaterThan(8);
    expect(r.upper).toBeLessThan(40);
    // The per-series state is plain data: it survives a structured clone (a worker hand-over).
    expect(structuredClone(m).robust.sorted.length).toBe(DEFAULT_ENSEMBLE.robust.window);
  });

  it('flags a series that resumes after a dropout, naming the gap', () => {
    const e = new Ensemble();
    const m = e.init();
    for (let i = 0; i < 1500; i++) e.step(m, { tsMs: i * 60_000, widthMs: 60_000, value: 5 + (i % 3), count: 1, min: 0, max: 0, std: 0 });
    const r = e.step(m, { tsMs: 1512 * 60_000, widthMs: 60_000, value: 6, count: 1, min: 6, max: 6, std: 0 });
    expect(r.anomaly).toBe(true);
    expect(r.explanation.gap).toEqual({ missingBuckets: 12 });
  });
});

describe('backtest CSV', () => {
  it('reads header-less two-column files with epoch seconds and names the line of a bad value', () => {
    const rows = parseBacktestCsv('1700000000,1.5\n1700000060,2\n');
    expect(rows).toEqual([
      { series: '', tsMs: 1_700_000_000_000, value: 1.5, label: '' },
      { series: '', tsMs: 1_700_000_060_000, value: 2, label: '' },
    ]);
    let err: unknown;
    try {
      parseBacktestCsv('timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,abc\n');
    } catch (e) {
      err = e;
    }
    expect(isVigilError(err, 'VIGIL_ERR_BACKTEST_INPUT')).toBe(true);
    expect((err as Error).message).toContain('line 3');
  });
});

// ---------------------------------------------------------------------------------------------
// The combination rules of DESIGN.md §8 and issue 14, checked against the statistical detectors run
// on their own, the likelihood calibrator (models/calibration.ts, tested on its own) and a
// reservoir-sampled forest built here from IsolationForest.

const W = 3_600_000;
const bucket = (i: number, value: number): Observation => ({ tsMs: i * W, widthMs: W, value, count: 1, min: value, max: value, std: 0 });
/** A learning period of 30 buckets, so that the short scenarios below see episodes start. */
const withSettings = (over: Partial<EnsembleSettings>): EnsembleSettings => ({ ...DEFAULT_ENSEMBLE, learningBuckets: LEARNING_BUCKETS, ...over });
/** Three decimals, as explanations show numbers; likelihoods to three significant digits. */
const r3 = (x: number): number => Number(x.toFixed(3));
const sig3 = (x: number): number => Number(x.toPrecision(3));
/** Buckets the ensemble's robust detector learns before it (and the gap rule) starts. */
const WARMUP = 30;
const LEARNING_BUCKETS = 30;

/**
 * The shard forest as documented: reservoir sampling (Algorithm R) driven by Marsaglia's xorshift32,
 * a fit once `samples` rows are in and then every `refitEvery` rows; a row's deviation is 0 at the
 * median reservoir score and 3.29 at the 99.9th percentile, never below 0.
 */
class ReferenceForest {
  private readonly rows: Float64Array[] = [];
  private seen = 0;
  private sinceFit = 0;
  private x: number;
  private forest: IsolationForest | null = null;
  private mid = 0;
  private high = 0;
  fits = 0;

  constructor(private readonly o: EnsembleSettings['iforest']) {
    this.x = o.seed >>> 0 || 1;
  }

  get fitted(): boolean {
    return this.forest !== null;
  }

  private uniform(): number {
    let x = this.x;
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    this.x = x;
    return x / 2 ** 32;
  }

  z(row: Float64Array): number {
    const f = this.forest as IsolationForest;
    return Math.max(0, (3.29 * (f.scoreSamples(row) - this.mid)) / Math.max(this.high - this.mid, 1e-9));
  }

  learn(row: Float64Array): void {
    this.seen++;
    if (this.rows.length < this.o.reservoir) this.rows.push(row);
    else {
      const j = Math.floor(this.uniform() * this.seen);
      if (j < this.o.reservoir) this.rows[j] = row;
    }
    this.sinceFit++;
    if (this.forest ? this.sinceFit >= this.o.refitEvery : this.rows.length >= this.o.samples) this.fit();
  }

  private fit(): void {
    const n = this.rows.length;
    const data = new Float64Array(n * 4);
    this.rows.forEach((r, i) => data.set(r, i * 4));
    this.forest = IsolationForest.fit(data, n, 4, { nEstimators: this.o.trees, maxSamples: this.o.samples, seed: this.o.seed + this.seen });
    const scores = Array.from(this.forest.score(data, n)).sort((a, b) => a - b);
    this.mid = scores[Math.floor(n / 2)]!;
    // The 99.9th percentile: the largest score below 1,000 rows, one from the top from 1,001 rows on.
    this.high = scores[Math.min(n - 1, Math.floor(0.999 * n))]!;
    this.sinceFit = 0;
    this.fits++;
  }
}

/** The decimal step of a value, as documented for scaleFloor: 1 for integers, else the largest 10^-k it is a multiple of. */
function decimalStep(x: number): number {
  for (let k = 0; k <= 12; k++) {
    const y = x * 10 ** k;
    if (Math.abs(y - Math.round(y)) <= 1e-6 * Math.max(1, Math.abs(y) * 1e-3)) return 10 ** -k;
  }
  return 1e-12;
}

/** What `Ensemble.step` should return, from the detectors run on their own and the rules above. */
function referenceEnsemble(settings: EnsembleSettings): { step: (o: Observation) => EnsembleScore; forest: ReferenceForest } {
  const on = (d: DetectorName): boolean => settings.detectors.includes(d);
  const robust = new RobustZ({ ...ROBUST_DEFAULTS, ...settings.robust });
  const ewma = new Ewma({ ...EWMA_DEFAULTS, ...settings.ewma });
  const seasonal = new Seasonal({ ...SEASONAL_DEFAULTS, ...settings.seasonal });
  const [rs, es, ss] = [robust.init(), ewma.init(), seasonal.init()];
  const forest = new ReferenceForest(settings.iforest);
  const calibrator = new TailCalibrator();
  const tails = new Map<DetectorName, Float32Array>(['robust', 'ewma', 'seasonal', 'iforest'].map((d) => [d as DetectorName, calibrator.init()]));
  const errors = new Map<DetectorName, { mae: number; n: number }>();
  /** Per detector: the rate of alarm onsets (p < 1e-5 after none), starting at the budget 1.5e-3, over 2016 buckets. */
  const alarms = new Map<DetectorName, { rate: number; on: boolean }>();
  const calibration = (d: DetectorName, p: number): number => {
    let a = alarms.get(d);
    if (!a) alarms.set(d, (a = { rate: 1.5e-3, on: false }));
    const factor = Math.min(1, 1.5e-3 / a.rate);
    a.rate += ((p < 1e-5 && !a.on ? 1 : 0) - a.rate) / 2016;
    a.on = p < 1e-5;
    return factor;
  };
  const recent: number[] = [];
  const resolution = new ReferenceResolution(decimalStep);
  let lastTs = Number.NaN;
  let firstTs = Number.NaN;
  let calm = Infinity;
  let gateRate = 0;
  let n = 0;
  const evidence = (p: number): number => (p > 0 ? Math.min(50, -Math.log10(p)) : 50);
  /** Weight 1 / (MAE + floor)² as of before the bucket; the MAE learns |error| clipped to 5·MAE + floor, over ~50 buckets. */
  const weigh = (d: DetectorName, e: number, floor: number): number => {
    let x = errors.get(d);
    if (!x) errors.set(d, (x = { mae: e, n: 1 }));
    const w = 1 / (x.mae + floor) ** 2;
    x.mae += Math.max(1 / 50, 1 / (x.n + 1)) * (Math.min(e, 5 * x.mae + floor) - x.mae);
    x.n++;
    return w;
  };
  const step = (o: Observation): EnsembleScore => {
    const missing = n >= WARMUP ? Math.round((o.tsMs - lastTs) / o.widthMs) - 1 : 0;
    const r = robust.step(rs, o);
    const e = ewma.step(es, o);
    const se = on('seasonal') ? seasonal.step(ss, o) : NOT_READY;
    const quantum = resolution.quantum;
    const floor = quantum < Infinity ? Math.max(quantum, 1e-9 * Math.abs(o.value), 1e-12) : Math.max(1e-3 * Math.abs(o.value), 1e-6);
    const scores = { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 };
    const weights = { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 };
    const detectors: Partial<Record<DetectorName, Record<string, number>>> = {};
    let gate = 0;
    let sum = 0;
    let weighted = 0;
    let count = 0;
    let best: Score | null = null;
    let bestWeight = 0;
    for (const [name, s] of [
      ['robust', r],
      ['ewma', e],
      ['seasonal', se],
    ] as const) {
      if (!on(name) || !s.ready) continue;
      const cal = calibrator.step(tails.get(name)!, 0, s.drivers['z']!);
      gate = Math.max(gate, cal.score);
      const w = calibration(name, cal.p) * weigh(name, Math.abs(o.value - s.expected), floor);
      scores[name] = cal.score;
      weights[name] = w;
      weighted += w * evidence(cal.p);
      sum += w;
      count++;
      detectors[name] = { score: r3(cal.score), ...Object.fromEntries(Object.entries(s.drivers).map(([k, v]) => [k, r3(v)])), p: sig3(cal.p) };
      if (w > bestWeight) [best, bestWeight] = [s, w];
    }
    let features: Record<string, number> | undefined;
    if (on('iforest') && r.ready) {
      const clip = (x: number): number => (Number.isFinite(x) ? Math.min(50, Math.max(-50, x)) : 0);
      const chain = [o.value, ...recent.slice(-5).reverse()];
      let sq = 0;
      for (let i = 1; i < chain.length; i++) sq += (chain[i - 1]! - chain[i]!) ** 2;
      const residual = se.ready ? se : e;
      const row = Float64Array.of(
        clip(r.drivers['z']!),
        clip((o.value - recent.at(-1)!) / rs.scale),
        clip(residual.ready ? residual.drivers['z']! : 0),
        clip(Math.log(Math.sqrt(sq / (chain.length - 1)) / rs.scale + 1e-3)),
      );
      // The forest scores only what a cheap detector already finds unusual, unless it runs alone.
      const open = gate >= 0.2 || settings.detectors.length === 1;
      const wasFitted = forest.fitted;
      const z = wasFitted && open ? forest.z(row) : Number.NaN;
      forest.learn(row);
      if (wasFitted) {
        gateRate += ((open ? 1 : 0) - gateRate) / Math.min(n + 1, 2016);
        let p = 1;
        if (!Number.isNaN(z)) p = Math.min(1, calibrator.step(tails.get('iforest')!, 0, z).p * Math.max(gateRate, 1 / 2016));
        const w = count > 0 ? (0.5 * sum) / count : 1;
        scores.iforest = likelihoodScore(p);
        weights.iforest = w;
        weighted += w * evidence(p);
        sum += w;
        count++;
        detectors.iforest = { score: r3(scores.iforest), ...(Number.isNaN(z) ? {} : { z: r3(z), p: sig3(p) }) };
        features = { level: r3(row[0]!), change: r3(row[1]!), residual: r3(row[2]!), spread: r3(row[3]!) };
      }
    }
    recent.push(o.value);
    if (n === 0) firstTs = o.tsMs;
    n++;
    lastTs = o.tsMs;
    resolution.see(o.value);

    const gap = missing >= 5 ? Math.min(1, missing / 10) : 0;
    const score = Math.max(sum > 0 ? likelihoodScore(10 ** -(weighted / sum)) : 0, gap);
    let anomaly = false;
    if (score >= settings.threshold) {
      anomaly = calm >= CALM_BUCKETS && o.tsMs - firstTs >= settings.learningBuckets * W;
      calm = 0;
    } else if (calm < CALM_BUCKETS) calm++;
    for (const [name, d] of Object.entries(detectors)) d['weight'] = r3(weights[name as DetectorName] / sum);
    const band = best ?? (e.ready ? e : r);
    return {
      score,
      anomaly,
      ready: count > 0,
      expected: band.expected,
      lower: band.lower,
      upper: band.upper,
      scores,
      explanation: {
        drivers: [
          ...(['robust', 'ewma', 'seasonal', 'iforest'] as const).filter((d) => detectors[d] && scores[d] >= settings.threshold / 2 && weights[d] >= 0.1 * sum),
          ...(gap >= settings.threshold / 2 ? ['gap' as const] : []),
        ],
        detectors,
        ...(gap > 0 ? { gap: { missingBuckets: missing } } : {}),
        ...(features ? { features } : {}),
      },
    };
  };
  return { step, forest };
}

/** A noisy series with a 20-bucket square season, spikes and dips, a level shift and two gaps (4 and 7 missing buckets). */
function series(seed: number, length = 260): Observation[] {
  const r = rng(seed);
  const out: Observation[] = [];
  for (let i = 0; i < length; i++) {
    if ((i > 150 && i <= 154) || (i > 200 && i <= 207)) continue;
    let v = (i % 20 < 10 ? 100 : 130) + (r() + r() + r() - 1.5) * 4 + (i > 230 ? 25 : 0);
    if (i % 37 === 36) v += 15 + 40 * r();
    if (i % 53 === 52) v -= 10 + 20 * r();
    out.push(bucket(i, Math.round(v * 100) / 100));
  }
  return out;
}

function expectSameScore(got: EnsembleScore, want: EnsembleScore, where: string): void {
  expect(got.score, where).toBeCloseTo(want.score, 12);
  expect({ ...got, score: 0, scores: { ...got.scores, iforest: 0 } }, where).toEqual({ ...want, score: 0, scores: { ...want.scores, iforest: 0 } });
  expect(got.scores.iforest, where).toBeCloseTo(want.scores.iforest, 12);
  // The explanation is stored as JSON text: its key order is part of the result too.
  if (got.scores.iforest === want.scores.iforest) expect(JSON.stringify(got.explanation), where).toBe(JSON.stringify(want.explanation));
}

describe('Ensemble against its detectors run on their own', () => {
  const forest = { trees: 10, samples: 16, refitEvery: 8, reservoir: 24, seed: 3 };
  const seasonal = { periodsMs: [20 * W], maxSlots: 4 };
  const cases: [string, Partial<EnsembleSettings>][] = [
    ['all four', { detectors: ['robust', 'ewma', 'seasonal', 'iforest'], seasonal, iforest: forest }],
    ['the forest alone (always scored)', { detectors: ['iforest'], iforest: forest }],
    ['robust and the forest', { detectors: ['robust', 'iforest'], iforest: { ...forest, seed: 0 } }],
    ['ewma and the forest, threshold 0.3', { detectors: ['ewma', 'iforest'], threshold: 0.3, iforest: forest }],
    ['robust and ewma, window 16 (a forest configured but not listed stays out)', { detectors: ['robust', 'ewma'], robust: { window: 16 }, ewma: { alpha: 0.3 }, iforest: forest }],
    ['seasonal (two periods, one exact) and ewma, threshold 0.4', { detectors: ['ewma', 'seasonal'], threshold: 0.4, seasonal: { periodsMs: [20 * W, 5 * W], maxSlots: 10 } }],
    ['robust alone, threshold 1.01: scores only', { detectors: ['robust'], threshold: 1.01 }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: scores, weights, band, drivers, features, gaps and onsets bucket by bucket`, () => {
      const settings = withSettings(over);
      const e = new Ensemble(settings);
      const m = e.init();
      const ref = referenceEnsemble(settings);
      let onsets = 0;
      let above = 0;
      for (const o of series(11)) {
        const want = ref.step(o);
        expectSameScore(e.step(m, o), want, `bucket ${o.tsMs / W}`);
        if (want.anomaly) onsets++;
        if (want.score >= settings.threshold) above++;
      }
      // The scenario exercises what it claims: onsets, and buckets over the threshold that are not
      // onsets; refits when the forest takes part.
      if (settings.threshold <= 1) {
        expect(onsets).toBeGreaterThan(0);
        expect(above).toBeGreaterThan(onsets);
      }
      if (settings.detectors.includes('iforest')) expect(ref.forest.fits).toBeGreaterThan(10);
    });
  }

  it('calibrates on the 99.9th percentile of a reservoir of more than 1,000 rows', () => {
    const settings = withSettings({ detectors: ['iforest'], iforest: { trees: 4, samples: 1100, refitEvery: 100_000, reservoir: 1100, seed: 5 } });
    const e = new Ensemble(settings);
    const m = e.init();
    const ref = referenceEnsemble(settings);
    const r = rng(5);
    let scored = 0;
    for (let i = 0; i < WARMUP + 1200; i++) {
      const o = bucket(i, Math.round((50 + (r() - 0.5) * 10 + (i % 97 === 96 ? 30 : 0)) * 1000) / 1000);
      const want = ref.step(o);
      expectSameScore(e.step(m, o), want, `bucket ${i}`);
      if (want.scores.iforest > 0 && want.scores.iforest < 1) scored++;
    }
    expect(ref.forest.fits).toBe(1);
    expect(scored).toBeGreaterThan(0);
  });
});

describe('Ensemble rules at their edges', () => {
  const steady = (n: number, from = 0): Observation[] => Array.from({ length: n }, (_, k) => bucket(from + k, 10 + ((from + k) % 3)));

  it('is not ready and scores 0 before any detector warms up', () => {
    const e = new Ensemble();
    const m = e.init();
    expect(m).toEqual({
      robust: m.robust,
      ewma: m.ewma,
      seasonal: m.seasonal,
      lstm: null,
      lstmForecast: Number.NaN,
      lstmResidualVar: 1,
      tails: new Float32Array(4 * new TailCalibrator().size),
      // The last 5 values, then per detector its error and buckets, then its alarm rate and state.
      numbers: Float64Array.of(...new Array<number>(5).fill(Number.NaN), ...new Array<number>(10).fill(0), 1.5e-3, 0, 1.5e-3, 0, 1.5e-3, 0, 1.5e-3, 0, 1.5e-3, 0),
      calm: Infinity,
      gateRate: 0,
      quantum: Infinity,
      quantumFiner: 0,
      n: 0,
      firstTsMs: Number.NaN,
      lastTsMs: Number.NaN,
    });
    const r = e.step(m, bucket(0, 10));
    expect(r).toEqual({ score: 0, anomaly: false, ready: false, expected: Number.NaN, lower: Number.NaN, upper: Number.NaN, scores: { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 }, explanation: { drivers: [], detectors: {} } });
    expect(Array.from(m.numbers.subarray(0, 5))).toEqual([10, Number.NaN, Number.NaN, Number.NaN, Number.NaN]);
    expect([m.n, m.firstTsMs, m.lastTsMs, m.quantum]).toEqual([1, 0, 0, 1]);
  });

  it('runs only the detectors it needs: the forest needs robust and ewma, the LSTM robust', () => {
    const counts = (detectors: DetectorName[]): number[] => {
      const e = new Ensemble(withSettings({ detectors }));
      const m = e.init();
      for (const o of steady(3)) e.step(m, o);
      return [m.robust.n, m.ewma.n, m.seasonal.n];
    };
    expect(counts(['robust'])).toEqual([3, 0, 0]);
    expect(counts(['ewma'])).toEqual([0, 3, 0]);
    expect(counts(['seasonal'])).toEqual([0, 0, 3]);
    expect(counts(['iforest'])).toEqual([3, 3, 0]);
    expect(counts(['lstm'])).toEqual([3, 0, 0]);
  });

  it('a gap counts only after the warm-up: 5 missing buckets score 0.5, 10 or more score 1', () => {
    const after = (warm: number, missing: number, threshold = 0.6): EnsembleScore => {
      const e = new Ensemble(withSettings({ detectors: ['robust'], threshold }));
      const m = e.init();
      for (const o of steady(warm)) e.step(m, o);
      return e.step(m, bucket(warm + missing, 11));
    };
    expect(after(WARMUP - 1, 12).explanation).toEqual({ drivers: [], detectors: {} });
    expect(after(WARMUP, 4).explanation.gap).toBeUndefined();
    const five = after(WARMUP, 5);
    expect(five.score).toBe(0.5);
    expect(five.anomaly).toBe(false);
    expect(five.explanation.gap).toEqual({ missingBuckets: 5 });
    expect(five.explanation.drivers).toEqual(['gap']);
    expect(after(WARMUP, 7).score).toBe(0.7);
    expect(after(WARMUP, 12)).toMatchObject({ score: 1, anomaly: true });
    // 'gap' drives at half the threshold and above.
    expect(after(WARMUP, 5, 1).explanation.drivers).toEqual(['gap']);
    expect(after(WARMUP, 5, 1.01).explanation).toMatchObject({ drivers: [], gap: { missingBuckets: 5 } });
  });

  it('an episode starts at a score at or above the threshold, once per episode, not in the learning period; a driver is at or above half of it', () => {
    const run = (threshold: number, warm = 40): EnsembleScore => {
      const e = new Ensemble(withSettings({ detectors: ['robust', 'ewma'], threshold }));
      const m = e.init();
      for (const o of steady(warm)) e.step(m, o);
      return e.step(m, bucket(warm, 14));
    };
    const base = run(0.9);
    const { robust, ewma } = base.scores;
    expect(ewma).toBeGreaterThan(robust);
    expect(base.score).toBeGreaterThan(robust);
    expect(base.score).toBeLessThan(ewma);
    expect(run(base.score).anomaly).toBe(true);
    expect(run(base.score + 1e-9).anomaly).toBe(false);
    // In the learning period the score is there but no episode starts; it counts buckets of the
    // series' width from its first bucket, whatever that bucket's timestamp.
    const learning = (learningBuckets: number, at: number, from = 7): EnsembleScore => {
      const e = new Ensemble(withSettings({ detectors: ['robust', 'ewma'], threshold: base.score, learningBuckets }));
      const m = e.init();
      for (const o of steady(at - from, from)) e.step(m, o);
      return e.step(m, bucket(at, 14));
    };
    expect(learning(80, 7 + 79).score).toBeGreaterThanOrEqual(base.score);
    expect(learning(80, 7 + 79).anomaly).toBe(false);
    expect(learning(80, 7 + 80).anomaly).toBe(true);
    expect(run(2 * robust).explanation.drivers).toEqual(['robust', 'ewma']);
    expect(run(2 * robust + 1e-9).explanation.drivers).toEqual(['ewma']);

    // Onsets: a bucket over the threshold within CALM_BUCKETS buckets below it of the last one continues the episode.
    const e = new Ensemble(withSettings({ detectors: ['robust'], threshold: 0.5 }));
    const m = e.init();
    for (const o of steady(40)) e.step(m, o);
    let calm = Infinity;
    let continued = 0;
    let onsets = 0;
    for (let i = 40; i < 40 + 4 * CALM_BUCKETS; i++) {
      // Spikes at 40, 40 + CALM_BUCKETS (too soon: the sustained deviation keeps two buckets after a spike over the threshold) and 40 + 3·CALM_BUCKETS.
      const spike = i === 40 || i === 40 + CALM_BUCKETS || i === 40 + 3 * CALM_BUCKETS;
      const r = e.step(m, bucket(i, spike ? 1000 : 10 + (i % 3)));
      if (spike) expect(r.score, `bucket ${i}`).toBeGreaterThanOrEqual(0.5);
      const over = r.score >= 0.5;
      expect(r.anomaly, `bucket ${i}`).toBe(over && calm >= CALM_BUCKETS);
      if (over && calm < CALM_BUCKETS) continued++;
      if (r.anomaly) onsets++;
      calm = over ? 0 : Math.min(calm + 1, CALM_BUCKETS);
    }
    expect(onsets).toBe(2);
    expect(continued).toBeGreaterThan(0);
  });

  it('weights each detector by how well it has predicted the series: the one that models a season speaks loudest', () => {
    const e = new Ensemble(withSettings({ detectors: ['robust', 'seasonal'], seasonal: { periodsMs: [24 * W], maxSlots: 24 } }));
    const m = e.init();
    const r = rng(3);
    let last: EnsembleScore | null = null;
    // A daily square wave (high from 8 to 18 h) with a little noise: a level detector mistakes every edge.
    for (let i = 0; i < 24 * 6; i++) last = e.step(m, bucket(i, Math.round(((i % 24) >= 8 && (i % 24) < 18 ? 100 : 20) + (r() - 0.5) * 4)));
    const d = last!.explanation.detectors;
    expect(d.seasonal!['weight']).toBeGreaterThan(0.9);
    expect(d.robust!['weight']).toBeLessThan(0.1);
    // The morning edge: far off the robust median, but the profile expected it, and the ensemble follows the profile.
    for (let i = 24 * 6; i < 24 * 6 + 8; i++) e.step(m, bucket(i, 20));
    const edge = e.step(m, bucket(24 * 6 + 8, 100));
    expect(Math.abs(edge.explanation.detectors.robust!['z']!)).toBeGreaterThan(10);
    expect(edge.score).toBeLessThan(0.2);
    expect(edge.expected).toBeCloseTo(100, -1);
  });

  it('a non-finite value teaches the weights nothing', () => {
    const e = new Ensemble(withSettings({ detectors: ['robust', 'ewma'] }));
    const m = e.init();
    for (const o of steady(45)) e.step(m, o);
    // The errors and their bucket counts (numbers 5 to 14).
    const before = Array.from(m.numbers.subarray(5, 15));
    e.step(m, bucket(45, Number.POSITIVE_INFINITY));
    expect(Array.from(m.numbers.subarray(5, 15))).toEqual(before);
    expect(before.some((x) => x > 0)).toBe(true);
  });

  it('a non-finite value turns the forest features it touches into 0, not ±50', () => {
    const e = new Ensemble(withSettings({ detectors: ['iforest'], iforest: { trees: 5, samples: 8, refitEvery: 8, reservoir: 16, seed: 1 } }));
    const m = e.init();
    for (const o of steady(45)) e.step(m, o);
    // A jump of 1e6 on a scale of ~1.5: the level and change features saturate at 50.
    expect(e.step(m, bucket(45, 1e6)).explanation.features).toMatchObject({ level: 50, change: 50 });
    expect(e.step(m, bucket(46, Number.POSITIVE_INFINITY)).explanation.features).toEqual({ level: 0, change: 0, residual: 0, spread: 0 });
  });
});

describe('Ensemble with an LSTM', () => {
  /** One unit with zero weights: the forecast is always `bias` (in units of the robust scale). */
  const constant = (bias: number, window: number): LstmWeights => ({
    window,
    units: 1,
    recurrentActivation: 'sigmoid',
    kernel: new Float32Array(4),
    recurrentKernel: new Float32Array(4),
    bias: new Float32Array(4),
    denseKernel: new Float32Array(1),
    denseBias: bias,
  });

  // The first forecast comes with the robust normalisation (bucket 30): scored from the next bucket
  // on, and not before the LSTM's training window is in.
  for (const [window, first] of [
    [32, 32],
    [8, 31],
  ] as const) {
    it(`scores the residual of the normalised value against the forecast, with an EWMA residual variance (window ${window})`, () => {
      const e = new Ensemble(withSettings({ detectors: ['lstm'], robust: { window: 16 } }), constant(0.5, window), 2);
      const m = e.init();
      expect(m.lstmResidualVar).toBe(4);
      const robust = new RobustZ({ ...ROBUST_DEFAULTS, window: 16 });
      const rs = robust.init();
      const calibrator = new TailCalibrator();
      const tail = calibrator.init();
      const r = rng(21);
      let residualVar = 4;
      for (let i = 0; i < 60; i++) {
        const v = i === 45 ? 200 : i === 50 ? 60 : 100 + (r() - 0.5) * 6;
        const got = e.step(m, bucket(i, v));
        const rob = robust.step(rs, bucket(i, v));
        if (i < first) {
          expect(got.scores.lstm, `bucket ${i}`).toBe(0);
          expect(got.explanation.detectors.lstm).toBeUndefined();
          continue;
        }
        // The value in robust units, clipped to ±10; its forecast is 0.5.
        const x = Math.max(-10, Math.min(10, (v - rob.expected) / rs.scale));
        const sigma = Math.sqrt(residualVar);
        const z = (x - 0.5) / sigma;
        const cal = calibrator.step(tail, 0, z);
        expect(got.scores.lstm, `bucket ${i}`).toBeCloseTo(cal.score, 12);
        expect(got.score).toBeCloseTo(likelihoodScore(Math.max(cal.p, 1e-50)), 12);
        expect(got.explanation.detectors.lstm).toEqual({ score: r3(cal.score), z: r3(z), p: sig3(cal.p), weight: 1 });
        // The band is the LSTM's forecast, back in the series' units.
        const expected = rob.expected + 0.5 * rs.scale;
        expect(got.expected).toBeCloseTo(expected, 9);
        expect(got.upper - got.lower).toBeCloseTo(9 * sigma * rs.scale, 9);
        // The residual variance learns the residual clipped to ±4σ.
        const clipped = Math.max(-4 * sigma, Math.min(4 * sigma, x - 0.5));
        residualVar = 0.95 * residualVar + 0.05 * clipped * clipped;
        expect(m.lstmResidualVar).toBeCloseTo(residualVar, 12);
      }
    });
  }

  it('is off without weights or when not listed, and its default validation RMSE is 1', () => {
    expect(new Ensemble(withSettings({ detectors: ['robust', 'lstm'] })).init().lstm).toBeNull();
    expect(new Ensemble(withSettings({ detectors: ['robust'] }), constant(0, 8)).init().lstm).toBeNull();
    const e = new Ensemble(withSettings({ detectors: ['lstm'] }), constant(0, 8));
    const m = e.init();
    expect(m.lstm).toEqual(new Float32Array(2));
    expect(m.lstmResidualVar).toBe(1);
  });
});

describe('normal tail', () => {
  it('is the floor of every likelihood', () => {
    expect(2 * normalTail(4.5)).toBeCloseTo(6.8e-6, 7);
  });
});
