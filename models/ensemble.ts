import { CALIBRATION_DEFAULTS, likelihoodScore, TailCalibrator } from './calibration.js';
import { NOT_READY, zScore, type Observation, type Score } from './detector.js';
import { IsolationForest } from './iforest.js';
import { Ewma, EWMA_DEFAULTS, learnQuantum, ROBUST_DEFAULTS, RobustZ, scaleFloor, Seasonal, SEASONAL_DEFAULTS, type EwmaState, type Resolution, type RobustState, type SeasonalState } from './statistical.js';
import { LstmForecaster, type LstmWeights } from './lstm/index.js';

/**
 * The ensemble (DESIGN.md §8): per series, the statistical detectors, the LSTM forecaster (when a
 * model is loaded) and the shard's isolation forest over per-bucket features, combined into one
 * score. One Ensemble lives in each shard thread; a series' state is a plain object of typed
 * arrays and numbers (`SeriesModels`).
 */
export const DETECTORS = ['robust', 'ewma', 'seasonal', 'iforest', 'lstm'] as const;
export type DetectorName = (typeof DETECTORS)[number];

/**
 * Version of the per-series state's layout (SeriesModels): part of the key under which detector
 * state is persisted, so a snapshot written by another layout is never read back into this one.
 */
export const MODEL_STATE_VERSION = 6;

export interface EnsembleSettings {
  /** Detectors that take part (the others are not run). */
  detectors: readonly DetectorName[];
  /**
   * Ensemble score at or above which an episode starts (`anomaly` is set on its first bucket). A
   * score is 1 − 2^(log10(p) / 5) of the anomaly likelihood p (calibration.ts), so 0.5 is p = 1e-5.
   */
  threshold: number;
  /**
   * The learning period of a series, in buckets (NAB's probationary period): scores are computed,
   * but no episode starts before the series has this many buckets of history; the likelihood has
   * not yet seen its recurring patterns. Default 576: two days of 5-minute buckets, the seasonal
   * detector's warm-up of a daily profile (two periods), so that the edges of a daily pattern are
   * judged by a profile before an episode can start (288, one day, left each series of the
   * realistic corpus three false episodes on its second day); at 60 s about 10 h.
   */
  learningBuckets: number;
  seasonal: { periodsMs: readonly number[]; maxSlots: number };
  robust: { window: number };
  ewma: { alpha: number };
  iforest: { trees: number; samples: number; refitEvery: number; reservoir: number; seed: number };
}

export const DEFAULT_ENSEMBLE: EnsembleSettings = {
  detectors: DETECTORS,
  threshold: 0.5,
  learningBuckets: 576,
  seasonal: { periodsMs: SEASONAL_DEFAULTS.periodsMs, maxSlots: SEASONAL_DEFAULTS.maxSlots },
  robust: { window: 128 },
  ewma: { alpha: 0.1 },
  iforest: { trees: 100, samples: 256, refitEvery: 16384, reservoir: 4096, seed: 1 },
};

export interface SeriesModels extends Resolution {
  robust: RobustState;
  ewma: EwmaState;
  seasonal: SeasonalState;
  /** LSTM hidden and cell state, and the forecast (normalised) it made for the next bucket. */
  lstm: Float32Array | null;
  lstmForecast: number;
  lstmResidualVar: number;
  /** Per detector (DETECTORS order), its anomaly likelihood history (models/calibration.ts), one after another. */
  tails: Float32Array;
  /**
   * One array (each typed array costs ~180 bytes of V8 objects beside its numbers): from RECENT_AT
   * the last values for the features (previous value and a short ring for the local spread); from
   * ERRORS_AT per detector the mean absolute error of its expected value and the buckets it was
   * measured on (the combination's weights); from ALARMS_AT per detector its rate of alarm onsets
   * (starting at ALARM_BUDGET) and whether it is in an alarm (the combination's calibration factor).
   */
  numbers: Float64Array;
  /** Consecutive buckets below the threshold since the last one at or above it (Infinity: no episode open). */
  calm: number;
  /** How often the forest's gate opened for the series (its likelihood is conditional on the gate). */
  gateRate: number;
  n: number;
  firstTsMs: number;
  lastTsMs: number;
}

export interface EnsembleScore {
  /** The weighted anomaly likelihood score in [0, 1] (or the gap's, when higher). */
  score: number;
  /** The first bucket of an episode: the score reached the threshold after at least CALM_BUCKETS below it. */
  anomaly: boolean;
  ready: boolean;
  expected: number;
  lower: number;
  upper: number;
  scores: Record<DetectorName, number>;
  /** What drove the score: the leading detectors, their z values, the features of the forest. */
  explanation: {
    /** Detectors at or above half the threshold with at least a tenth of the weight, and `gap` when a dropout raised the score. */
    drivers: (DetectorName | 'gap')[];
    detectors: Partial<Record<DetectorName, Record<string, number>>>;
    /** Set when the series resumed after a dropout. */
    gap?: { missingBuckets: number };
    features?: Record<string, number>;
  };
}

