import { describe, expect, it } from 'vitest';
import { averageRanks, rocAuc, spearman } from '../../../models/metrics.js';

describe('rank metrics', () => {
  it('gives tied values the average of their ranks', () => {
    expect(Array.from(averageRanks([10, 20, 10, 30, 20, 10]))).toEqual([2, 4.5, 2, 6, 4.5, 2]);
  });

  it('computes Spearman correlation of ranks: 1 for any increasing map, -1 reversed', () => {
    const a = [1, 2, 3, 4, 5];
    expect(spearman(a, a.map((v) => Math.exp(v)))).toBeCloseTo(1, 12);
    expect(spearman(a, a.map((v) => -v))).toBeCloseTo(-1, 12);
    // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic
    expect(spearman(a, [5, 6, 7, 8, 7])).toBeCloseTo(0.8207826816681233, 12);
  });

  it('computes ROC AUC with ties counted as one half', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75);
    expect(rocAuc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
    expect(rocAuc([1, 2, 3], [0, 0, 1])).toBe(1);
    expect(() => rocAuc([1, 2], [1, 1])).toThrow(/both classes/);
  });
});
