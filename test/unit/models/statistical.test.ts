import { describe, expect, it } from 'vitest';
import { NOT_READY, normalTail, zScore, type Observation, type Score } from '../../../models/detector.js';
import { Ewma, EWMA_DEFAULTS, RobustZ, scaleFloor, Seasonal, type EwmaState, type SeasonalState } from '../../../models/statistical.js';
import { rng } from '../../../bench/generator.js';

const HOUR = 3_600_000;

function obs(i: number, value: number, widthMs = 60_000): Observation {
  return { tsMs: Date.UTC(2026, 0, 1) + i * widthMs, widthMs, value, count: 1, min: value, max: value, std: 0 };
}

function noise(seed: number): () => number {
  const r = rng(seed);
  // Sum of uniforms: close enough to normal, σ = 1.
  return () => (r() + r() + r() + r() - 2) * Math.sqrt(3);
}

describe('calibration', () => {
  it('maps |z| to -log10(two-sided p)/10, with 4.5 at about the 0.5 edge', () => {
    expect(normalTail(0)).toBeCloseTo(0.5, 6);
    expect(normalTail(1.959964)).toBeCloseTo(0.025, 5);
    expect(zScore(0)).toBeCloseTo(0, 6);
    expect(zScore(3)).toBeCloseTo(0.257, 2);
    expect(zScore(4.5)).toBeGreaterThan(0.5);
    expect(zScore(4.4)).toBeLessThan(0.5);
    expect(zScore(-8)).toBe(1);
    expect(zScore(Number.NaN)).toBe(0);
  });
});

describe('RobustZ', () => {
  it('stays silent during warm-up, then scores a spike high and normal values low', () => {
    const d = new RobustZ();
    const s = d.init();
    const n = noise(1);
    for (let i = 0; i < 15; i++) expect(d.step(s, obs(i, 100 + n())).ready).toBe(false);
    const normal: number[] = [];
    for (let i = 15; i < 200; i++) normal.push(d.step(s, obs(i, 100 + n())).score);
    expect(Math.max(...normal)).toBeLessThan(0.5);
    const spike = d.step(s, obs(200, 112));
    expect(spike.score).toBeGreaterThan(0.9);
    expect(spike.expected).toBeCloseTo(100, 0);
    expect(spike.upper).toBeGreaterThan(spike.expected);
  });

  it('keeps the median and MAD of exactly the last window values (parity with a sort)', () => {
    const d = new RobustZ({ window: 16, warmup: 16 });
    const s = d.init();
    const n = noise(9);
    const seen: number[] = [];
    for (let i = 0; i < 300; i++) {
      // Ties and repeated values too: quantised half of the time.
      const v = i % 2 ? Math.round(n() * 2) : n();
      const r = d.step(s, obs(i, v));
      if (seen.length >= 16) {
        const w = seen.slice(-16).sort((a, b) => a - b);
        const median = (w[7]! + w[8]!) / 2;
        const dev = w.map((x) => Math.abs(x - median)).sort((a, b) => a - b);
        const mad = (dev[7]! + dev[8]!) / 2;
        expect(r.expected).toBeCloseTo(median, 12);
        if (mad > 0) expect(s.scale).toBeCloseTo(1.4826 * mad, 12);
      }
      seen.push(v);
    }
  });

  it('a series that never moved does not divide by zero on its first change', () => {
    const d = new RobustZ();
    const s = d.init();
    for (let i = 0; i < 40; i++) d.step(s, obs(i, 0));
    const r = d.step(s, obs(40, 1));
    expect(Number.isFinite(r.drivers['z'])).toBe(true);
    expect(r.score).toBe(1);
  });

  it('keeps a bounded state that survives structuredClone', () => {
    const d = new RobustZ();
    const a = d.init();
    const n = noise(2);
    for (let i = 0; i < 500; i++) d.step(a, obs(i, n()));
    expect(a.ring.length).toBe(128);
    const b = structuredClone(a);
    const x = obs(500, 3);
    expect(d.step(b, x)).toEqual(d.step(a, x));
  });
});

