import { describe, expect, it } from 'vitest';
import { CALIBRATION_DEFAULTS, likelihoodScore, TailCalibrator } from '../../../models/calibration.js';
import { normalTail } from '../../../models/detector.js';
import { rng } from '../../../bench/generator.js';

/** Bin of a deviation: 3 per octave, edge(k) = 2^((k − 8)/3) ≤ r < edge(k + 1), clamped to 0..39. */
const bin = (r: number): number => (r > 0 ? Math.max(0, Math.min(39, Math.floor(Math.log2(r) * 3) + 8)) : 0);
// (A deviation past the last bin's edge lands in the last bin, never beyond: the histories sit side by side in one array.)
const tail = (r: number): number => 2 * normalTail(r);

/**
 * The documented likelihood without a histogram: every past deviation kept with weight
 * decay^age (1/k for the k-th of a run of deviations ≥ 3); p is the larger of the normal tail and
 * (weight in r's bin and above − excess) / total, for the bucket's |z| and for the sustained
 * |z_t + z_t-1 + z_t-2| / √3; the smaller, doubled.
 */
class ExactLikelihood {
  private readonly instant: [number, number][] = [];
  private readonly sustained: [number, number][] = [];
  private readonly zs: number[] = [];
  private total = 0;
  private run = 0;
  private sustainedRun = 0;

  step(z: number): number {
    const d = 1 - 1 / CALIBRATION_DEFAULTS.memory;
    const r = Math.abs(z);
    const s = this.zs.length >= 2 ? Math.abs(z + this.zs.at(-1)! + this.zs.at(-2)!) / Math.sqrt(3) : r;
    const p = (history: [number, number][], x: number): number => {
      const from = history.filter(([v]) => bin(v) >= bin(x)).reduce((sum, [, w]) => sum + w, 0);
      return Math.max(tail(x), Math.max(0, from - CALIBRATION_DEFAULTS.excess) / Math.max(this.total, 1));
    };
    const result = Math.min(1, 2 * Math.min(p(this.instant, r), p(this.sustained, s)));
    for (const h of [this.instant, this.sustained]) for (const e of h) e[1] *= d;
    this.run = r >= 3 ? this.run + 1 : 0;
    this.sustainedRun = s >= 3 ? this.sustainedRun + 1 : 0;
    this.instant.push([r, 1 / Math.max(this.run, 1)]);
    this.sustained.push([s, 1 / Math.max(this.sustainedRun, 1)]);
    this.total = this.total * d + 1;
    this.zs.push(z);
    return result;
  }
}

