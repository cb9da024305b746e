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
 * Once values are seen, the floor is the series' resolution (`quantum`: the coarsest decimal step
 * its values are multiples of, 1 for integer counts, 0.001 for values kept to three decimals; see
 * learnQuantum for how a few finer values are told from a finer resolution),
 * so a noise-free series measures deviations in its own steps, not in a fraction of its level
 * (issue 14: 0.1 % of the level gave |z| = 2,400 at every daily edge). Without a quantum: 1e-3 of
 * the level for large values, 1e-6 near zero.
 */
export function scaleFloor(level: number, quantum = Infinity): number {
  if (quantum < Infinity) return Math.max(quantum, 1e-9 * Math.abs(level), 1e-12);
  return Math.max(1e-3 * Math.abs(level), 1e-6);
}

/**
 * The decimal step of `x`: 1 for an integer (larger steps are not inferred: 20 and 110 are
 * integers, not tens), else the largest 10^-k (k ≤ 12) it is a multiple of, else 1e-12 (a value
 * with no short decimal form, e.g. a rate 7/60).
 */
export function resolutionOf(x: number): number {
  for (let k = 0; k < DECIMAL_STEPS.length; k++) {
    const y = x * (POWERS_OF_TEN[k] as number);
    // Float noise of a decimal: 0.1 + 0.2 is 3.0000000000000004 tenths.
    if (Math.abs(y - Math.round(y)) <= Math.max(1e-9, 1e-12 * Math.abs(y))) return DECIMAL_STEPS[k] as number;
  }
  return 1e-12;
}

const DECIMAL_STEPS = [1, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12];
/** 10 ** k for each step, computed once (exact doubles: the same products as `10 ** k` in the loop). */
const POWERS_OF_TEN = DECIMAL_STEPS.map((_, k) => 10 ** k);

/** Where a detector keeps the series' resolution (learnQuantum). */
export interface Resolution {
  /** The decimal step of the series' values (Infinity before the first value). */
  quantum: number;
  /** Share of recent values finer than `quantum` (an EWMA over QUANTUM_MEMORY values). */
  quantumFiner: number;
}

/** Values the share of finer values is averaged over. */
const QUANTUM_MEMORY = 288;
/**
 * Share of recent values that must need a finer step before it becomes the series' resolution:
 * a tenth. A few odd values (a bucket averaging two points of an integer series, an hour of
 * duplicates measured otherwise) do not make a noise-free integer series' floor a thousandth; a
 * series kept to three decimals (nine values in ten need the third decimal) is found within its
 * first ~30 values, the detectors' warm-up.
 */
const QUANTUM_SHARE = 0.1;

/**
 * Learns the series' resolution from `x`: the first value's decimal step, then a finer step once
 * more than QUANTUM_SHARE of the recent values need it. A resolution never coarsens (a series
 * whose first values were finer than the rest keeps the finer floor: the safe side).
 */
