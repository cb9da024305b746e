import { NOT_READY, zScore, type Observation, type Score } from './detector.js';
import { IsolationForest } from './iforest.js';
import { Ewma, EWMA_DEFAULTS, ROBUST_DEFAULTS, RobustZ, Seasonal, SEASONAL_DEFAULTS, type EwmaState, type RobustState, type SeasonalState } from './statistical.js';
import { LstmForecaster, type LstmWeights } from './lstm/index.js';

/**
 * The ensemble (DESIGN.md §8): per series, the statistical detectors, the LSTM forecaster (when a
 * model is loaded) and the shard's isolation forest over per-bucket features, combined into one
 * score. One Ensemble lives in each shard thread; a series' state is a plain object of typed
 * arrays and numbers (`SeriesModels`).
 */
export const DETECTORS = ['robust', 'ewma', 'seasonal', 'iforest', 'lstm'] as const;
export type DetectorName = (typeof DETECTORS)[number];

export interface EnsembleSettings {
  /** Detectors that take part (the others are not run). */
  detectors: readonly DetectorName[];
  /**
   * Ensemble score at or above which a bucket is an anomaly. The default 0.6 asks two detectors
   * for about |z| = 5 each: on the labelled workloads it trades ~2 points of recall for half the
   * false alarms (F1 0.92 → 0.96), and real series, with heavier tails than any generator, need
   * the margin more.
   */
  threshold: number;
  /**
   * How many of the highest detector scores are averaged. 2 asks two detectors to agree, which
   * is what keeps false positives rare; one detector at 1 with the next at 0 still gives 0.5.
   */
  topK: number;
  seasonal: { periodMs: number; slots: number };
  robust: { window: number };
  ewma: { alpha: number };
  iforest: { trees: number; samples: number; refitEvery: number; reservoir: number; seed: number };
}

export const DEFAULT_ENSEMBLE: EnsembleSettings = {
  detectors: DETECTORS,
  threshold: 0.6,
  topK: 2,
  seasonal: { periodMs: 86_400_000, slots: 24 },
  robust: { window: 128 },
  ewma: { alpha: 0.1 },
  iforest: { trees: 100, samples: 256, refitEvery: 16384, reservoir: 4096, seed: 1 },
};

export interface SeriesModels {
  robust: RobustState;
  ewma: EwmaState;
  seasonal: SeasonalState;
  /** LSTM hidden and cell state, and the forecast (normalised) it made for the next bucket. */
  lstm: Float32Array | null;
  lstmForecast: number;
  lstmResidualVar: number;
  /** Last values for the features (previous value and a short ring for the local spread). */
  recent: Float64Array;
  n: number;
  lastTsMs: number;
}

export interface EnsembleScore {
  score: number;
  anomaly: boolean;
  ready: boolean;
  expected: number;
  lower: number;
  upper: number;
  scores: Record<DetectorName, number>;
  /** What drove the score: the leading detectors, their z values, the features of the forest. */
  explanation: {
    /** Detectors at or above half the threshold, and `gap` when a dropout raised the score. */
    drivers: (DetectorName | 'gap')[];
    detectors: Partial<Record<DetectorName, Record<string, number>>>;
    /** Set when the series resumed after a dropout. */
    gap?: { missingBuckets: number };
    features?: Record<string, number>;
  };
}

const FEATURES = ['level', 'change', 'residual', 'spread'] as const;
/**
 * Missing buckets before this one that make a gap an anomaly of its own (a dropout: the series
 * stopped reporting). A warmed-up series resuming after GAP_BUCKETS missing buckets scores 0.5,
 * rising to 1 at twice that; the explanation names the gap.
 */
const GAP_BUCKETS = 5;
const RECENT = 5;
/** Reservoir rows scored after a refit to calibrate the forest (median → 0, 99.9th percentile → 0.5). */
const CALIBRATION = 2048;
/**
 * The forest (the costly detector: ~5 µs for 100 trees) only scores buckets some statistical
 * detector already finds at least this unusual; below it, agreement of two detectors cannot
 * reach the threshold anyway unless the forest alone were near 1 on a bucket every cheap
 * detector calls normal. It still learns from every bucket.
 */
const FOREST_GATE = 0.2;
const CLAMP = 50;

function clamp(x: number): number {
  return Number.isFinite(x) ? Math.max(-CLAMP, Math.min(CLAMP, x)) : 0;
}

/** Isolation forest of one shard: fitted on a reservoir of recent feature vectors of all its series. */
class ShardForest {
  forest: IsolationForest | null = null;
  private readonly sample: Float64Array;
  private filled = 0;
  private seen = 0;
  private sinceFit = 0;
  private state: number;
  /** Calibration: median and 99.9th percentile of the fitted reservoir's scores. */
  private mid = 0.5;
  private high = 0.7;

