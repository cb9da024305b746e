import { describe, expect, it } from 'vitest';
import { normalTail, zScore, type Observation } from '../../../models/detector.js';
import { Ewma, RobustZ, Seasonal } from '../../../models/statistical.js';
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