describe('Ewma', () => {
  it('flags the start of a level shift, then accepts the new level', () => {
    const d = new Ewma();
    const s = d.init();
    const n = noise(3);
    for (let i = 0; i < 200; i++) d.step(s, obs(i, 50 + n()));
    const scores: number[] = [];
    for (let i = 200; i < 300; i++) scores.push(d.step(s, obs(i, 70 + n())).score);
    expect(scores[0]).toBeGreaterThan(0.9);
    expect(Math.max(...scores.slice(60))).toBeLessThan(0.5);
  });
});

describe('Seasonal', () => {
  const daily = (i: number): number => 100 + 30 * Math.sin((2 * Math.PI * i) / 24);

  it('learns a daily profile and flags a missing peak the level detectors accept', () => {
    const seasonal = new Seasonal();
    const robust = new RobustZ();
    const ss = seasonal.init();
    const rs = robust.init();
    const n = noise(4);
    // Hourly buckets: 10 days to learn.
    for (let i = 0; i < 240; i++) {
      const o = obs(i, daily(i) + n(), HOUR);
      seasonal.step(ss, o);
      robust.step(rs, o);
    }
    const ok = seasonal.step(ss, obs(240, daily(240) + 0.5, HOUR));
    expect(ok.ready).toBe(true);
    expect(Math.abs(ok.expected - daily(240))).toBeLessThan(3);
    expect(ok.score).toBeLessThan(0.5);
    // At the peak (i ≡ 6 mod 24) the series stays flat at its mean: a broken season.
    for (let i = 241; i < 246; i++) seasonal.step(ss, obs(i, daily(i) + n(), HOUR));
    const broken = seasonal.step(ss, obs(246, 100, HOUR));
    const level = robust.step(rs, obs(246, 100, HOUR));
    expect(broken.score).toBeGreaterThan(0.9);
    expect(level.score).toBeLessThan(0.3);
  });

  it('stays silent on data without a season', () => {
    const d = new Seasonal();
    const s = d.init();
    const n = noise(5);
    let ready = 0;
    for (let i = 0; i < 24 * 10; i++) if (d.step(s, obs(i, 100 + n(), HOUR)).ready) ready++;
    expect(ready).toBe(0);
  });
});

/** Median of `xs` by sorting a copy. */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

/** The robust σ the detector documents: 1.4826·MAD, else 1.2533·mean absolute deviation, never below scaleFloor. */
function robustScale(xs: readonly number[]): number {
  const m = median(xs);
  const dev = xs.map((x) => Math.abs(x - m));
  const mad = median(dev);
  const meanAd = dev.reduce((a, b) => a + b, 0) / xs.length;
  return Math.max(mad > 0 ? 1.4826 * mad : 1.2533 * meanAd, 1e-3 * Math.abs(m), 1e-6);
}

describe('detector names', () => {
  it('are the ensemble’s keys for their columns and explanations', () => {
    expect([new RobustZ().name, new Ewma().name, new Seasonal().name]).toEqual(['robust', 'ewma', 'seasonal']);
  });
});

describe('scaleFloor', () => {
  it('is 1e-3 of the level for large values and 1e-6 near zero', () => {
    expect(scaleFloor(5000)).toBe(5);
    expect(scaleFloor(-5000)).toBe(5);
    expect(scaleFloor(0.002)).toBeCloseTo(2e-6, 18);
    expect(scaleFloor(1e-4)).toBe(1e-6);
    expect(scaleFloor(0)).toBe(1e-6);
  });
});

