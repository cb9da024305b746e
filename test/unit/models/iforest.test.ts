import { describe, expect, it } from 'vitest';
import { averagePathLength, IsolationForest } from '../../../models/iforest.js';

/** Deterministic data: `rows` x `features` values from a seeded LCG, roughly uniform in [-1, 1). */
function table(rows: number, features: number, seed = 1): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: rows * features }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

describe('averagePathLength', () => {
  it("equals sklearn's _average_path_length at n = 1, 2, 3 and 256", () => {
    // Values printed by sklearn.ensemble._iforest._average_path_length([1, 2, 3, 256]).
    expect(averagePathLength(1)).toBe(0);
    expect(averagePathLength(2)).toBe(1);
    expect(averagePathLength(3)).toBeCloseTo(1.20739236, 8);
    expect(averagePathLength(256)).toBeCloseTo(10.24477092, 8);
  });
});

describe('IsolationForest', () => {
  const data = table(1000, 3);

  it('builds the same forest and scores for the same seed, and another forest for another seed', () => {
    const a = IsolationForest.fit(data, 1000, 3, { seed: 7 });
    const b = IsolationForest.fit(data, 1000, 3, { seed: 7 });
    const c = IsolationForest.fit(data, 1000, 3, { seed: 8 });
    expect(b.serialize()).toEqual(a.serialize());
    expect(b.score(data, 1000)).toEqual(a.score(data, 1000));
    expect(c.score(data, 1000)).not.toEqual(a.score(data, 1000));
  });

  it('grows trees of at most ceil(log2(maxSamples)) levels whose leaves hold all maxSamples rows', () => {
    const forest = IsolationForest.fit(data, 1000, 3, { nEstimators: 10, maxSamples: 100 });
    const s = forest.serialize();
    expect([forest.nEstimators, forest.maxSamples, forest.features]).toEqual([10, 100, 3]);
    const leafRows: number[] = [];
    const maxDepths: number[] = [];
    for (const root of s.roots) {
      let rows = 0;
      let deepest = 0;
      const walk = (node: number, depth: number): void => {
        if (s.feature[node] === -1) {
          rows += s.size[node]!;
          deepest = Math.max(deepest, depth);
          expect(s.pathLength[node]).toBeCloseTo(depth + averagePathLength(s.size[node]!), 12);
        } else {
          walk(s.left[node]!, depth + 1);
          walk(s.left[node]! + 1, depth + 1);
        }
      };
      walk(root, 0);
      leafRows.push(rows);
      maxDepths.push(deepest);
    }
    expect(leafRows).toEqual(Array(10).fill(100));
    expect(Math.max(...maxDepths)).toBeLessThanOrEqual(7);
  });

  it('scores in (0, 1], an outlier above the bulk, and scoreSamples agrees with score', () => {
    const forest = IsolationForest.fit(data, 1000, 3);
    const scores = forest.score(data, 1000);
    expect(scores.every((v) => v > 0 && v <= 1)).toBe(true);
    const outlier = forest.scoreSamples([8, -8, 8]);
    expect(outlier).toBeGreaterThan(Math.max(...scores));
    expect(forest.scoreSamples(data.subarray(30, 33))).toBe(scores[10]);
  });

  it('scores identically after serialize, a structured clone (worker postMessage) and deserialize', () => {
    const forest = IsolationForest.fit(data, 1000, 3, { seed: 3 });
    const copy = IsolationForest.deserialize(structuredClone(forest.serialize()));
    expect(copy.score(data, 1000)).toEqual(forest.score(data, 1000));
    expect(copy.scoreSamples([5, 5, 5])).toBe(forest.scoreSamples([5, 5, 5]));
  });

  it('rejects a serialized forest whose walk could loop or leave the arrays', () => {
    const s = IsolationForest.fit(data, 1000, 3, { nEstimators: 2 }).serialize();
    const internal = s.feature.findIndex((f) => f >= 0);
    s.left[internal] = internal;
    expect(() => IsolationForest.deserialize(s)).toThrow(/bad node/);
    expect(() => IsolationForest.deserialize({ ...s, threshold: new Float64Array(1) })).toThrow(/mismatched/);
  });

  it('fits a constant dataset without crashing: every tree is one leaf and every score is 0.5', () => {
    const forest = IsolationForest.fit(new Float64Array(500 * 2).fill(3), 500, 2);
    expect(forest.serialize().feature.every((f) => f === -1)).toBe(true);
    const scores = forest.score(table(20, 2), 20);
    expect(new Set(scores).size).toBe(1);
    // Path length c(256) in every tree over the normaliser c(256): 2^-1, up to summation rounding.
    expect(scores[0]).toBeCloseTo(0.5, 12);
  });

  it('caps maxSamples at the row count and scores 1 for a single training row, as sklearn does', () => {
    expect(IsolationForest.fit(table(50, 2), 50, 2).maxSamples).toBe(50);
    expect(IsolationForest.fit(new Float64Array([1, 2]), 1, 2).scoreSamples([0, 0])).toBe(1);
  });

  it('rejects data of the wrong length, non-finite values and bad options', () => {
    expect(() => IsolationForest.fit(new Float64Array(5), 2, 3)).toThrow(/expected rows \* features = 6/);
    expect(() => IsolationForest.fit(new Float64Array([1, Number.NaN]), 1, 2)).toThrow(/NaN/);
    expect(() => IsolationForest.fit(data, 1000, 3, { nEstimators: 0 })).toThrow(/nEstimators must be an integer >= 1/);
    expect(() => IsolationForest.fit(data, 1000, 3).scoreSamples([1, 2])).toThrow(/expected 3/);
  });
});