  constructor(private readonly settings: EnsembleSettings['iforest']) {
    this.sample = new Float64Array(settings.reservoir * FEATURES.length);
    this.state = settings.seed >>> 0 || 1;
  }

  private random(): number {
    // xorshift32: the reservoir's choices only need to be deterministic.
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state / 4294967296;
  }

  get ready(): boolean {
    return this.forest !== null;
  }

  /** Calibrated score of `row` (NaN before the first fit). */
  score(row: Float64Array): number {
    if (!this.forest) return Number.NaN;
    const s = this.forest.scoreSamples(row);
    return Math.max(0, Math.min(1, (0.5 * (s - this.mid)) / Math.max(this.high - this.mid, 1e-9)));
  }

  learn(row: Float64Array): void {
    const k = FEATURES.length;
    const cap = this.settings.reservoir;
    this.seen++;
    if (this.filled < cap) {
      this.sample.set(row, this.filled * k);
      this.filled++;
    } else {
      const j = Math.floor(this.random() * this.seen);
      if (j < cap) this.sample.set(row, j * k);
    }
    this.sinceFit++;
    const due = this.forest ? this.sinceFit >= this.settings.refitEvery : this.filled >= this.settings.samples;
    if (due) this.fit();
  }

  private fit(): void {
    const k = FEATURES.length;
    const rows = this.filled;
    const data = this.sample.subarray(0, rows * k);
    this.forest = IsolationForest.fit(data, rows, k, { nEstimators: this.settings.trees, maxSamples: this.settings.samples, seed: this.settings.seed + this.seen });
    // Calibration on at most CALIBRATION rows of the reservoir (a random sample already).
    const calRows = Math.min(rows, CALIBRATION);
    const scores = this.forest.score(data.subarray(0, calRows * k), calRows).sort();
    this.mid = scores[Math.floor(calRows * 0.5)] as number;
    this.high = scores[Math.min(calRows - 1, Math.floor(calRows * 0.999))] as number;
    this.sinceFit = 0;
  }
}

export class Ensemble {
  private readonly robust: RobustZ;
  private readonly ewma: Ewma;
  private readonly seasonal: Seasonal;
  private readonly forest: ShardForest;
  private readonly lstm: LstmForecaster | null;
  private readonly on: Record<DetectorName, boolean>;
  private readonly row = new Float64Array(FEATURES.length);
  /** The LSTM's training window: its forecasts are trusted after that many buckets of state. */
  private readonly lstmWindow: number;

  constructor(
    readonly settings: EnsembleSettings = DEFAULT_ENSEMBLE,
    lstmWeights: LstmWeights | null = null,
    private readonly lstmValidationRmse = 1,
  ) {
    this.robust = new RobustZ({ ...ROBUST_DEFAULTS, ...settings.robust });
    this.ewma = new Ewma({ ...EWMA_DEFAULTS, ...settings.ewma });
    this.seasonal = new Seasonal({ ...SEASONAL_DEFAULTS, ...settings.seasonal });
    this.forest = new ShardForest(settings.iforest);
    this.on = Object.fromEntries(DETECTORS.map((d) => [d, settings.detectors.includes(d)])) as Record<DetectorName, boolean>;
    this.lstm = this.on.lstm && lstmWeights ? new LstmForecaster(lstmWeights) : null;
    this.lstmWindow = lstmWeights?.window ?? 32;
  }

  init(): SeriesModels {
    return {
      robust: this.robust.init(),
      ewma: this.ewma.init(),
      seasonal: this.seasonal.init(),
      lstm: this.lstm ? this.lstm.initState() : null,
      lstmForecast: Number.NaN,
      lstmResidualVar: this.lstmValidationRmse * this.lstmValidationRmse,
      recent: new Float64Array(RECENT).fill(Number.NaN),
      n: 0,
      lastTsMs: Number.NaN,
    };
  }

