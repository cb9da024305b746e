import { describe, expect, it } from 'vitest';
import { laggedCorrelation, MIN_PAIRS } from '../../../../sinks/clickhouse/correlate.js';

const series = (n: number, f: (i: number) => number, width = 60) => new Map(Array.from({ length: n }, (_, i) => [i * width, f(i)]));

describe('lagged correlation', () => {
  const x = series(60, (i) => Math.sin(i / 4) + 0.3 * Math.cos(i * 1.3));
  it('finds a series that follows two buckets later at lag +120 s, r = 1, and weaker elsewhere', () => {
    const y = series(60, (i) => 5 + 2 * (Math.sin((i - 2) / 4) + 0.3 * Math.cos((i - 2) * 1.3)));
    expect(laggedCorrelation(x, y, 120).r).toBeCloseTo(1, 12);
    expect(laggedCorrelation(x, y, 120).n).toBe(58);
    expect(Math.abs(laggedCorrelation(x, y, 0).r)).toBeLessThan(0.95);
    expect(Math.abs(laggedCorrelation(x, y, -120).r)).toBeLessThan(0.9);
  });

  it('is −1 for a mirror image, NaN for a constant or too few shared buckets', () => {
    expect(laggedCorrelation(x, series(60, (i) => -3 * (x.get(i * 60) as number)), 0).r).toBeCloseTo(-1, 12);
    expect(laggedCorrelation(x, series(60, () => 7), 0).r).toBeNaN();
    expect(laggedCorrelation(x, series(MIN_PAIRS - 1, (i) => i), 0)).toEqual({ r: Number.NaN, n: MIN_PAIRS - 1 });
    // Buckets missing on one side are left out, not taken as zero.
    const gappy = new Map([...x].filter(([t]) => t % 180 !== 0).map(([t, v]) => [t, 2 * v]));
    expect(laggedCorrelation(x, gappy, 0)).toEqual({ r: expect.closeTo(1, 12) as number, n: 40 });
  });
});
