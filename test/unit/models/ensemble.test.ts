import { describe, expect, it } from 'vitest';
import { defaultLabelledOptions, labelledWorkload, workloadCsv } from '../../../bench/anomalies.js';
import { backtest, parseBacktestCsv } from '../../../models/backtest.js';
import { DEFAULT_ENSEMBLE, Ensemble, type DetectorName, type EnsembleScore, type EnsembleSettings } from '../../../models/ensemble.js';
import { NOT_READY, zScore, type Observation, type Score } from '../../../models/detector.js';
import { IsolationForest } from '../../../models/iforest.js';
import type { LstmWeights } from '../../../models/lstm/index.js';
import { Ewma, EWMA_DEFAULTS, ROBUST_DEFAULTS, RobustZ, Seasonal, SEASONAL_DEFAULTS } from '../../../models/statistical.js';
import { rng } from '../../../bench/generator.js';
import { evaluate } from '../../../models/evaluate.js';
import { isVigilError } from '../../../core/errors.js';

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
    for (let i = 1; i < 400; i++) r = e.step(m, { tsMs: i * 60_000, widthMs: 60_000, value: 10 + Math.sin(i), count: 1, min: 0, max: 0, std: 0 });
    expect(r.anomaly).toBe(false);
    r = e.step(m, { tsMs: 400 * 60_000, widthMs: 60_000, value: 40, count: 1, min: 40, max: 40, std: 0 });
    expect(r.anomaly).toBe(true);
    expect(r.explanation.drivers).toContain('robust');
    expect(r.expected).toBeGreaterThan(8);
    expect(r.upper).toBeLessThan(40);
    // The per-series state is plain data: it survives a structured clone (a worker hand-over).
    expect(structuredClone(m).robust.ring.length).toBe(DEFAULT_ENSEMBLE.robust.window);
  });

  it('flags a series that resumes after a dropout, naming the gap', () => {
    const e = new Ensemble();
    const m = e.init();
    for (let i = 0; i < 100; i++) e.step(m, { tsMs: i * 60_000, widthMs: 60_000, value: 5 + (i % 3), count: 1, min: 0, max: 0, std: 0 });
    const r = e.step(m, { tsMs: 112 * 60_000, widthMs: 60_000, value: 6, count: 1, min: 6, max: 6, std: 0 });
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
// The combination rules of DESIGN.md §8, checked against the statistical detectors run on their own
// and a reservoir-sampled forest built here from IsolationForest.

const W = 60_000;
const bucket = (i: number, value: number): Observation => ({ tsMs: i * W, widthMs: W, value, count: 1, min: value, max: value, std: 0 });
const withSettings = (over: Partial<EnsembleSettings>): EnsembleSettings => ({ ...DEFAULT_ENSEMBLE, ...over });
/** Three decimals, as explanations show numbers. */
const r3 = (x: number): number => Number(x.toFixed(3));
/** Buckets the ensemble's robust detector learns before it (and the gap rule) starts. */
const WARMUP = 30;

/**
 * The shard forest as documented: reservoir sampling (Algorithm R) driven by Marsaglia's xorshift32,
 * a fit once `samples` rows are in and then every `refitEvery` rows, calibrated so that the median
 * reservoir score maps to 0 and the 99.9th percentile to 0.5.
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

  score(row: Float64Array): number {
    const f = this.forest as IsolationForest;
    const s = f.scoreSamples(row);
    return Math.min(1, Math.max(0, (0.5 * (s - this.mid)) / Math.max(this.high - this.mid, 1e-9)));
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

/** What `Ensemble.step` should return, from the detectors run on their own and the rules above. */
function referenceEnsemble(settings: EnsembleSettings): { step: (o: Observation) => EnsembleScore; forest: ReferenceForest } {
  const on = (d: DetectorName): boolean => settings.detectors.includes(d);
  const robust = new RobustZ({ ...ROBUST_DEFAULTS, ...settings.robust });
  const ewma = new Ewma({ ...EWMA_DEFAULTS, ...settings.ewma });
  const seasonal = new Seasonal({ ...SEASONAL_DEFAULTS, ...settings.seasonal });
  const [rs, es, ss] = [robust.init(), ewma.init(), seasonal.init()];
  const forest = new ReferenceForest(settings.iforest);
  const recent: number[] = [];
  let lastTs = Number.NaN;
  const step = (o: Observation): EnsembleScore => {
    const missing = recent.length >= WARMUP ? Math.round((o.tsMs - lastTs) / o.widthMs) - 1 : 0;
    const r = robust.step(rs, o);
    const e = ewma.step(es, o);
    const se = on('seasonal') ? seasonal.step(ss, o) : NOT_READY;
    let f: Score = NOT_READY;
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
      const gate = Math.max(on('robust') ? r.score : 0, on('ewma') ? e.score : 0, se.score);
      const wasFitted = forest.fitted;
      const s = wasFitted ? (gate >= 0.2 || settings.detectors.length === 1 ? forest.score(row) : 0) : Number.NaN;
      forest.learn(row);
      if (wasFitted) {
        f = { score: s, expected: r.expected, lower: r.lower, upper: r.upper, ready: true, drivers: {} };
        features = { level: r3(row[0]!), change: r3(row[1]!), residual: r3(row[2]!), spread: r3(row[3]!) };
      }
    }
    recent.push(o.value);
    lastTs = o.tsMs;

    const all: [DetectorName, Score][] = [
      ['robust', r],
      ['ewma', e],
      ['seasonal', se],
      ['iforest', f],
    ];
    const ready = all.filter(([name, s]) => on(name) && s.ready).sort((a, b) => b[1].score - a[1].score);
    const top = ready.slice(0, settings.topK).reduce((sum, [, s]) => sum + s.score, 0);
    const gap = missing >= 5 ? Math.min(1, missing / 10) : 0;
    const score = Math.max(settings.topK > 0 ? top / settings.topK : 0, gap);
    const band = se.ready ? se : e.ready ? e : r;
    const scores = { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 };
    const detectors: Partial<Record<DetectorName, Record<string, number>>> = {};
    for (const [name, s] of ready) {
      scores[name] = s.score;
      detectors[name] = { score: r3(s.score), ...Object.fromEntries(Object.entries(s.drivers).map(([k, v]) => [k, r3(v)])) };
    }
    return {
      score,
      anomaly: score >= settings.threshold,
      ready: ready.length > 0,
      expected: band.expected,
      lower: band.lower,
      upper: band.upper,
      scores,
      explanation: {
        drivers: [...ready.filter(([, s]) => s.score >= settings.threshold / 2).map(([n]) => n), ...(gap >= settings.threshold / 2 ? ['gap' as const] : [])],
        detectors,
        ...(gap > 0 ? { gap: { missingBuckets: missing } } : {}),
        ...(features ? { features } : {}),
      },
    };
  };
  return { step, forest };
}

/** A noisy series with a 20-bucket square season, spikes and dips, and two gaps (4 and 7 missing buckets). */
function series(seed: number, length = 260): Observation[] {
  const r = rng(seed);
  const out: Observation[] = [];
  for (let i = 0; i < length; i++) {
    if ((i > 150 && i <= 154) || (i > 200 && i <= 207)) continue;
    let v = (i % 20 < 10 ? 100 : 130) + (r() + r() + r() - 1.5) * 4;
    if (i % 37 === 36) v += 15 + 40 * r();
    if (i % 53 === 52) v -= 10 + 20 * r();
    out.push(bucket(i, v));
  }
  return out;
}

function expectSameScore(got: EnsembleScore, want: EnsembleScore, where: string): void {
  expect(got.score, where).toBeCloseTo(want.score, 12);
  expect({ ...got, score: 0, scores: { ...got.scores, iforest: 0 } }, where).toEqual({ ...want, score: 0, scores: { ...want.scores, iforest: 0 } });
  expect(got.scores.iforest, where).toBeCloseTo(want.scores.iforest, 12);
}

describe('Ensemble against its detectors run on their own', () => {
  const forest = { trees: 10, samples: 16, refitEvery: 8, reservoir: 24, seed: 3 };
  const seasonal = { periodMs: 20 * W, slots: 4 };
  const cases: [string, Partial<EnsembleSettings>][] = [
    ['all four, top 2', { detectors: ['robust', 'ewma', 'seasonal', 'iforest'], topK: 2, seasonal, iforest: forest }],
    ['the forest alone (always scored)', { detectors: ['iforest'], topK: 1, iforest: forest }],
    ['robust and the forest, top 3 of 2', { detectors: ['robust', 'iforest'], topK: 3, iforest: { ...forest, seed: 0 } }],
    ['ewma and the forest, threshold 0.3', { detectors: ['ewma', 'iforest'], topK: 1, threshold: 0.3, iforest: forest }],
    ['robust and ewma, top 1, window 16', { detectors: ['robust', 'ewma'], topK: 1, robust: { window: 16 }, ewma: { alpha: 0.3 } }],
    ['seasonal and ewma, top 4, threshold 0.4', { detectors: ['ewma', 'seasonal'], topK: 4, threshold: 0.4, seasonal }],
    ['top 0 scores only gaps', { detectors: ['robust', 'ewma'], topK: 0 }],
  ];
  for (const [name, over] of cases) {
    it(`${name}: scores, band, drivers, features and gaps bucket by bucket`, () => {
      const settings = withSettings(over);
      const e = new Ensemble(settings);
      const m = e.init();
      const ref = referenceEnsemble(settings);
      let anomalies = 0;
      for (const o of series(11)) {
        const want = ref.step(o);
        expectSameScore(e.step(m, o), want, `bucket ${o.tsMs / W}`);
        if (want.anomaly) anomalies++;
      }
      // The scenario exercises what it claims: anomalies, and refits when the forest takes part.
      expect(anomalies).toBeGreaterThan(0);
      if (settings.detectors.includes('iforest')) expect(ref.forest.fits).toBeGreaterThan(10);
    });
  }

  it('calibrates on the 99.9th percentile of a reservoir of more than 1,000 rows', () => {
    const settings = withSettings({ detectors: ['iforest'], topK: 1, iforest: { trees: 4, samples: 1100, refitEvery: 100_000, reservoir: 1100, seed: 5 } });
    const e = new Ensemble(settings);
    const m = e.init();
    const ref = referenceEnsemble(settings);
    const r = rng(5);
    let scored = 0;
    for (let i = 0; i < WARMUP + 1200; i++) {
      const o = bucket(i, 50 + (r() - 0.5) * 10 + (i % 97 === 96 ? 30 : 0));
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
    expect(m).toEqual({ robust: m.robust, ewma: m.ewma, seasonal: m.seasonal, lstm: null, lstmForecast: Number.NaN, lstmResidualVar: 1, recent: new Float64Array(5).fill(Number.NaN), n: 0, lastTsMs: Number.NaN });
    const r = e.step(m, bucket(0, 10));
    expect(r).toEqual({ score: 0, anomaly: false, ready: false, expected: Number.NaN, lower: Number.NaN, upper: Number.NaN, scores: { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 }, explanation: { drivers: [], detectors: {} } });
    expect(Array.from(m.recent)).toEqual([10, Number.NaN, Number.NaN, Number.NaN, Number.NaN]);
    expect([m.n, m.lastTsMs]).toEqual([1, 0]);
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
    expect(after(WARMUP, 12).score).toBe(1);
    // 'gap' drives at half the threshold and above.
    expect(after(WARMUP, 5, 1).explanation.drivers).toEqual(['gap']);
    expect(after(WARMUP, 5, 1.01).explanation).toMatchObject({ drivers: [], gap: { missingBuckets: 5 } });
  });

  it('an anomaly is a score at or above the threshold; a driver is at or above half of it', () => {
    const run = (threshold: number): EnsembleScore => {
      const e = new Ensemble(withSettings({ detectors: ['robust', 'ewma'], threshold }));
      const m = e.init();
      for (const o of steady(40)) e.step(m, o);
      return e.step(m, bucket(40, 14));
    };
    const base = run(0.6);
    const { robust, ewma } = base.scores;
    expect(ewma).toBeGreaterThan(robust);
    expect(base.score).toBeCloseTo((robust + ewma) / 2, 12);
    expect(run(base.score).anomaly).toBe(true);
    expect(run(base.score + 1e-9).anomaly).toBe(false);
    expect(run(2 * robust).explanation.drivers).toEqual(['ewma', 'robust']);
    expect(run(2 * robust + 1e-9).explanation.drivers).toEqual(['ewma']);
  });

  it('a non-finite value turns the forest features it touches into 0, not ±50', () => {
    const e = new Ensemble(withSettings({ detectors: ['iforest'], topK: 1, iforest: { trees: 5, samples: 8, refitEvery: 8, reservoir: 16, seed: 1 } }));
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
      const e = new Ensemble(withSettings({ detectors: ['lstm'], topK: 1, robust: { window: 16 } }), constant(0.5, window), 2);
      const m = e.init();
      expect(m.lstmResidualVar).toBe(4);
      const robust = new RobustZ({ ...ROBUST_DEFAULTS, window: 16 });
      const rs = robust.init();
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
        expect(got.scores.lstm, `bucket ${i}`).toBeCloseTo(zScore(z), 12);
        expect(got.score).toBeCloseTo(zScore(z), 12);
        expect(got.explanation.detectors.lstm).toEqual({ score: r3(zScore(z)), z: r3(z) });
        // The band is the robust detector's, LSTM or not.
        expect([got.expected, got.lower, got.upper]).toEqual([rob.expected, rob.lower, rob.upper]);
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