  /** Scores one closed bucket of the series, then learns it. */
  step(m: SeriesModels, obs: Observation): EnsembleScore {
    const missing = m.n >= this.robust.options.warmup ? Math.round((obs.tsMs - m.lastTsMs) / obs.widthMs) - 1 : 0;
    const robust = this.on.robust || this.on.iforest || this.on.lstm ? this.robust.step(m.robust, obs) : NOT_READY;
    const ewma = this.on.ewma || this.on.iforest ? this.ewma.step(m.ewma, obs) : NOT_READY;
    const seasonal = this.on.seasonal ? this.seasonal.step(m.seasonal, obs) : NOT_READY;
    const lstm = this.lstm ? this.lstmStep(m, obs) : NOT_READY;
    const gate = Math.max(this.on.robust ? robust.score : 0, this.on.ewma ? ewma.score : 0, seasonal.score, lstm.score);
    const forest = this.on.iforest ? this.forestStep(m, obs, robust, seasonal.ready ? seasonal : ewma, gate >= FOREST_GATE || this.settings.detectors.length === 1) : NOT_READY;
    for (let i = RECENT - 1; i > 0; i--) m.recent[i] = m.recent[i - 1] as number;
    m.recent[0] = obs.value;
    m.n++;
    m.lastTsMs = obs.tsMs;

    const all: [DetectorName, Score][] = [
      ['robust', robust],
      ['ewma', ewma],
      ['seasonal', seasonal],
      ['iforest', forest],
      ['lstm', lstm],
    ];
    const scores = { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 } as Record<DetectorName, number>;
    const ready: [DetectorName, number][] = [];
    const detectors: Partial<Record<DetectorName, Record<string, number>>> = {};
    for (const [name, s] of all) {
      if (!this.on[name] || !s.ready) continue;
      scores[name] = s.score;
      ready.push([name, s.score]);
      detectors[name] = { score: round(s.score), ...roundAll(s.drivers) };
    }
    ready.sort((a, b) => b[1] - a[1]);
    const k = Math.min(this.settings.topK, ready.length);
    let score = 0;
    // With fewer detectors ready than topK, the missing ones count as 0: warm-up stays quiet.
    for (let i = 0; i < k; i++) score += (ready[i] as [DetectorName, number])[1];
    score = this.settings.topK > 0 ? score / this.settings.topK : 0;
    const gap = missing >= GAP_BUCKETS ? Math.min(1, (0.5 * missing) / GAP_BUCKETS) : 0;
    if (gap > score) score = gap;
    const band = seasonal.ready ? seasonal : ewma.ready ? ewma : robust;
    return {
      score,
      anomaly: score >= this.settings.threshold,
      ready: ready.length > 0,
      expected: band.expected,
      lower: band.lower,
      upper: band.upper,
      scores,
      explanation: {
        drivers: [...ready.filter(([, s]) => s >= this.settings.threshold / 2).map(([n]) => n), ...(gap >= this.settings.threshold / 2 ? (['gap'] as const) : [])],
        detectors,
        ...(gap > 0 ? { gap: { missingBuckets: missing } } : {}),
        ...(forest.ready ? { features: Object.fromEntries(FEATURES.map((f, i) => [f, round(this.row[i] as number)])) } : {}),
      },
    };
  }

  private forestStep(m: SeriesModels, obs: Observation, robust: Score, residual: Score, score: boolean): Score {
    if (!robust.ready) return NOT_READY;
    const scale = m.robust.scale;
    const prev = m.recent[0] as number;
    let spread = 0;
    let n = 0;
    let last = obs.value;
    for (let i = 0; i < RECENT; i++) {
      const v = m.recent[i] as number;
      if (Number.isNaN(v)) break;
      spread += (last - v) * (last - v);
      last = v;
      n++;
    }
    const row = this.row;
    row[0] = clamp(robust.drivers['z'] ?? 0);
    row[1] = clamp(Number.isNaN(prev) ? 0 : (obs.value - prev) / scale);
    row[2] = clamp(residual.ready ? (residual.drivers['z'] ?? 0) : 0);
    row[3] = clamp(n > 0 ? Math.log(Math.sqrt(spread / n) / scale + 1e-3) : 0);
    const s = score ? this.forest.score(row) : this.forest.ready ? 0 : Number.NaN;
    this.forest.learn(row);
    if (Number.isNaN(s)) return NOT_READY;
    return { score: s, expected: robust.expected, lower: robust.lower, upper: robust.upper, ready: true, drivers: {} };
  }

  private lstmStep(m: SeriesModels, obs: Observation): Score {
    const lstm = this.lstm as LstmForecaster;
    const state = m.lstm as Float32Array;
    const median = m.robust.median;
    const scale = m.robust.scale;
    if (!Number.isFinite(median)) return NOT_READY;
    const x = Math.max(-10, Math.min(10, (obs.value - median) / scale));
    let result: Score = NOT_READY;
    if (!Number.isNaN(m.lstmForecast) && m.n >= this.lstmWindow) {
      const r = x - m.lstmForecast;
      const sigma = Math.sqrt(m.lstmResidualVar);
      const z = r / sigma;
      const expected = median + m.lstmForecast * scale;
      result = { score: zScore(z), expected, lower: expected - 4.5 * sigma * scale, upper: expected + 4.5 * sigma * scale, ready: true, drivers: { z } };
      const rc = Math.max(-4 * sigma, Math.min(4 * sigma, r));
      m.lstmResidualVar = 0.95 * m.lstmResidualVar + 0.05 * rc * rc;
    }
    m.lstmForecast = lstm.step(state, x);
    return result;
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function roundAll(r: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) out[k] = round(v);
  return out;
}