const FEATURES = ['level', 'change', 'residual', 'spread'] as const;
const IFOREST = DETECTORS.indexOf('iforest');
/**
 * Missing buckets before this one that make a gap an anomaly of its own (a dropout: the series
 * stopped reporting). A warmed-up series resuming after GAP_BUCKETS missing buckets scores 0.5,
 * rising to 1 at twice that; the explanation names the gap.
 */
const GAP_BUCKETS = 5;
const RECENT = 5;
// Layout of SeriesModels.numbers.
const RECENT_AT = 0;
const ERRORS_AT = RECENT_AT + RECENT;
const ALARMS_AT = ERRORS_AT + 2 * DETECTORS.length;
const NUMBERS = ALARMS_AT + 2 * DETECTORS.length;
/** Reservoir rows scored after a refit to calibrate the forest (median → z 0, 99.9th percentile → z 3.29). */
const CALIBRATION = 2048;
/** z of the two-sided normal tail 1e-3: the forest's 99.9th percentile maps there. */
const Z_999 = 3.29;
/**
 * The forest (the costly detector: ~5 µs for 100 trees) only scores buckets some statistical
 * detector already finds at least this unusual (score 0.2: likelihood p ≤ 0.025); its likelihood is then
 * conditional on the gate, and multiplied by how often the gate opens for the series. It still
 * learns from every bucket.
 */
const FOREST_GATE = 0.2;
/** Buckets below the threshold that close an episode (the next bucket at or above it is a new onset). */
export const CALM_BUCKETS = 12;
/** Memory, in buckets, of each detector's mean absolute error (the combination's weights). */
const ERROR_MEMORY = 50;
/** A detector's absolute error counts at most this many times its mean (one spike does not silence a detector for long). */
const ERROR_CLIP = 5;
/** A detector's likelihood below this is an alarm (the default threshold's level). */
const ALARM_P = 1e-5;
/**
 * Alarm onsets per bucket a detector may raise on a series at full weight (3 a week of 5-minute
 * buckets); one raising more has its weight scaled by the budget over its rate (memory: the
 * calibration's, 2016 buckets).
 */
const ALARM_BUDGET = 1.5e-3;
/** −log10 p past which evidence counts no more (p = 1e-50: float noise of the tails, and one detector must not outvote all others by any margin). */
const EVIDENCE_CAP = 50;
/**
 * The forest's weight, as a share of the mean weight of the forecasting detectors: it forecasts
 * nothing, so it cannot earn a weight the way they do, and alone it is the weakest detector on
 * both labelled corpora (bench:quality).
 */
