import { describe, expect, it } from 'vitest';
import { CANDIDATES, Forecaster, initForecast, spreadSum, type ForecastState } from '../../../models/forecast.js';
import { Seasonal, SEASONAL_DEFAULTS, type SeasonalState } from '../../../models/statistical.js';
import { rng } from '../../../bench/generator.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 5);

function gauss(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** A forecaster fed `values` at `widthMs` from T0 through a seasonal detector, as a shard feeds it. */
function feed(values: ArrayLike<number>, widthMs: number): { forecaster: Forecaster; f: ForecastState; s: SeasonalState } {
  const seasonal = new Seasonal(SEASONAL_DEFAULTS);
  const forecaster = new Forecaster(seasonal);
  const s = seasonal.init();
  const f = initForecast(seasonal.periods);
  for (let t = 0; t < values.length; t++) {
    const x = values[t] as number;
    if (Number.isNaN(x)) continue;
    const tsMs = T0 + t * widthMs;
    seasonal.step(s, { tsMs, widthMs, value: x, count: 1, min: x, max: x, std: 0 });
    forecaster.step(f, s, tsMs, widthMs, x);
  }
  return { forecaster, f, s };
}

describe('forecaster', () => {
  it('continues a steady rise in a straight line (capacity: a disk filling)', () => {
    // 2 % a day at 5-minute buckets with a little noise, for four days.
    const w = 5 * MINUTE;
    const noise = gauss(rng(3));
    const values = Array.from({ length: 4 * 288 }, (_, t) => 40 + (2 * t) / 288 + 0.05 * noise());
    const { forecaster, f, s } = feed(values, w);
    const fc = forecaster.forecast(f, s, w, { horizonMs: DAY, stepMs: HOUR });
    expect(fc.points).toHaveLength(24);
    const last = fc.points[23];
    // A day on: 48 + 2 (the trend); a flat forecast would say 48.
    expect(last?.value).toBeGreaterThan(49.5);
    expect(last?.value).toBeLessThan(50.5);
    expect(fc.model.beta).toBeGreaterThan(0);
    expect(fc.issuedMs).toBe(T0 + 4 * 288 * w);
    expect(last?.tsMs).toBe(T0 + (4 * 288 - 1) * w + DAY);
  });

  it('carries the daily season the detector found into the next day', () => {
    const w = 5 * MINUTE;
    const noise = gauss(rng(5));
    const shape = (t: number) => 100 + 40 * Math.sin((2 * Math.PI * (t % 288)) / 288);
    const values = Array.from({ length: 6 * 288 }, (_, t) => shape(t) + noise());
    const { forecaster, f, s } = feed(values, w);
    const fc = forecaster.forecast(f, s, w, { horizonMs: DAY, stepMs: w });
    expect(fc.model.periodS).toBe(86_400);
    let err = 0;
    for (const [i, p] of fc.points.entries()) err += Math.abs(p.value - shape(6 * 288 + i));
    // The season's amplitude is 40; a flat forecast misses by ~25 on average.
    expect(err / fc.points.length).toBeLessThan(2);
  });

  /** Shares of the day after `days` days inside the 80 % and 95 % intervals, over the series `make` gives per seed. */
  function coverage(seeds: number, days: number, make: (seed: number) => number[]): { in80: number; in95: number } {
    const w = 5 * MINUTE;
    let in80 = 0;
    let in95 = 0;
    let n = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const values = make(seed);
      const { forecaster, f, s } = feed(values.slice(0, days * 288), w);
      const fc = forecaster.forecast(f, s, w, { horizonMs: DAY, stepMs: w });
      for (const [i, p] of fc.points.entries()) {
        const actual = values[days * 288 + i] as number;
        if (actual >= p.lower80 && actual <= p.upper80) in80++;
        if (actual >= p.lower95 && actual <= p.upper95) in95++;
        n++;
      }
    }
    return { in80: in80 / n, in95: in95 / n };
  }

  it("gives intervals that hold about their share of what comes, on data from the model's own family", () => {
    // Local-level data (a random walk observed with noise): its forecast is flat with widening
    // intervals. Over 200 series, the share of the next day's values inside each interval.
    const { in80, in95 } = coverage(200, 4, (seed) => {
      const noise = gauss(rng(seed));
      const values: number[] = [];
      let level = 50;
      for (let t = 0; t < 5 * 288; t++) {
        level += 0.2 * noise();
        values.push(level + noise());
      }
      return values;
    });
    expect(in80).toBeGreaterThan(0.72);
    expect(in80).toBeLessThan(0.9);
    expect(in95).toBeGreaterThan(0.9);
    expect(in95).toBeLessThan(0.99);
  });

  it('widens each interval by the quantile of the errors it met, not by their variance: heavy tails leave the 80 % interval at about 80 %', () => {
    // A flat series with contaminated noise (1 in 20 values off by ten times as much): its error
    // variance is six times the bulk's, so intervals of ±1.28 and ±1.96 σ hold about 96 and 98 %.
    const { in80, in95 } = coverage(100, 7, (seed) => {
      const r = rng(seed);
      const noise = gauss(r);
      return Array.from({ length: 8 * 288 }, () => 50 + (r() < 0.05 ? 10 : 1) * noise());
    });
    expect(in80).toBeGreaterThan(0.72);
    expect(in80).toBeLessThan(0.88);
    expect(in95).toBeGreaterThan(0.9);
    expect(in95).toBeLessThan(0.99);
  });

  it("sums the h-step variance's terms in closed form as the loop over them does", () => {
    for (const c of CANDIDATES) {
      for (const widthMs of [10_000, MINUTE, 5 * MINUTE]) {
        const beta = c.slopeMemoryMs === 0 ? 0 : c.alpha * Math.min(1, widthMs / c.slopeMemoryMs);
        const phi = c.slopeMemoryMs === 0 ? 0 : c.halfLifeMs === Infinity ? 1 : Math.pow(0.5, widthMs / c.halfLifeMs);
        let phiJ = 0;
        let sum = 0;
        for (let m = 1; m <= 2000; m++) {
          phiJ += Math.pow(phi, m);
          sum += (c.alpha + beta * phiJ) ** 2;
          if (m % 97 === 1 || m === 2000) expect(spreadSum(c.alpha, beta, phi, m)).toBeCloseTo(sum, 6);
        }
      }
    }
    expect(spreadSum(0.3, 0.1, 0.9, 0)).toBe(0);
  });

  it('moves on by its trend over missing buckets, and an incident of a few hours is not extrapolated', () => {
    const w = 5 * MINUTE;
    const noise = gauss(rng(9));
    const values = Array.from({ length: 3 * 288 }, () => 20 + noise());
    // Two hours at 60, then back to 20.
    for (let t = 2 * 288; t < 2 * 288 + 24; t++) values[t] = 60 + noise();
    // An hour missing near the end.
    for (let t = 3 * 288 - 30; t < 3 * 288 - 18; t++) values[t] = Number.NaN;
    const { forecaster, f, s } = feed(values, w);
    const fc = forecaster.forecast(f, s, w, { horizonMs: 6 * HOUR, stepMs: HOUR });
    for (const p of fc.points) expect(Math.abs(p.value - 20)).toBeLessThan(2);
    expect(f.lastTsMs).toBe(T0 + (3 * 288 - 1) * w);
  });

  it('forecasts the same from a cloned state (what detector_state stores) and is due on refresh boundaries', () => {
    const w = MINUTE;
    const noise = gauss(rng(11));
    const values = Array.from({ length: 600 }, (_, t) => 10 + t / 100 + noise());
    const { forecaster, f, s } = feed(values, w);
    const copy = structuredClone({ f, s });
    const a = forecaster.forecast(f, s, w, { horizonMs: 2 * HOUR, stepMs: 10 * MINUTE }, HOUR);
    const b = forecaster.forecast(copy.f, copy.s, w, { horizonMs: 2 * HOUR, stepMs: 10 * MINUTE }, HOUR);
    expect(b).toEqual(a);
    // Issued at 10:00 (600 minutes in): the next one is due at 11:00.
    expect(f.dueMs).toBe(T0 + 11 * HOUR);
    expect(forecaster.due(f, T0 + 11 * HOUR - 2 * w, w)).toBe(false);
    expect(forecaster.due(f, T0 + 11 * HOUR - w, w)).toBe(true);
    expect(forecaster.due(initForecast(3), T0, w)).toBe(false);
  });
});