describe('TailCalibrator', () => {
  it('matches the likelihood computed from every past deviation (float32 bins, forgetting, both statistics)', () => {
    const c = new TailCalibrator();
    const s = c.init();
    const exact = new ExactLikelihood();
    const r = rng(4);
    for (let i = 0; i < 3000; i++) {
      // Mostly small deviations, exactly 3 (where runs start), a recurring |z| ≈ 16, rare large
      // ones and some past the last bin (2^31/3 ≈ 1,290); random signs.
      const u = r();
      const size = u < 0.75 ? r() * 3 : u < 0.8 ? 3 : u < 0.97 ? 16 + r() : u < 0.99 ? 30 + r() * 100 : 2000 + r() * 1e5;
      const z = (r() < 0.5 ? -1 : 1) * size;
      const want = exact.step(z);
      const got = c.step(s, 0, z).p;
      expect(got, `bucket ${i}`).toBeCloseTo(want, 5);
      if (want > 1e-3) expect(Math.abs(got - want) / want, `bucket ${i}`).toBeLessThan(1e-4);
    }
  });

  it('with no history is the doubled two-sided normal tail; non-finite deviations are extreme or nothing', () => {
    const c = new TailCalibrator();
    expect(c.step(c.init(), 0, 4.5).p).toBeCloseTo(2 * tail(4.5), 12);
    expect(c.step(c.init(), 0, -3).p).toBeCloseTo(2 * tail(3), 12);
    expect(c.step(c.init(), 0, Number.POSITIVE_INFINITY).p).toBe(0);
    expect(c.step(c.init(), 0, Number.NaN).p).toBe(1);
  });

  it('learns a recurring deviation as ordinary: an hourly job of |z| = 60 in one bucket of four', () => {
    const c = new TailCalibrator();
    const s = c.init();
    const first = c.step(s, 0, 60).p;
    let last = first;
    for (let i = 1; i < 400; i++) last = c.step(s, 0, i % 4 === 0 ? 60 : 0.5).p;
    expect(first).toBeLessThan(1e-300);
    expect(last).toBeGreaterThan(0.1);
  });

  it('learns a lasting episode like a few incidents (the k-th bucket of a run weighs 1/k), not as a new normal', () => {
    const c = new TailCalibrator();
    const s = c.init();
    const r = rng(2);
    // Forty buckets at |z| = 10 (a level shift the detectors take a while to accept): ~ln 40 + 0.6 ≈ 4.3 in weight.
    for (let i = 0; i < 500; i++) c.step(s, 0, (r() - 0.5) * 2);
    for (let i = 0; i < 40; i++) c.step(s, 0, 10);
    for (let i = 0; i < 500; i++) c.step(s, 0, (r() - 0.5) * 2);
    expect(c.step(s, 0, 10).p).toBeLessThan(1e-20);
    // The same forty buckets spread out one at a time are forty incidents: ordinary by now.
    const spread = c.init();
    for (let i = 0; i < 1050; i++) c.step(spread, 0, i % 26 === 25 ? 10 : (r() - 0.5) * 2);
    expect(c.step(spread, 0, 10).p).toBeGreaterThan(0.01);
  });

  it('does not learn the last few incidents: the fifth spike in two thousand buckets is as surprising as the first', () => {
    const c = new TailCalibrator();
    const s = c.init();
    const r = rng(9);
    const spikes: number[] = [];
    for (let i = 0; i < 2000; i++) {
      if (i % 400 === 399) spikes.push(c.step(s, 0, 8).p);
      else c.step(s, 0, (r() - 0.5) * 3);
    }
    expect(spikes).toHaveLength(5);
    // The normal tail of |z| = 8, doubled: ~2.5e-15, for every one of them.
    for (const p of spikes) expect(p).toBeLessThan(1e-14);
  });

  it('finds a sustained surge among single-bucket bursts: three buckets of |z| = 3 after many lone bursts of 6', () => {
    const c = new TailCalibrator();
    const s = c.init();
    for (let i = 0; i < 1000; i++) c.step(s, 0, i % 20 === 0 ? 6 : 0);
    const burst = c.step(s, 0, 6).p;
    c.step(s, 0, 0);
    c.step(s, 0, 0);
    c.step(s, 0, 3);
    c.step(s, 0, 3);
    const surge = c.step(s, 0, 3).p;
    // A lone burst is ordinary here; three moderate buckets in a row are not (sustained |z| = 3√3 ≈ 5.2).
    expect(burst).toBeGreaterThan(0.05);
    expect(surge).toBeLessThan(1e-5);
  });

  it('keeps several histories in one array at offsets of `size`', () => {
    const c = new TailCalibrator();
    const shared = new Float32Array(3 * c.size);
    const alone = c.init();
    for (let i = 0; i < 50; i++) {
      c.step(shared, c.size, i % 5 === 0 ? 10 : 1);
      expect(c.step(shared, 2 * c.size, i % 7)).toEqual(c.step(alone, 0, i % 7));
    }
    expect(Array.from(shared.subarray(0, c.size)).every((x) => x === 0)).toBe(true);
  });
});

describe('likelihoodScore', () => {
  it('is 1 − 2^(log10 p / 5): 0.5 at 1e-5, 0.75 at 1e-10, continuous past them, 0 at 1, 1 only at 0', () => {
    expect(likelihoodScore(1e-5)).toBeCloseTo(0.5, 12);
    expect(likelihoodScore(1e-10)).toBeCloseTo(0.75, 12);
    expect(likelihoodScore(1e-20)).toBeCloseTo(0.9375, 12);
    expect(likelihoodScore(1)).toBe(0);
    expect(likelihoodScore(2)).toBe(0);
    expect(likelihoodScore(0)).toBe(1);
    expect(likelihoodScore(Number.NaN)).toBe(0);
    expect(likelihoodScore(1e-100)).toBeLessThan(1);
    expect(likelihoodScore(1e-100)).toBeGreaterThan(likelihoodScore(1e-99));
  });
});
