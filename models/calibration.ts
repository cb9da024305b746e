import { normalTail } from './detector.js';

/**
 * Anomaly likelihood (issue 14; the idea of Numenta's anomaly likelihood): a detector's raw
 * deviation |z| is judged against the deviations the same detector produced on the same series
 * recently, not only against a normal table. A series whose hourly job puts |z| = 60 in one bucket
 * of four learns that |z| = 60 is ordinary for it; a noise-free series learns that its daily edges
 * are. The result is a tail probability p, continuous in the deviation and comparable across
 * series and detectors:
 *
 *   p = max(P(|N(0,1)| ≥ r), (mass of history ≥ r − excess) / mass of history)
 *
 * The normal tail is the floor: history only ever makes a deviation less surprising, when it has
 * seen deviations at least as large more than `excess` times (the last few incidents of a series
 * do not make the next one normal; a recurring pattern does).
 *
 * Two statistics per detector: the bucket's own |z|, and the sustained deviation
 * |z_t + z_{t-1} + z_{t-2}| / √3 (normal with σ 1 under independent normal z), which finds a surge
 * of moderate buckets among heavy-tailed single-bucket bursts. Each has its own history; p is the
 * smaller of the two, doubled (Bonferroni). A history is a histogram of log-spaced bins with
 * exponential forgetting (`memory` buckets); deviations in the same bin as r (within a factor
 * 2^(1/3)) count as at least r. State: numbers in a Float32Array.
 *
 * The score is 1 − 2^(−L/5) with L = −log10 p: p = 1e-5 is 0.5, 1e-10 is 0.75, 1e-20 is 0.94 — it
 * keeps ranking extreme deviations apart instead of saturating at 1.
 */
export interface CalibrationOptions {
  /** Buckets of history (the forgetting time constant). */
  memory: number;
  /**
   * Deviations at least as large that history must hold (forgetting included) before they start
   * to count as ordinary: a recurring pattern (an hourly job: hundreds a week) is learnt, the
   * last few incidents of the series are not.
   */
  excess: number;
}

export const CALIBRATION_DEFAULTS: Readonly<CalibrationOptions> = Object.freeze({ memory: 2016, excess: 5 });

/** Bins per octave of |z| and the number of bins: the bins cover |z| from 2^-8/3 ≈ 0.16 to 2^31/3 ≈ 1,290. */
const PER_OCTAVE = 3;
export const BINS = 40;
const OFFSET = 8;
// Layout of a state: [instant bins | sustained bins | mass, z(t-1), z(t-2), seen].
const SUSTAINED = BINS;
const MASS = 2 * BINS;
const Z1 = MASS + 1;
const Z2 = MASS + 2;
const SEEN = MASS + 3;
/** Consecutive buckets so far with |z| ≥ RUN_Z, and with the sustained deviation ≥ RUN_Z. */
const RUN = MASS + 4;
const SUSTAINED_RUN = MASS + 5;
const SIZE = MASS + 6;
/** A deviation the normal table already calls unusual (p < 0.003): consecutive ones form a run. */
const RUN_Z = 3;

function binOf(r: number): number {
  if (!(r > 0)) return 0;
  // edge(k) ≤ r < edge(k + 1).
  const k = Math.floor(Math.log2(r) * PER_OCTAVE) + OFFSET;
  return Math.max(0, Math.min(BINS - 1, k));
}

/**
 * Mass of the bins at `base` from r's bin up: deviations within a bin (a factor 2^(1/3) ≈ 1.26) of r
 * count as at least as large. Conservative: a deviation is never judged rarer than its bin.
 */
function massFrom(s: Float32Array, base: number, r: number): number {
  let mass = 0;
  for (let j = binOf(r); j < BINS; j++) mass += s[base + j] as number;
  return mass;
}

export interface Calibrated {
  /** Tail probability of the deviation among the series' recent deviations (doubled smaller tail of the two statistics). */
  p: number;
  /** likelihoodScore(p). */
  score: number;
  /** The sustained deviation of the last three buckets. */
  sustained: number;
}

export class TailCalibrator {
  private readonly decay: number;

  constructor(readonly options: CalibrationOptions = CALIBRATION_DEFAULTS) {
    this.decay = 1 - 1 / options.memory;
  }

  /** Numbers of one history: several can share one array, at offsets of this size. */
  readonly size = SIZE;

  init(): Float32Array {
    return new Float32Array(SIZE);
  }

  /** Judges the signed deviation `z` against the history at `at` in `s`, then learns it. */
  step(s: Float32Array, at: number, z: number): Calibrated {
    const zz = Number.isFinite(z) ? z : Number.isNaN(z) ? 0 : Math.sign(z) * 1e6;
    const r = Math.abs(zz);
    const seen = s[at + SEEN] as number;
    // The sustained statistic needs three deviations; until then it is the instant one.
    const sustained = seen >= 2 ? Math.abs(zz + (s[at + Z1] as number) + (s[at + Z2] as number)) / Math.sqrt(3) : r;
    const mass = s[at + MASS] as number;
    const k = this.options.excess;
    const history = Math.max(mass, 1);
    const p1 = Math.max(2 * normalTail(r), Math.max(0, massFrom(s, at, r) - k) / history);
    const p3 = Math.max(2 * normalTail(sustained), Math.max(0, massFrom(s, at + SUSTAINED, sustained) - k) / history);
    const p = Math.min(1, 2 * Math.min(p1, p3));
    const d = this.decay;
    for (let j = at; j < at + MASS; j++) s[j] = (s[j] as number) * d;
    // The k-th bucket of a run of unusual deviations weighs 1/k: a lasting episode (a level shift
    // the detectors take 60 buckets to accept) is learnt like a few incidents, ~ln of its length,
    // not as a new normal; a recurring short pattern (a 3-bucket job every hour) still is.
    const run = r >= RUN_Z ? (s[at + RUN] as number) + 1 : 0;
    const sustainedRun = sustained >= RUN_Z ? (s[at + SUSTAINED_RUN] as number) + 1 : 0;
    s[at + RUN] = Math.min(run, 1e6);
    s[at + SUSTAINED_RUN] = Math.min(sustainedRun, 1e6);
    s[at + binOf(r)] = (s[at + binOf(r)] as number) + 1 / Math.max(run, 1);
    s[at + SUSTAINED + binOf(sustained)] = (s[at + SUSTAINED + binOf(sustained)] as number) + 1 / Math.max(sustainedRun, 1);
    s[at + MASS] = mass * d + 1;
    s[at + Z2] = s[at + Z1] as number;
    s[at + Z1] = zz;
    s[at + SEEN] = Math.min(seen + 1, 1e6);
    return { p, score: likelihoodScore(p), sustained };
  }
}

/** 1 − 2^(log10(p) / 5) in [0, 1]: p = 1e-5 is 0.5, the default edge of an anomaly; 1 only for p = 0. */
export function likelihoodScore(p: number): number {
  if (Number.isNaN(p)) return 0;
  if (!(p > 0)) return 1;
  return p >= 1 ? 0 : 1 - Math.pow(2, Math.log10(p) / 5);
}
