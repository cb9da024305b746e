import { NOT_READY, zScore, type Detector, type Observation, type Score } from './detector.js';

/**
 * The statistical detectors of DESIGN.md §8. Each scores a bucket's value as a z-like deviation
 * from what it expected, calibrated by `zScore` (|z| = 4.5 is the 0.5 edge). Every state is a
 * fixed set of numbers and fixed-size typed arrays.
 */

/** Consistency constant: 1.4826 · MAD estimates σ for normal data. */
const MAD_TO_SIGMA = 1.4826;
/** Mean absolute deviation to σ for normal data (√(π/2)), the fallback when MAD is 0. */
const MEAN_AD_TO_SIGMA = 1.2533;

/**
 * The smallest scale a deviation is divided by: a series that never moved (MAD 0, e.g. a counter
 * rate stuck at 0, or integers mostly equal) must not turn its first wiggle into an infinite z.
 * Relative to the level for large values, absolute for values near zero.
 */
export function scaleFloor(level: number): number {
  return Math.max(1e-3 * Math.abs(level), 1e-6);
}

/** Index of the first element of sorted[0, n) that is >= v. */
function lowerBound(sorted: Float64Array, n: number, v: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((sorted[mid] as number) < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Median of sorted[0, n). */
function sortedMedian(sorted: Float64Array, n: number): number {
  const h = n >> 1;
  return n % 2 ? (sorted[h] as number) : ((sorted[h - 1] as number) + (sorted[h] as number)) / 2;
}

/**
 * Median absolute deviation of sorted[0, n) around `median`, without sorting: the deviations
 * below and above the median are two sorted runs, merged outwards from the middle up to the
 * middle rank. O(n).
 */
function sortedMad(sorted: Float64Array, n: number, median: number): number {
  let lo = lowerBound(sorted, n, median) - 1;
  let hi = lo + 1;
  const h = n >> 1;
  let prev = 0;
  for (let k = 0; k <= h; k++) {
    const dl = lo >= 0 ? median - (sorted[lo] as number) : Infinity;
    const dh = hi < n ? (sorted[hi] as number) - median : Infinity;
    const d = dl <= dh ? (lo--, dl) : (hi++, dh);
    if (k === h - 1) prev = d;
    if (k === h) return n % 2 ? d : (prev + d) / 2;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

export interface RobustOptions {
  /** Buckets in the rolling window (median and MAD). */
  window: number;
  /** Buckets seen before the detector scores. */
  warmup: number;
}

export const ROBUST_DEFAULTS: Readonly<RobustOptions> = Object.freeze({ window: 128, warmup: 30 });

export interface RobustState {
  /** The window in arrival order (a ring) and the same values kept sorted. */
  ring: Float64Array;
  sorted: Float64Array;
  n: number;
  head: number;
  /** Median and robust σ as of the last scored step (features for the forest and the LSTM). */
  median: number;
  scale: number;
}

/**
 * Robust z-score: distance from the rolling median in units of 1.4826·MAD. The window is kept
 * sorted (binary search and one shift per bucket), so a step costs O(window) without a sort.
 */
export class RobustZ implements Detector<RobustState> {
  readonly name = 'robust';

  constructor(readonly options: RobustOptions = ROBUST_DEFAULTS) {}

  init(): RobustState {
    const w = this.options.window;
    return { ring: new Float64Array(w), sorted: new Float64Array(w), n: 0, head: 0, median: Number.NaN, scale: Number.NaN };
  }

  step(s: RobustState, obs: Observation): Score {
    let result: Score = NOT_READY;
    const size = Math.min(s.n, s.ring.length);
    if (s.n >= this.options.warmup) {
      const median = sortedMedian(s.sorted, size);
      const mad = sortedMad(s.sorted, size, median);
      let scale = MAD_TO_SIGMA * mad;
      if (!(scale > 0)) {
        let meanAd = 0;
        for (let i = 0; i < size; i++) meanAd += Math.abs((s.sorted[i] as number) - median);
        scale = (MEAN_AD_TO_SIGMA * meanAd) / size;
      }
      scale = Math.max(scale, scaleFloor(median));
      s.median = median;
      s.scale = scale;
      const z = (obs.value - median) / scale;
      result = { score: zScore(z), expected: median, lower: median - 4.5 * scale, upper: median + 4.5 * scale, ready: true, drivers: { z } };
    }
    const w = s.ring.length;
    let m = size;
    if (size === w) {
      // Full: the oldest value leaves the sorted window.
      const old = s.ring[s.head] as number;
      const at = lowerBound(s.sorted, m, old);
      s.sorted.copyWithin(at, at + 1, m);
      m--;
    }
    const at = lowerBound(s.sorted, m, obs.value);
    s.sorted.copyWithin(at + 1, at, m);
    s.sorted[at] = obs.value;
    s.ring[s.head] = obs.value;
    s.head = (s.head + 1) % w;
    s.n++;
    return result;
  }
}

// ---------------------------------------------------------------------------------------------

export interface EwmaOptions {
  /** Smoothing factor of the mean (0.1: a memory of about 10 buckets). */
  alpha: number;
  /**
   * Smoothing factor of the variance, slower than the mean's: σ estimated from ~10 buckets is
   * so noisy that |z| > 4.5 would come far more often than the normal tail says.
   */
  varianceAlpha: number;
  /** Smoothing factor of the trend (Holt): the level follows a drift (a daily ramp) without lagging behind it. */
  trendAlpha: number;
  warmup: number;
  /**
   * Updates are clipped to mean ± clip·σ so one spike does not drag the baseline; after
   * `regimeAfter` consecutive clipped buckets the new level is accepted (a level shift is a new
   * normal, not an endless anomaly).
   */
  clip: number;
  regimeAfter: number;
}

export const EWMA_DEFAULTS: Readonly<EwmaOptions> = Object.freeze({ alpha: 0.1, varianceAlpha: 0.03, trendAlpha: 0.02, warmup: 30, clip: 4, regimeAfter: 5 });

export interface EwmaState {
  mean: number;
  trend: number;
  variance: number;
  n: number;
  outliers: number;
}

/** EWMA control chart with an EWMA variance: z = (x − mean) / σ, both as of before x. */
export class Ewma implements Detector<EwmaState> {
  readonly name = 'ewma';

  constructor(readonly options: EwmaOptions = EWMA_DEFAULTS) {}

  init(): EwmaState {
    return { mean: 0, trend: 0, variance: 0, n: 0, outliers: 0 };
  }

  step(s: EwmaState, obs: Observation): Score {
    const { alpha, varianceAlpha, trendAlpha, warmup, clip, regimeAfter } = this.options;
    const x = obs.value;
    if (s.n === 0) {
      s.mean = x;
      s.n = 1;
      return NOT_READY;
    }
    const forecast = s.mean + s.trend;
    const sigma = Math.max(Math.sqrt(s.variance), scaleFloor(forecast));
    const z = (x - forecast) / sigma;
    const result: Score =
      s.n >= warmup
        ? { score: zScore(z), expected: forecast, lower: forecast - 4.5 * sigma, upper: forecast + 4.5 * sigma, ready: true, drivers: { z } }
        : NOT_READY;
    // Warm-up learns from every value: the variance has to grow from 0 first.
    let update = x;
    if (s.n >= warmup && Math.abs(z) > clip) {
      s.outliers++;
      if (s.outliers < regimeAfter) update = forecast + Math.sign(z) * clip * sigma;
    } else {
      s.outliers = 0;
    }
    const warm = s.n < warmup ? 1 / (s.n + 1) : 0;
    const a = Math.max(alpha, warm);
    const va = Math.max(varianceAlpha, warm);
    const d = update - forecast;
    const mean = forecast + a * d;
    s.trend += trendAlpha * (mean - s.mean - s.trend);
    s.mean = mean;
    s.variance = (1 - va) * (s.variance + va * d * d);
    s.n++;
    return result;
  }
}

// ---------------------------------------------------------------------------------------------

export interface SeasonalOptions {
  /** Length of the season (default one day). */
  periodMs: number;
  /** Profile slots per period (default 24: hours of the day), linearly interpolated between slot centres. */
  slots: number;
  /** Weight of a new value in its slot's profile (per visit, after the first). */
  alpha: number;
  /** Smoothing of the level offset (how far the series runs above or below its profile now). */
  levelAlpha: number;
  /** Full periods seen before the detector scores. */
  warmupPeriods: number;
  /**
   * The detector reports only when the profile explains the data: its residual variance below
   * this fraction of the variance around the plain level (the data "has a season").
   */
  explains: number;
}

export const SEASONAL_DEFAULTS: Readonly<SeasonalOptions> = Object.freeze({ periodMs: 86_400_000, slots: 24, alpha: 0.3, levelAlpha: 0.02, warmupPeriods: 2, explains: 0.5 });

export interface SeasonalState {
  /** Per slot: profile value (mean of the slot's buckets, minus nothing: absolute level). */
  profile: Float64Array;
  visits: Uint32Array;
  /** Running sums inside the current slot visit: value sum and bucket count. */
  curSlot: number;
  curSum: number;
  curN: number;
  level: number;
  residualVar: number;
  plainMean: number;
  plainVar: number;
  firstMs: number;
  /** Consecutive buckets the residual statistics did not learn from. */
  outliers: number;
  n: number;
}

/**
 * Seasonal baseline: a per-slot profile of the period (time of day by default), learnt by EWMA
 * over successive periods, plus a level offset that follows the recent residual. Expected =
 * interpolated profile + offset; z = residual / σ of residuals. Silent (not ready) until it has
 * seen `warmupPeriods` periods, and when the profile does not beat a flat level.
 */
export class Seasonal implements Detector<SeasonalState> {
  readonly name = 'seasonal';

  constructor(readonly options: SeasonalOptions = SEASONAL_DEFAULTS) {}

  init(): SeasonalState {
    const k = this.options.slots;
    return { profile: new Float64Array(k), visits: new Uint32Array(k), curSlot: -1, curSum: 0, curN: 0, level: 0, residualVar: 0, plainMean: 0, plainVar: 0, firstMs: Number.NaN, outliers: 0, n: 0 };
  }

  /** Interpolated profile at `tsMs`, between the centres of the two nearest slots. */
  private profileAt(s: SeasonalState, tsMs: number, widthMs: number): number {
    const { periodMs, slots } = this.options;
    const slotMs = periodMs / slots;
    const phase = ((((tsMs + widthMs / 2) % periodMs) + periodMs) % periodMs) / slotMs - 0.5;
    const lo = Math.floor(phase);
    const f = phase - lo;
    const a = s.profile[(lo + slots) % slots] as number;
    const b = s.profile[(lo + 1) % slots] as number;
    return a + (b - a) * f;
  }

  step(s: SeasonalState, obs: Observation): Score {
    const { periodMs, slots, levelAlpha, warmupPeriods, explains } = this.options;
    const x = obs.value;
    if (s.n === 0) s.firstMs = obs.tsMs;
    const slot = Math.floor(((((obs.tsMs + obs.widthMs / 2) % periodMs) + periodMs) % periodMs) / (periodMs / slots));
    // Plain level and variance, the yardstick of whether the season explains anything.
    const pd = x - s.plainMean;
    // Memory of one period, so the variance the season explains is all in it.
    const pa = s.n === 0 ? 1 : Math.max(1 / (s.n + 1), obs.widthMs / periodMs);
    s.plainMean += pa * pd;
    s.plainVar = (1 - pa) * (s.plainVar + pa * pd * pd);

    let result: Score = NOT_READY;
    const warm = obs.tsMs - s.firstMs >= warmupPeriods * periodMs;
    if (warm) {
      const base = this.profileAt(s, obs.tsMs, obs.widthMs);
      const expected = base + s.level;
      const sigma = Math.max(Math.sqrt(s.residualVar), scaleFloor(expected));
      const z = (x - expected) / sigma;
      const season = s.residualVar / Math.max(s.plainVar, 1e-300);
      if (season < explains) {
        result = { score: zScore(z), expected, lower: expected - 4.5 * sigma, upper: expected + 4.5 * sigma, ready: true, drivers: { z, season } };
      }
      // Suspected anomalies do not teach the level and the residual σ (a broken season would
      // otherwise widen its own band and silence the detector); a deviation lasting a whole
      // slot is a new normal.
      if (Math.abs(z) < 3 || ++s.outliers > periodMs / slots / obs.widthMs) {
        const rd = x - base - s.level;
        s.level += levelAlpha * rd;
        s.residualVar = (1 - levelAlpha) * (s.residualVar + levelAlpha * rd * rd);
        s.outliers = 0;
      }
    } else if (s.n > 0) {
      // Before the profile is trusted, the residual variance learns against the profile as it stands.
      const visited = s.visits[slot] as number;
      if (visited > 0) {
        const r = x - this.profileAt(s, obs.tsMs, obs.widthMs) - s.level;
        s.residualVar = (1 - levelAlpha) * (s.residualVar + levelAlpha * r * r);
      }
    }
    // The profile learns slot means: a slot visit (consecutive buckets in one slot) is averaged,
    // then folded into the slot's value when the visit ends.
    if (slot !== s.curSlot) {
      this.foldVisit(s);
      s.curSlot = slot;
    }
    s.curSum += x - (warm ? s.level : 0);
    s.curN++;
    s.n++;
    return result;
  }

  private foldVisit(s: SeasonalState): void {
    if (s.curSlot < 0 || s.curN === 0) return;
    const mean = s.curSum / s.curN;
    const v = s.visits[s.curSlot] as number;
    s.profile[s.curSlot] = v === 0 ? mean : (s.profile[s.curSlot] as number) + this.options.alpha * (mean - (s.profile[s.curSlot] as number));
    s.visits[s.curSlot] = v + 1;
    s.curSum = 0;
    s.curN = 0;
  }
}