describe('RobustZ against a sorted reference', () => {
  for (const [window, warmup] of [
    [1, 1],
    [2, 2],
    [5, 3],
    [6, 4],
  ] as const) {
    it(`window ${window}, warmup ${warmup}: median, scale, band and z of the last ${window} values, and the sorted window itself`, () => {
      const d = new RobustZ({ window, warmup });
      const s = d.init();
      const r = rng(window);
      const seen: number[] = [];
      for (let i = 0; i < 60; i++) {
        // Small integers half of the time: ties, and windows whose MAD is 0.
        const v = i % 2 ? Math.floor(r() * 4) : r() * 10 - 5;
        const got = d.step(s, obs(i, v));
        if (seen.length < warmup) {
          expect(got).toEqual(NOT_READY);
        } else {
          const w = seen.slice(-window);
          const m = median(w);
          const scale = robustScale(w);
          const z = (v - m) / scale;
          expect(s.median).toBe(m);
          expect(s.scale).toBeCloseTo(scale, 12);
          expect(got.ready).toBe(true);
          expect(got.expected).toBe(m);
          expect(got.lower).toBeCloseTo(m - 4.5 * scale, 10);
          expect(got.upper).toBeCloseTo(m + 4.5 * scale, 10);
          expect(got.drivers['z']).toBeCloseTo(z, 8);
          expect(got.score).toBeCloseTo(zScore(z), 8);
        }
        seen.push(v);
        const last = seen.slice(-window);
        expect(Array.from(s.sorted.subarray(0, last.length))).toEqual([...last].sort((a, b) => a - b));
        expect(s.n).toBe(seen.length);
        expect(s.head).toBe(seen.length % window);
        // The ring holds the window in arrival order, the newest just before head.
        for (let k = 0; k < last.length; k++) expect(s.ring[(s.head - 1 - k + window) % window]).toBe(seen[seen.length - 1 - k]);
      }
    });
  }

  it('scores from the first bucket after exactly `warmup` buckets', () => {
    const d = new RobustZ({ window: 8, warmup: 3 });
    const s = d.init();
    expect(d.step(s, obs(0, 1))).toBe(NOT_READY);
    expect(d.step(s, obs(1, 2))).toBe(NOT_READY);
    expect(d.step(s, obs(2, 4))).toBe(NOT_READY);
    expect(Number.isNaN(s.median)).toBe(true);
    const r = d.step(s, obs(3, 2));
    expect(r.ready).toBe(true);
    // Window [1, 2, 4]: median 2, deviations [0, 1, 2], MAD 1.
    expect(r.expected).toBe(2);
    expect(s.scale).toBeCloseTo(1.4826, 12);
    expect(r.drivers).toEqual({ z: 0 });
    expect(r.score).toBeCloseTo(0, 9);
  });

  it('falls back to 1.2533 times the mean absolute deviation when the MAD is 0', () => {
    const d = new RobustZ({ window: 5, warmup: 5 });
    const s = d.init();
    for (const [i, v] of [5, 5, 9, 5, 5].entries()) d.step(s, obs(i, v));
    // Deviations from the median 5: [0, 0, 0, 0, 4]; their mean 0.8.
    const r = d.step(s, obs(5, 7));
    expect(s.scale).toBeCloseTo(1.2533 * 0.8, 12);
    expect(r.drivers['z']).toBeCloseTo(2 / (1.2533 * 0.8), 12);
    expect(r.lower).toBeCloseTo(5 - 4.5 * 1.2533 * 0.8, 12);
  });

  it('an even window takes the median and the MAD halfway between the two middle values', () => {
    const d = new RobustZ({ window: 4, warmup: 4 });
    const s = d.init();
    for (const [i, v] of [10, 0, 4, 6].entries()) d.step(s, obs(i, v));
    // Sorted [0, 4, 6, 10]: median 5; deviations sorted [1, 1, 5, 5]: MAD 3.
    const r = d.step(s, obs(4, 5 + 3 * 1.4826));
    expect(r.expected).toBe(5);
    expect(s.scale).toBeCloseTo(3 * 1.4826, 12);
    expect(r.drivers['z']).toBeCloseTo(1, 12);
    // The window is full: 10 (the oldest) leaves, 5 + 4.45 enters.
    expect(Array.from(s.sorted)).toEqual([0, 4, 6, 5 + 3 * 1.4826]);
  });

  it('the MAD merge stops at the end of the window when rounding puts the upper half closer to the median', () => {
    const d = new RobustZ({ window: 4, warmup: 4 });
    const s = d.init();
    for (const [i, v] of [0, 0.2, 0.1, 0.2].entries()) d.step(s, obs(i, v));
    d.step(s, obs(4, 0.1));
    // Median (0.1 + 0.2) / 2 = 0.15000000000000002: both 0.2 lie 0.04999999999999999 above it, 0.1
    // lies 0.05000000000000002 below, so the upper half runs out before the middle rank.
    expect(0.2 - s.median).toBeLessThan(s.median - 0.1);
    expect(s.scale).toBeCloseTo(robustScale([0, 0.2, 0.1, 0.2]), 15);
    expect(s.scale).toBeCloseTo(1.4826 * 0.05, 15);
  });

  it('a flat series divides by the scale floor: 1e-3 of its level, or 1e-6 at zero', () => {
    const d = new RobustZ({ window: 4, warmup: 4 });
    const big = d.init();
    for (let i = 0; i < 4; i++) d.step(big, obs(i, -2000));
    const r = d.step(big, obs(4, -2010));
    expect(big.scale).toBe(2);
    expect(r.drivers).toEqual({ z: -5 });
    expect(r.score).toBe(zScore(5));
    expect([r.lower, r.upper]).toEqual([-2009, -1991]);
    const zero = d.init();
    for (let i = 0; i < 4; i++) d.step(zero, obs(i, 0));
    expect(d.step(zero, obs(4, 3e-6)).drivers['z']).toBeCloseTo(3, 9);
    expect(zero.scale).toBe(1e-6);
  });
});

