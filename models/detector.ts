/**
 * The detector contract (DESIGN.md §8). Detectors score closed buckets, one series at a time, in
 * event-time order. A detector is stateless code; everything it learns about a series lives in a
 * state object it creates, made of numbers and typed arrays only, so that it is compact, bounded
 * (fixed-size rings, no growth with history) and serialisable with `structuredClone` or a
 * worker `postMessage`.
 */

/** One closed bucket of one series, as detectors see it. */
export interface Observation {
  /** Bucket start, ms since the epoch (UTC). */
  tsMs: number;
  widthMs: number;
  /** The scored value: the bucket's mean (of per-second rates, for counters). */
  value: number;
  /** Points in the bucket. */
  count: number;
  min: number;
  max: number;
  /** Standard deviation of the points inside the bucket (0 for one point). */
  std: number;
}

/** What drove a score: named contributions, e.g. `{ z: 6.1 }` or `{ level: 0.8, change: 0.1 }`. */
export type Drivers = Record<string, number>;

export interface Score {
  /**
   * Calibrated anomaly score in [0, 1]: 0 is normal, 0.5 is the edge of what the detector calls
   * anomalous at default sensitivity, 1 is certain. Always 0 while the detector warms up.
   */
  score: number;
  /** The value the detector expected for this bucket (NaN when it has no opinion yet). */
  expected: number;
  /** Band of normal values around `expected` (NaN when none). */
  lower: number;
  upper: number;
  /** False during warm-up: the score is 0 and must not be trusted. */
  ready: boolean;
  drivers: Drivers;
}

export interface Detector<S> {
  /** Short lower-case name: the anomalies table column suffix and the explanation key. */
  readonly name: string;
  /** Fresh per-series state. */
  init(): S;
  /** Scores `obs` against what the state has learnt so far, then learns `obs`. */
  step(state: S, obs: Observation): Score;
}

export const NOT_READY: Readonly<Score> = Object.freeze({ score: 0, expected: Number.NaN, lower: Number.NaN, upper: Number.NaN, ready: false, drivers: {} });

/** Standard normal upper tail P(Z > z), Abramowitz–Stegun 7.1.26 via erfc (|error| < 1.5e-7). */
export function normalTail(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erfc = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * Math.exp(-x * x);
  return z >= 0 ? erfc / 2 : 1 - erfc / 2;
}

/**
 * The shared calibration of z-like deviations: the two-sided normal tail p of |z|, mapped to
 * -log10(p) / 10 and clipped to [0, 1]. |z| = 3 gives 0.26, 4 gives 0.42, 4.5 gives 0.52 (the
 * default 0.5 edge, p ≈ 7e-6), 6 gives 0.87, 6.4 and above give 1. A log scale keeps scores of
 * extreme deviations apart where a plain 1 − p would make them all 1.
 */
export function zScore(z: number): number {
  if (!Number.isFinite(z)) return Number.isNaN(z) ? 0 : 1;
  const p = 2 * normalTail(Math.abs(z));
  if (p <= 0) return 1;
  return Math.min(1, Math.max(0, -Math.log10(p) / 10));
}