const FOREST_WEIGHT = 0.5;

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

  /** The forest's deviation for `row`: 0 at the reservoir's median score, 3.29 at its 99.9th percentile, never below 0 (NaN before the first fit). */
  z(row: Float64Array): number {
    if (!this.forest) return Number.NaN;
    const s = this.forest.scoreSamples(row);
    return Math.max(0, (Z_999 * (s - this.mid)) / Math.max(this.high - this.mid, 1e-9));
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
  /** The seasonal detector (its profiles are what forecasts carry forward: models/forecast.ts). */
  readonly seasonal: Seasonal;
  private readonly forest: ShardForest;
  private readonly lstm: LstmForecaster | null;
  private readonly calibrator = new TailCalibrator(CALIBRATION_DEFAULTS);
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
      // The LSTM's history (the last) only when a model is loaded.
      tails: new Float32Array((this.lstm ? DETECTORS.length : DETECTORS.length - 1) * this.calibrator.size),
      numbers: initialNumbers(),
      calm: Infinity,
      gateRate: 0,
      quantum: Infinity,
      quantumFiner: 0,
      n: 0,
      firstTsMs: Number.NaN,
      lastTsMs: Number.NaN,
    };
  }

  /**
   * Scores one closed bucket of the series, then learns it. Each detector's deviation becomes an
   * anomaly likelihood against its own recent deviations on this series (models/calibration.ts);
   * the ensemble score is the mean of their evidence −log10 p weighted by how well each detector
   * has been predicting the series (inverse squared mean absolute error, the forecast-combination
   * weights of Bates and Granger) and by its alarm calibration: the detector that models the
   * series best speaks loudest, a well-predicting detector that says "normal" pulls the score
   * down, and one that keeps crying wolf on the series loses its say.
   */
  step(m: SeriesModels, obs: Observation): EnsembleScore {
    const missing = m.n >= this.robust.options.warmup ? Math.round((obs.tsMs - m.lastTsMs) / obs.widthMs) - 1 : 0;
    const robust = this.on.robust || this.on.iforest || this.on.lstm ? this.robust.step(m.robust, obs) : NOT_READY;
    const ewma = this.on.ewma || this.on.iforest ? this.ewma.step(m.ewma, obs) : NOT_READY;
    const seasonal = this.on.seasonal ? this.seasonal.step(m.seasonal, obs) : NOT_READY;
    const lstm = this.lstm ? this.lstmStep(m, obs) : NOT_READY;

    const all: [DetectorName, Score][] = [
      ['robust', robust],
      ['ewma', ewma],
      ['seasonal', seasonal],
      ['iforest', NOT_READY],
      ['lstm', lstm],
    ];
    const scores = { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 } as Record<DetectorName, number>;
    const weights = { robust: 0, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 } as Record<DetectorName, number>;
    const detectors: Partial<Record<DetectorName, Record<string, number>>> = {};
    const floor = scaleFloor(obs.value, m.quantum);
    let gate = 0;
    let weightSum = 0;
    let weighted = 0;
    let ready = 0;
    let best: Score | null = null;
    let bestWeight = 0;
    for (let d = 0; d < all.length; d++) {
      const [name, s] = all[d] as [DetectorName, Score];
      if (!s.ready || !this.on[name]) continue;
      const cal = this.calibrator.step(m.tails, d * this.calibrator.size, s.drivers['z'] ?? 0);
      gate = Math.max(gate, cal.score);
      const w = this.learnAlarms(m, d, cal.p) * this.learnError(m, d, Math.abs(obs.value - s.expected), floor);
      scores[name] = cal.score;
      weights[name] = w;
      weighted += w * evidence(cal.p);
      weightSum += w;
      ready++;
      detectors[name] = detectorRecord(cal.score, s.drivers, cal.p);
      if (w > bestWeight) {
        best = s;
        bestWeight = w;
      }
    }
    let forestReady = false;
    if (this.on.iforest) {
      const open = gate >= FOREST_GATE || this.settings.detectors.length === 1;
      const forest = this.forestStep(m, obs, robust, seasonal.ready ? seasonal : ewma, open);
      forestReady = forest.ready;
      if (forest.ready) {
        m.gateRate += ((open ? 1 : 0) - m.gateRate) / Math.min(m.n + 1, CALIBRATION_DEFAULTS.memory);
        const z = forest.drivers['z'] as number;
        let score = 0;
        let p = 1;
        if (!Number.isNaN(z)) {
          // The likelihood among gated buckets, times how often the gate opens: the unconditional tail.
          const cal = this.calibrator.step(m.tails, IFOREST * this.calibrator.size, z);
          p = Math.min(1, cal.p * Math.max(m.gateRate, 1 / CALIBRATION_DEFAULTS.memory));
          score = likelihoodScore(p);
        }
        // The forest forecasts nothing: it votes with FOREST_WEIGHT of the others' mean weight (1 alone).
        const w = ready > 0 ? (FOREST_WEIGHT * weightSum) / ready : 1;
        scores.iforest = score;
        weights.iforest = w;
        weighted += w * evidence(p);
        weightSum += w;
        ready++;
        const record: Record<string, number> = { score: round(score) };
        if (!Number.isNaN(z)) {
          record['z'] = round(z);
          record['p'] = significant(p);
        }
        detectors.iforest = record;
      }
    }
    m.numbers.copyWithin(RECENT_AT + 1, RECENT_AT, RECENT_AT + RECENT - 1);
    m.numbers[RECENT_AT] = obs.value;
    if (m.n === 0) m.firstTsMs = obs.tsMs;
    m.n++;
    m.lastTsMs = obs.tsMs;
    learnQuantum(m, obs.value);

    let score = weightSum > 0 ? likelihoodScore(Math.pow(10, -weighted / weightSum)) : 0;
    const gap = missing >= GAP_BUCKETS ? Math.min(1, (0.5 * missing) / GAP_BUCKETS) : 0;
    if (gap > score) score = gap;
    const threshold = this.settings.threshold;
    let anomaly = false;
    if (score >= threshold) {
      anomaly = m.calm >= CALM_BUCKETS && obs.tsMs - m.firstTsMs >= this.settings.learningBuckets * obs.widthMs;
      m.calm = 0;
    } else if (m.calm < CALM_BUCKETS) m.calm++;
    for (const name of DETECTORS) if (detectors[name]) (detectors[name] as Record<string, number>)['weight'] = round(weightSum > 0 ? weights[name] / weightSum : 0);
    const band = best ?? (ewma.ready ? ewma : robust);
    // Built by assignment, not spreads and Object.fromEntries: a third of a step's time went there
    // (a scored bucket, not a point, is the unit here: a live series has a few points per bucket).
    const drivers: EnsembleScore['explanation']['drivers'] = [];
    for (const name of DETECTORS) if (detectors[name] && scores[name] >= threshold / 2 && weights[name] >= 0.1 * weightSum) drivers.push(name);
    if (gap >= threshold / 2) drivers.push('gap');
    const explanation: EnsembleScore['explanation'] = { drivers, detectors };
    if (gap > 0) explanation.gap = { missingBuckets: missing };
    if (forestReady) {
      const row = this.row;
      explanation.features = { level: round(row[0] as number), change: round(row[1] as number), residual: round(row[2] as number), spread: round(row[3] as number) };
    }
    return { score, anomaly, ready: ready > 0, expected: band.expected, lower: band.lower, upper: band.upper, scores, explanation };
  }

  /**
   * Detector d's weight, 1 / (mean absolute error + floor)², as of before this bucket (its own
   * error does not lower its say on it), then learns its absolute error `e`.
   */
  private learnError(m: SeriesModels, d: number, e: number, floor: number): number {
    const at = ERRORS_AT + 2 * d;
    let mae = m.numbers[at] as number;
    let n = m.numbers[at + 1] as number;
    if (n === 0 && Number.isFinite(e)) {
      // A detector's first ready bucket: its error so far is this one.
      mae = e;
      n = 1;
    }
    const w = n > 0 ? 1 / ((mae + floor) * (mae + floor)) : 0;
    if (Number.isFinite(e)) {
      const a = Math.max(1 / ERROR_MEMORY, 1 / (n + 1));
      m.numbers[at] = mae + a * (Math.min(e, ERROR_CLIP * mae + floor) - mae);
      m.numbers[at + 1] = n + 1;
    }
    return w;
  }

  /**
   * Detector d's calibration factor as of before this bucket, min(1, ALARM_BUDGET / its rate of
   * alarm onsets), then learns whether this bucket starts an alarm (p < ALARM_P after none). A
   * detector that keeps crying wolf on a series (a level detector at every daily edge of a
   * noise-free step) loses its say there; one alarmed by the series' rare incidents keeps it.
   */
  private learnAlarms(m: SeriesModels, d: number, p: number): number {
    const at = ALARMS_AT + 2 * d;
    const rate = m.numbers[at] as number;
    const factor = Math.min(1, ALARM_BUDGET / rate);
    const alarm = p < ALARM_P;
    const onset = alarm && (m.numbers[at + 1] as number) === 0 ? 1 : 0;
    m.numbers[at] = rate + (onset - rate) / CALIBRATION_DEFAULTS.memory;
    m.numbers[at + 1] = alarm ? 1 : 0;
    return factor;
  }

  private forestStep(m: SeriesModels, obs: Observation, robust: Score, residual: Score, score: boolean): Score {
    if (!robust.ready) return NOT_READY;
    const scale = m.robust.scale;
    const prev = m.numbers[RECENT_AT] as number;
    let spread = 0;
    let n = 0;
    let last = obs.value;
    for (let i = 0; i < RECENT; i++) {
      const v = m.numbers[RECENT_AT + i] as number;
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
    const z = score ? this.forest.z(row) : Number.NaN;
    const ready = this.forest.ready;
    this.forest.learn(row);
    if (!ready) return NOT_READY;
    // Not scored (the gate closed): ready, but no deviation to judge.
    return { score: 0, expected: robust.expected, lower: robust.lower, upper: robust.upper, ready: true, drivers: { z } };
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

/** SeriesModels.numbers of a new series: no recent values, no errors measured, every alarm rate at its budget. */
function initialNumbers(): Float64Array {
  const numbers = new Float64Array(NUMBERS).fill(Number.NaN, RECENT_AT, RECENT_AT + RECENT);
  for (let d = 0; d < DETECTORS.length; d++) numbers[ALARMS_AT + 2 * d] = ALARM_BUDGET;
  return numbers;
}

/** −log10 p, the evidence a detector's likelihood carries, capped (p = 1e-50: beyond, float noise of the tails). */
function evidence(p: number): number {
  return p > 0 ? Math.min(EVIDENCE_CAP, -Math.log10(p)) : EVIDENCE_CAP;
}

/** Three significant digits (likelihoods span hundreds of decades). */
function significant(x: number): number {
  return Number(x.toPrecision(3));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** A detector's part of the explanation: its score, its drivers rounded (in their order), its likelihood; the weight follows. */
function detectorRecord(score: number, drivers: Record<string, number>, p: number): Record<string, number> {
  const out: Record<string, number> = { score: round(score) };
  for (const k in drivers) out[k] = round(drivers[k] as number);
  out['p'] = significant(p);
  return out;
}