describe('Ewma by hand', () => {
  const state = (s: EwmaState): EwmaState => ({ ...s });

  it('warms up by cumulative averaging, then follows Holt’s level and trend with an EWMA variance', () => {
    const d = new Ewma({ alpha: 0.25, varianceAlpha: 0.125, trendAlpha: 0.5, warmup: 3, clip: 3, regimeAfter: 2 });
    const s = d.init();
    expect(state(s)).toEqual({ mean: 0, trend: 0, variance: 0, n: 0, outliers: 0 });
    expect(d.step(s, obs(0, 8))).toBe(NOT_READY);
    expect(state(s)).toEqual({ mean: 8, trend: 0, variance: 0, n: 1, outliers: 0 });
    // n = 1: weight 1/2 for the mean and the variance. z = 4 / 0.008 is not clipped in warm-up.
    // mean 8 + 4/2 = 10, trend 0.5·(10 − 8) = 1, variance (1/2)·(0 + 16/2) = 4.
    expect(d.step(s, obs(1, 12))).toBe(NOT_READY);
    expect(state(s)).toEqual({ mean: 10, trend: 1, variance: 4, n: 2, outliers: 0 });
    // n = 2: weight 1/3 (above alpha). Forecast 11, d = 3: mean 12, trend 1 + 0.5·(2 − 1) = 1.5,
    // variance (2/3)·(4 + 9/3) = 14/3.
    expect(d.step(s, obs(2, 14))).toBe(NOT_READY);
    expect(s.mean).toBe(12);
    expect(s.trend).toBe(1.5);
    expect(s.variance).toBeCloseTo(14 / 3, 12);
    // n = 3: scored against forecast 13.5 and σ = √(14/3); then alpha 0.25 and varianceAlpha 0.125.
    const sigma4 = Math.sqrt(14 / 3);
    const r4 = d.step(s, obs(3, 13.5 + 2 * sigma4));
    expect(r4.ready).toBe(true);
    expect(r4.expected).toBe(13.5);
    expect(r4.lower).toBeCloseTo(13.5 - 4.5 * sigma4, 12);
    expect(r4.upper).toBeCloseTo(13.5 + 4.5 * sigma4, 12);
    expect(r4.drivers['z']).toBeCloseTo(2, 12);
    expect(r4.score).toBeCloseTo(zScore(2), 12);
    const mean4 = 13.5 + 0.25 * 2 * sigma4;
    const trend4 = 1.5 + 0.5 * (mean4 - 12 - 1.5);
    expect(s.mean).toBeCloseTo(mean4, 12);
    expect(s.trend).toBeCloseTo(trend4, 12);
    expect(s.variance).toBeCloseTo(0.875 * (14 / 3 + 0.125 * 4 * (14 / 3)), 12);
    expect(s.variance).toBeCloseTo(6.125, 12);
    expect(s.n).toBe(4);

    // A spike at z = 10: learnt as if it were at forecast + 3σ (clip), counted as an outlier.
    const f5 = mean4 + trend4;
    const sigma5 = Math.sqrt(6.125);
    const r5 = d.step(s, obs(4, f5 + 10 * sigma5));
    expect(r5.drivers['z']).toBeCloseTo(10, 9);
    expect(r5.score).toBe(1);
    expect(s.outliers).toBe(1);
    const mean5 = f5 + 0.25 * 3 * sigma5;
    const trend5 = trend4 + 0.5 * (mean5 - mean4 - trend4);
    expect(s.mean).toBeCloseTo(mean5, 12);
    expect(s.trend).toBeCloseTo(trend5, 12);
    expect(s.variance).toBeCloseTo(0.875 * (6.125 + 0.125 * 9 * 6.125), 12);

    // The second outlier in a row reaches regimeAfter: learnt in full (a new level).
    const f6 = mean5 + trend5;
    const x6 = f6 + 100;
    d.step(s, obs(5, x6));
    expect(s.outliers).toBe(2);
    expect(s.mean).toBeCloseTo(f6 + 0.25 * 100, 9);

    // An ordinary value ends the run of outliers.
    d.step(s, obs(6, s.mean + s.trend));
    expect(s.outliers).toBe(0);
    expect(s.n).toBe(7);
  });

  it('a series that never moved divides by the scale floor, 1e-3 of the forecast', () => {
    const d = new Ewma({ ...EWMA_DEFAULTS, warmup: 3 });
    const s = d.init();
    for (let i = 0; i < 3; i++) d.step(s, obs(i, 1000));
    expect(d.step(s, obs(3, 1003))).toEqual({ score: zScore(3), expected: 1000, lower: 995.5, upper: 1004.5, ready: true, drivers: { z: 3 } });
  });

  describe('clipping at exactly clip·σ and below the forecast', () => {
    // After 8 and 12 (weights 1/2): mean 10, trend 1, variance 4: forecast 11, σ 2.
    const d = new Ewma({ alpha: 0.5, varianceAlpha: 0.5, trendAlpha: 0.5, warmup: 2, clip: 3, regimeAfter: 3 });
    const warmed = (): EwmaState => {
      const s = d.init();
      d.step(s, obs(0, 8));
      d.step(s, obs(1, 12));
      return s;
    };

    it('a deviation of exactly clip·σ is no outlier', () => {
      const s = warmed();
      const r = d.step(s, obs(2, 17));
      expect(r).toEqual({ score: zScore(3), expected: 11, lower: 2, upper: 20, ready: true, drivers: { z: 3 } });
      expect(state(s)).toEqual({ mean: 14, trend: 2.5, variance: 11, n: 3, outliers: 0 });
    });

    it('a drop below the forecast is clipped to forecast − clip·σ', () => {
      const s = warmed();
      expect(d.step(s, obs(2, -9)).drivers).toEqual({ z: -10 });
      // Learnt as 11 − 6 = 5: mean 8, trend 1 + 0.5·(8 − 10 − 1), variance 0.5·(4 + 0.5·36).
      expect(state(s)).toEqual({ mean: 8, trend: -0.5, variance: 11, n: 3, outliers: 1 });
    });
  });
});