export function learnQuantum(s: Resolution, x: number): void {
  if (!Number.isFinite(x)) return;
  const q = resolutionOf(x);
  if (s.quantum === Infinity) {
    s.quantum = q;
    return;
  }
  s.quantumFiner += ((q < s.quantum ? 1 : 0) - s.quantumFiner) / QUANTUM_MEMORY;
  if (s.quantumFiner > QUANTUM_SHARE) {
    s.quantum = q;
    s.quantumFiner = 0;
  }
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

export interface RobustState extends Resolution {
  /**
   * The window sorted, and beside each value its place in arrival order (its ring position,
   * arrival count mod the window): the oldest value is the one whose place is `head`. The values
   * in arrival order were a second array of doubles (1 KB a series at the default window); their
   * places take a byte each (two past 256).
   */
  sorted: Float64Array;
  places: Uint8Array | Uint16Array;
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
    return { sorted: new Float64Array(w), places: w <= 256 ? new Uint8Array(w) : new Uint16Array(w), n: 0, head: 0, median: Number.NaN, scale: Number.NaN, quantum: Infinity, quantumFiner: 0 };
  }

  step(s: RobustState, obs: Observation): Score {
    let result: Score = NOT_READY;
    const w = s.sorted.length;
    const size = Math.min(s.n, w);
    if (s.n >= this.options.warmup) {
      const median = sortedMedian(s.sorted, size);
      const mad = sortedMad(s.sorted, size, median);
      let scale = MAD_TO_SIGMA * mad;
      if (!(scale > 0)) {
        let meanAd = 0;
        for (let i = 0; i < size; i++) meanAd += Math.abs((s.sorted[i] as number) - median);
        scale = (MEAN_AD_TO_SIGMA * meanAd) / size;
      }
      scale = Math.max(scale, scaleFloor(median, s.quantum));
      s.median = median;
      s.scale = scale;
      const z = (obs.value - median) / scale;
      result = { score: zScore(z), expected: median, lower: median - 4.5 * scale, upper: median + 4.5 * scale, ready: true, drivers: { z } };
    }
    const { sorted, places } = s;
    let m = size;
    if (size === w) {
      // Full: the oldest value (the one at ring position head) leaves the sorted window.
      const at = places.indexOf(s.head);
      sorted.copyWithin(at, at + 1, m);
      places.copyWithin(at, at + 1, m);
      m--;
    }
    const at = lowerBound(sorted, m, obs.value);
    sorted.copyWithin(at + 1, at, m);
    places.copyWithin(at + 1, at, m);
    sorted[at] = obs.value;
    places[at] = s.head;
    s.head = (s.head + 1) % w;
    s.n++;
    learnQuantum(s, obs.value);
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

export interface EwmaState extends Resolution {
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
    return { mean: 0, trend: 0, variance: 0, n: 0, outliers: 0, quantum: Infinity, quantumFiner: 0 };
  }

  step(s: EwmaState, obs: Observation): Score {
    const { alpha, varianceAlpha, trendAlpha, warmup, clip, regimeAfter } = this.options;
    const x = obs.value;
    if (s.n === 0) {
      s.mean = x;
      s.n = 1;
      learnQuantum(s, x);
      return NOT_READY;
    }
    const forecast = s.mean + s.trend;
    const sigma = Math.max(Math.sqrt(s.variance), scaleFloor(forecast, s.quantum));
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
    learnQuantum(s, x);
    return result;
  }
}

// ---------------------------------------------------------------------------------------------

export interface SeasonalOptions {
  /**
   * Candidate periods (default an hour, a day, a week). Each one a bucket width can resolve (at
   * least two buckets per period) learns a profile; the one that predicts the series best reports.
   */
  periodsMs: readonly number[];
  /**
   * Most slots of one profile. A period of at most this many buckets gets one slot per bucket
   * (sharp edges stay sharp); a longer one gets this many slots, interpolated between slot centres.
   */
  maxSlots: number;
  /** Weight of a new value in its slot's profile (per visit, after the first). */
  alpha: number;
  /** Smoothing of the level offset (how far the series runs above or below its profile now). */
  levelAlpha: number;
  /**
   * Periods seen before a candidate reports: two for periods up to a day, one for longer ones (two
   * weeks of warm-up would leave calendar effects unseen for a fortnight).
   */
  warmupPeriods: number;
  /**
   * The detector reports only when the best profile explains the data: its residual variance
   * below this fraction of the variance around the plain level of the last day (the data "has a
   * season").
   */
  explains: number;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** A series' layout before its first bucket (no width yet). */
const NO_LAYOUT = new Int32Array(0);

export const SEASONAL_DEFAULTS: Readonly<SeasonalOptions> = Object.freeze({ periodsMs: Object.freeze([HOUR_MS, DAY_MS, 7 * DAY_MS]), maxSlots: 288, alpha: 0.3, levelAlpha: 0.02, warmupPeriods: 2, explains: 0.5 });

// Per-candidate numbers in SeasonalState.stats.
const LEVEL = 0;
const RESIDUAL_VAR = 1;
const OUTLIERS = 2;
const CUR_SLOT = 3;
const CUR_SUM = 4;
const CUR_N = 5;
/** Residuals the residual variance has learnt from. */
const RESIDUALS = 6;
/** Mean absolute error of every prediction over about a day, outliers included: how candidates compare. */
const ERROR = 7;
/** The level offset as it was before the current run of suspected anomalies began. */
const RUN_LEVEL = 8;
const STATS = 9;

export interface SeasonalState extends Resolution {
  /**
   * The candidates' profiles one after another (slot values, absolute level; NaN: a slot not yet
   * visited), sized at the first bucket from its width; `offsets[c]` is where candidate c starts,
   * `slots[c]` its slot count (0: the width cannot resolve the period). The layout depends only on
   * the width: series of one width share its two arrays (never written after `layout`).
   */
  profile: Float32Array;
  offsets: Int32Array;
  slots: Int32Array;
  /** Per candidate: level offset, residual variance, outlier run, current slot visit (slot, sum, n). */
  stats: Float64Array;
  plainMean: number;
  plainVar: number;
  firstMs: number;
  n: number;
}

/**
 * Seasonal baseline with the period found per series: for every candidate period, a per-slot
 * profile learnt by EWMA over successive periods plus a level offset that follows the recent
 * residual, and the residual variance of its one-step predictions. The candidate with the
 * smallest residual variance reports: expected = profile + offset, z = residual / σ of its
 * residuals. An hourly batch job is then the hourly profile's normal, a weekend the weekly one's.
 * Silent (not ready) until a candidate has warmed up, and when no profile beats a flat level.
 */
export class Seasonal implements Detector<SeasonalState> {
  readonly name = 'seasonal';
  /** Per candidate, within one step: 0 the bucket is not learnt, 1 learnt by a candidate warming up, 2 by a warm one. */
  private readonly learnAt: Int8Array;
  /** The profiles' layout per bucket width (SeasonalState.offsets and slots), shared by the series of that width. */
  private readonly layouts = new Map<number, { offsets: Int32Array; slots: Int32Array; total: number }>();

  constructor(readonly options: SeasonalOptions = SEASONAL_DEFAULTS) {
    this.learnAt = new Int8Array(options.periodsMs.length);
  }

  init(): SeasonalState {
    const c = this.options.periodsMs.length;
    return {
      profile: new Float32Array(0),
      offsets: NO_LAYOUT,
      slots: NO_LAYOUT,
      stats: new Float64Array(c * STATS),
      plainMean: 0,
      plainVar: 0,
      firstMs: Number.NaN,
      n: 0,
      quantum: Infinity,
      quantumFiner: 0,
    };
  }

  /** Sizes the profiles for the series' bucket width. */
  private layout(s: SeasonalState, widthMs: number): void {
    const layout = this.layoutOf(widthMs);
    s.offsets = layout.offsets;
    s.slots = layout.slots;
    for (let c = 0; c < this.options.periodsMs.length; c++) s.stats[c * STATS + CUR_SLOT] = -1;
    s.profile = new Float32Array(layout.total).fill(Number.NaN);
  }

  /** The shared layout of a width. */
  private layoutOf(widthMs: number): { offsets: Int32Array; slots: Int32Array; total: number } {
    let layout = this.layouts.get(widthMs);
    if (!layout) {
      const c = this.options.periodsMs.length;
      layout = { offsets: new Int32Array(c), slots: new Int32Array(c), total: 0 };
      for (let i = 0; i < c; i++) {
        const buckets = Math.floor((this.options.periodsMs[i] as number) / widthMs);
        const k = buckets >= 2 ? Math.min(buckets, this.options.maxSlots) : 0;
        layout.offsets[i] = layout.total;
        layout.slots[i] = k;
        layout.total += k;
      }
      this.layouts.set(widthMs, layout);
    }
    return layout;
  }

  /** A state read back from a snapshot (or cloned) has copies of its layout: it shares the width's again. */
  private share(s: SeasonalState, widthMs: number): void {
    const layout = this.layoutOf(widthMs);
    const same = (a: Int32Array, b: Int32Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
    if (same(s.offsets, layout.offsets) && same(s.slots, layout.slots)) {
      s.offsets = layout.offsets;
      s.slots = layout.slots;
    }
  }

  /** Slot of `tsMs` in candidate c. */
  private slotOf(s: SeasonalState, c: number, tsMs: number, widthMs: number): number {
    const periodMs = this.options.periodsMs[c] as number;
    const k = s.slots[c] as number;
    return Math.min(k - 1, Math.floor(((((tsMs + widthMs / 2) % periodMs) + periodMs) % periodMs) / (periodMs / k)));
  }

  /** The profile at `tsMs` in candidate c (interpolated between slot centres when slots are coarser than buckets; NaN when a slot is unvisited). */
  private profileAt(s: SeasonalState, c: number, tsMs: number, widthMs: number): number {
    const periodMs = this.options.periodsMs[c] as number;
    const k = s.slots[c] as number;
    const at = s.offsets[c] as number;
    if (k * widthMs >= periodMs) return s.profile[at + this.slotOf(s, c, tsMs, widthMs)] as number;
    const phase = ((((tsMs + widthMs / 2) % periodMs) + periodMs) % periodMs) / (periodMs / k) - 0.5;
    const lo = Math.floor(phase);
    const f = phase - lo;
    const i = at + ((lo + k) % k);
    const j = at + ((lo + 1) % k);
    const a = s.profile[i] as number;
    return a + ((s.profile[j] as number) - a) * f;
  }

  step(s: SeasonalState, obs: Observation): Score {
    const { periodsMs, levelAlpha, warmupPeriods, explains } = this.options;
    const x = obs.value;
    const w = obs.widthMs;
    if (s.n === 0) {
      s.firstMs = obs.tsMs;
      this.layout(s, w);
    } else if (s.offsets !== this.layouts.get(w)?.offsets) this.share(s, w);
    // Plain level and variance over the last day, the yardstick of whether a season explains anything.
    const pd = x - s.plainMean;
    const pa = s.n === 0 ? 1 : Math.max(1 / (s.n + 1), Math.min(0.5, w / DAY_MS));
    s.plainMean += pa * pd;
    s.plainVar = (1 - pa) * (s.plainVar + pa * pd * pd);
    const elapsed = obs.tsMs - s.firstMs;

    let result: Score = NOT_READY;
    let best = Infinity;
    let suspect = false;
    const errorAlpha = Math.min(0.5, w / DAY_MS);
    for (let c = 0; c < periodsMs.length; c++) {
      const k = s.slots[c] as number;
      if (k === 0) continue;
      const periodMs = periodsMs[c] as number;
      const st = c * STATS;
      const base = this.profileAt(s, c, obs.tsMs, w);
      // Warm after its periods and a day of residuals (a day at least shows whether it explains anything).
      const warm = elapsed >= (periodMs > DAY_MS ? 1 : warmupPeriods) * periodMs && (s.stats[st + RESIDUALS] as number) * w >= DAY_MS && !Number.isNaN(base);
      let learn = true;
      if (warm) {
        const residualVar = s.stats[st + RESIDUAL_VAR] as number;
        let expected = base + (s.stats[st + LEVEL] as number);
        let sigma = Math.max(Math.sqrt(residualVar), scaleFloor(expected, s.quantum));
        let z = (x - expected) / sigma;
        if ((s.stats[st + OUTLIERS] as number) > 0 && Math.abs(z) >= 3) {
          // The series is back where it was before the run began (the end of a level drop the
          // level offset had started to follow): the episode is over, and the offset it moved
          // goes back. Left moved, it would take the profile ~100 buckets to return to normal,
          // and the slots learnt meanwhile would carry the error into the following days.
          const before = base + (s.stats[st + RUN_LEVEL] as number);
          const sigmaBefore = Math.max(Math.sqrt(residualVar), scaleFloor(before, s.quantum));
          if (Math.abs(x - before) < 3 * sigmaBefore) {
            s.stats[st + LEVEL] = s.stats[st + RUN_LEVEL] as number;
            s.stats[st + OUTLIERS] = 0;
            expected = before;
            sigma = sigmaBefore;
            z = (x - expected) / sigma;
          }
        }
        // The candidate with the smallest error reports, if it explains the data (strict: a series
        // constant all day, both 0, has no season).
        const error = s.stats[st + ERROR] as number;
        const errorVar = (MEAN_AD_TO_SIGMA * error) ** 2;
        if (errorVar < explains * s.plainVar && error < best) {
          best = error;
          const season = errorVar / s.plainVar;
          result = { score: zScore(z), expected, lower: expected - 4.5 * sigma, upper: expected + 4.5 * sigma, ready: true, drivers: { z, season, period: periodMs / 1000 } };
        }
        // Suspected anomalies (|z| ≥ 3) teach nothing: a broken season would otherwise widen its
        // own band and silence the detector, and a one-night incident would come back as a false
        // alarm the next night. A deviation lasting a slot (at least 6 buckets) is a new level; one
        // lasting a quarter of the period, a new shape the profile learns. The residual σ learns
        // from normal buckets only.
        const run = Math.abs(z) < 3 ? 0 : (s.stats[st + OUTLIERS] as number) + 1;
        if (run === 1) s.stats[st + RUN_LEVEL] = s.stats[st + LEVEL] as number;
        s.stats[st + OUTLIERS] = run;
        const rd = x - expected;
        s.stats[st + ERROR] = error + errorAlpha * (Math.abs(rd) - error);
        if (run === 0 || run > Math.max(6, periodMs / k / w)) s.stats[st + LEVEL] = (s.stats[st + LEVEL] as number) + levelAlpha * rd;
        if (run === 0) this.learnResidual(s, st, rd);
        learn = run === 0 || run > Math.max(6, periodMs / 4 / w);
      } else if (!Number.isNaN(base)) {
        // Before the profile is trusted, the residual variance and the error learn against the profile as it stands.
        const r = x - base - (s.stats[st + LEVEL] as number);
        this.learnResidual(s, st, r);
        const n = s.stats[st + RESIDUALS] as number;
        s.stats[st + ERROR] = (s.stats[st + ERROR] as number) + Math.max(errorAlpha, 1 / n) * (Math.abs(r) - (s.stats[st + ERROR] as number));
      }
      this.learnAt[c] = learn ? (warm ? 2 : 1) : 0;
      if (warm && !learn) suspect = true;
    }
    for (let c = 0; c < periodsMs.length; c++) {
      if ((s.slots[c] as number) === 0) continue;
      const st = c * STATS;
      // The profile learns slot means: a slot visit (consecutive buckets in one slot) is averaged,
      // then folded into the slot's value when the visit ends. A candidate still warming up does
      // not learn a bucket a warm one suspects (a weekly profile must not learn the week's incident).
      const slot = this.slotOf(s, c, obs.tsMs, w);
      if (slot !== s.stats[st + CUR_SLOT]) {
        this.foldVisit(s, c);
        s.stats[st + CUR_SLOT] = slot;
      }
      const learn = this.learnAt[c] as number;
      if (learn === 2 || (learn === 1 && !suspect)) {
        s.stats[st + CUR_SUM] = (s.stats[st + CUR_SUM] as number) + x - (learn === 2 ? (s.stats[st + LEVEL] as number) : 0);
        s.stats[st + CUR_N] = (s.stats[st + CUR_N] as number) + 1;
      }
    }
    s.n++;
    learnQuantum(s, x);
    return result;
  }

  /** Number of candidate periods. */
  get periods(): number {
    return this.options.periodsMs.length;
  }

  /**
   * Whether candidate c's profile has seen enough to forecast from at `tsMs`: the width resolves
   * its period and the warm-up periods have passed (models/forecast.ts).
   */
  warmAt(s: SeasonalState, c: number, tsMs: number): boolean {
    if (s.n === 0 || (s.slots[c] as number) === 0) return false;
    const periodMs = this.options.periodsMs[c] as number;
    return tsMs - s.firstMs >= (periodMs > DAY_MS ? 1 : this.options.warmupPeriods) * periodMs;
  }

  /** Period of candidate c, ms. */
  periodOf(c: number): number {
    return this.options.periodsMs[c] as number;
  }

  /** Mean of candidate c's visited slots (NaN: none visited): what a forecast subtracts to keep the season's shape alone. */
  profileMean(s: SeasonalState, c: number): number {
    const at = s.offsets[c] as number;
    const k = s.slots[c] as number;
    let sum = 0;
    let n = 0;
    for (let i = at; i < at + k; i++) {
      const v = s.profile[i] as number;
      if (!Number.isNaN(v)) {
        sum += v;
        n++;
      }
    }
    return n > 0 ? sum / n : Number.NaN;
  }

  /** Candidate c's profile at `tsMs` (NaN: its slot not yet visited). */
  profileValue(s: SeasonalState, c: number, tsMs: number, widthMs: number): number {
    return this.profileAt(s, c, tsMs, widthMs);
  }

  /** EWMA of squared residuals, unbiased from the first: the weight is 1/n (the plain mean) until it falls to levelAlpha. */
  private learnResidual(s: SeasonalState, st: number, r: number): void {
    const n = (s.stats[st + RESIDUALS] as number) + 1;
    const v = s.stats[st + RESIDUAL_VAR] as number;
    s.stats[st + RESIDUAL_VAR] = v + Math.max(this.options.levelAlpha, 1 / n) * (r * r - v);
    s.stats[st + RESIDUALS] = n;
  }

  private foldVisit(s: SeasonalState, c: number): void {
    const st = c * STATS;
    const cur = s.stats[st + CUR_SLOT] as number;
    const n = s.stats[st + CUR_N] as number;
    if (cur < 0 || n === 0) return;
    const mean = (s.stats[st + CUR_SUM] as number) / n;
    const i = (s.offsets[c] as number) + cur;
    const v = s.profile[i] as number;
    // A NaN slot is one never visited (decoders refuse NaN; a mean past float32's range, above
    // 3.4e38, makes the slot NaN too, and it then starts afresh instead of staying NaN for good).
    s.profile[i] = Number.isNaN(v) ? mean : v + this.options.alpha * (mean - v);
    s.stats[st + CUR_SUM] = 0;
    s.stats[st + CUR_N] = 0;
  }
}