describe('Seasonal by hand', () => {
  // A period of 4 ms in two slots of 2 ms (centres at 1 and 3), buckets of 1 ms: small enough to
  // follow every number. The warm-up is one period.
  const options = { periodMs: 4, slots: 2, alpha: 0.5, levelAlpha: 0.25, warmupPeriods: 1, explains: 0.5 };
  const at = (tsMs: number, value: number): Observation => ({ tsMs, widthMs: 1, value, count: 1, min: value, max: value, std: 0 });
  const view = (s: SeasonalState) => ({ ...s, profile: Array.from(s.profile), visits: Array.from(s.visits) });

  // Negative timestamps (before 1970) land in the same slots as positive ones.
  for (const offset of [0, -400]) {
    it(`learns slot means, the plain level, the residual σ and the level offset (timestamps ${offset} + i)`, () => {
      const d = new Seasonal(options);
      const s = d.init();
      const step = (i: number, x: number): Score => d.step(s, at(offset + i, x));
      expect(view(s)).toEqual({ profile: [0, 0], visits: [0, 0], curSlot: -1, curSum: 0, curN: 0, level: 0, residualVar: 0, plainMean: 0, plainVar: 0, firstMs: Number.NaN, outliers: 0, n: 0 });

      // i = 1 (slot 0): the plain mean starts at the value.
      expect(step(1, 10)).toBe(NOT_READY);
      expect(view(s)).toMatchObject({ firstMs: offset + 1, plainMean: 10, plainVar: 0, curSlot: 0, curSum: 10, curN: 1, n: 1, residualVar: 0 });
      // i = 2 (slot 1): plain weight 1/2; slot 0's visit is folded: its first value is its mean.
      expect(step(2, 20)).toBe(NOT_READY);
      expect(view(s)).toMatchObject({ plainMean: 15, plainVar: 0.5 * (0 + 0.5 * 100), profile: [10, 0], visits: [1, 0], curSlot: 1, curSum: 20, curN: 1, n: 2, residualVar: 0 });
      // i = 3 (slot 1): plain weight 1/3: mean 15 + 7/3, variance (2/3)·(25 + 49/3) = 248/9.
      step(3, 22);
      expect(s.plainMean).toBeCloseTo(52 / 3, 12);
      expect(s.plainVar).toBeCloseTo(248 / 9, 12);
      expect(view(s)).toMatchObject({ curSum: 42, curN: 2, n: 3, residualVar: 0 });
      // i = 4 (slot 0, phase −0.25: 3/4 of the way from slot 1's centre to slot 0's): plain weight
      // 1/4 (1/(n+1) = width/period). Slot 0 has a profile, so the residual variance learns,
      // against 0 + 0.75·(10 − 0) = 7.5: slot 1's first visit is folded only after this bucket.
      step(4, 12);
      expect(s.plainMean).toBeCloseTo(16, 12);
      expect(s.plainVar).toBeCloseTo(26, 12);
      const rv4 = 0.75 * (0 + 0.25 * 4.5 * 4.5);
      expect(view(s)).toMatchObject({ residualVar: rv4, level: 0, profile: [10, 21], visits: [1, 1], curSlot: 0, curSum: 12, curN: 1, n: 4 });

      // i = 5 (slot 0, phase 0.25): warm (one period after the first bucket). Expected
      // 10 + 0.25·(21 − 10) = 12.75; the profile leaves 3.796875 / 20.25 = 0.1875 of the plain variance.
      const r5 = step(5, 14);
      expect(s.plainMean).toBeCloseTo(15.5, 12);
      expect(s.plainVar).toBeCloseTo(20.25, 12);
      const sigma5 = Math.sqrt(rv4);
      expect(r5.ready).toBe(true);
      expect(r5.expected).toBe(12.75);
      expect(r5.lower).toBeCloseTo(12.75 - 4.5 * sigma5, 12);
      expect(r5.upper).toBeCloseTo(12.75 + 4.5 * sigma5, 12);
      expect(r5.drivers['z']).toBeCloseTo(1.25 / sigma5, 12);
      expect(r5.drivers['season']).toBeCloseTo(0.1875, 12);
      expect(r5.score).toBeCloseTo(zScore(1.25 / sigma5), 12);
      // |z| < 3: the level offset and the residual σ learn the residual 1.25; the slot sum takes
      // the value less the new level.
      const rv5 = 0.75 * (rv4 + 0.25 * 1.25 * 1.25);
      expect(view(s)).toMatchObject({ level: 0.3125, residualVar: rv5, outliers: 0, curSum: 12 + 14 - 0.3125, curN: 2, n: 5 });

      // i = 6 (slot 1, phase 0.75): expected 10 + 0.75·11 + 0.3125. 40 is an outlier: the level and
      // σ do not learn it. Slot 0's second visit (mean 12.84375) is folded with weight alpha.
      const r6 = step(6, 40);
      const sigma6 = Math.sqrt(rv5);
      expect(r6.expected).toBe(18.5625);
      expect(r6.drivers['z']).toBeCloseTo((40 - 18.5625) / sigma6, 12);
      expect(r6.score).toBe(1);
      expect(view(s)).toMatchObject({ level: 0.3125, residualVar: rv5, outliers: 1, profile: [10 + 0.5 * (12.84375 - 10), 21], visits: [2, 1], curSlot: 1, curSum: 40 - 0.3125, curN: 1, n: 6 });

      // i = 7 (slot 1, phase 1.25: from slot 1's centre towards slot 0's of the next period).
      const r7 = step(7, 40);
      expect(r7.expected).toBeCloseTo(21 + 0.25 * (11.421875 - 21) + 0.3125, 12);
      expect(view(s)).toMatchObject({ level: 0.3125, residualVar: rv5, outliers: 2, curSum: 2 * (40 - 0.3125), curN: 2, n: 7 });

      // i = 8: the third outlier in a row outlasts a slot (2 buckets): a new normal, learnt.
      const r8 = step(8, 40);
      const base8 = 21 + 0.75 * (11.421875 - 21);
      expect(r8.expected).toBeCloseTo(base8 + 0.3125, 12);
      const rd8 = 40 - base8 - 0.3125;
      expect(s.level).toBeCloseTo(0.3125 + 0.25 * rd8, 12);
      expect(s.residualVar).toBeCloseTo(0.75 * (rv5 + 0.25 * rd8 * rd8), 12);
      expect(view(s)).toMatchObject({ outliers: 0, profile: [11.421875, 21 + 0.5 * (39.6875 - 21)], visits: [2, 2], curSlot: 0, curN: 1, n: 8 });
      expect(s.curSum).toBeCloseTo(40 - s.level, 12);
    });
  }

  it('reports only while the profile leaves less than `explains` of the plain variance', () => {
    // Same series as above: at i = 5 the ratio is exactly 0.1875.
    const run = (explains: number): Score => {
      const d = new Seasonal({ ...options, explains });
      const s = d.init();
      for (const [i, x] of [10, 20, 22, 12].entries()) d.step(s, at(i + 1, x));
      return d.step(s, at(5, 14));
    };
    expect(run(0.1875).ready).toBe(false);
    expect(run(0.1876).ready).toBe(true);
  });

  it('accepts a deviation as the new level once it outlasts a slot, counted in buckets of any width', () => {
    // Period 8 ms in two slots of 4 ms, buckets of 2 ms: two buckets per slot.
    const d = new Seasonal({ ...options, periodMs: 8 });
    const s = d.init();
    const wide = (tsMs: number, value: number): Observation => ({ ...at(tsMs, value), widthMs: 2 });
    for (let ts = 0; ts < 16; ts += 2) d.step(s, wide(ts, 1000));
    d.step(s, wide(16, 1100));
    d.step(s, wide(18, 1100));
    expect([s.level, s.outliers]).toEqual([0, 2]);
    // The third bucket in a row is more than a slot: learnt against the flat profile of 1000.
    expect(d.step(s, wide(20, 1100)).expected).toBe(1000);
    expect([s.level, s.outliers]).toEqual([0.25 * 100, 0]);
    expect(s.residualVar).toBe(0.75 * (0.25 * 100 * 100));
  });

  it('scores a flat series against the scale floor instead of dividing 0 by 0', () => {
    const d = new Seasonal(options);
    const s = d.init();
    for (let i = 0; i < 8; i++) d.step(s, at(i, 1000));
    expect(s.plainVar).toBe(0);
    const r = d.step(s, at(8, 1003));
    expect(r).toEqual({ score: zScore(3), expected: 1000, lower: 995.5, upper: 1004.5, ready: true, drivers: { z: 3, season: 0 } });
    // |z| = 3 is already a suspected anomaly: the level does not learn it.
    expect([s.level, s.outliers]).toEqual([0, 1]);
  });
});
