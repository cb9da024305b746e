import { describe, expect, it } from 'vitest';
import { COST_PROFILES, windowedScore, windowWeight, type CostProfile, type LabelSpan, type ScoredBucket } from '../../../models/evaluate.js';

const W = 60_000;
const series = (flags: number[], n = 200, name = 'a'): ScoredBucket[] => Array.from({ length: n }, (_, i) => ({ series: name, tsMs: i * W, flagged: flags.includes(i) }));
/** Two windows on `a`: buckets 50–59 (+3 grace: to 63) and 120–124 (to 128). */
const labels: LabelSpan[] = [
  { series: 'a', kind: 'level_shift', startMs: 50 * W, endMs: 60 * W },
  { series: 'a', kind: 'spike', startMs: 120 * W, endMs: 125 * W },
];

describe('windowed event score (NAB-like)', () => {
  const p: CostProfile = COST_PROFILES.fewFalsePositives;

  it('100 for a flag at the start of every window and nothing else; 0 for never flagging', () => {
    expect(windowedScore(series([50, 120]), labels, W, p).score).toBeCloseTo(100, 9);
    expect(windowedScore(series([]), labels, W, p)).toMatchObject({ score: 0, detected: 0, windows: 2, falseDetections: 0 });
  });

  it('an early detection earns more than a late one; only the first in a window counts', () => {
    const early = windowedScore(series([52, 120]), labels, W, p).score;
    const late = windowedScore(series([61, 120]), labels, W, p).score;
    expect(early).toBeGreaterThan(late);
    expect(late).toBeGreaterThan(windowedScore(series([120]), labels, W, p).score);
    // More flags later in the same window change nothing.
    expect(windowedScore(series([52, 53, 58, 62, 120]), labels, W, p).score).toBe(early);
    expect(windowWeight(-1)).toBeCloseTo(0.9866, 4);
    expect(windowWeight(0)).toBe(0);
  });

  it('every flag outside the windows costs, and costs more under the few-false-positives profile', () => {
    const clean = windowedScore(series([50, 120]), labels, W, p);
    const noisy = windowedScore(series([50, 120, 10, 11, 90, 180]), labels, W, p);
    expect(noisy.falseDetections).toBe(4);
    expect(noisy.score).toBeLessThan(clean.score);
    const lowFn = COST_PROFILES.fewMisses;
    const drop = (q: CostProfile) => windowedScore(series([50, 120]), labels, W, q).score - windowedScore(series([50, 120, 10, 11, 90, 180]), labels, W, q).score;
    expect(drop(p)).toBeGreaterThan(drop(lowFn));
    // A detector that flags everything scores below one that never flags.
    expect(windowedScore(series(Array.from({ length: 200 }, (_, i) => i)), labels, W, p).score).toBeLessThan(0);
  });

  it('the profiles rank differently: a quiet detector that misses one window against a noisy one that misses none', () => {
    const quiet = series([50]);
    const noisy = series([50, 120, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    const { fewFalsePositives, fewMisses } = COST_PROFILES;
    expect(windowedScore(quiet, labels, W, fewFalsePositives).score).toBeGreaterThan(windowedScore(noisy, labels, W, fewFalsePositives).score);
    expect(windowedScore(quiet, labels, W, fewMisses).score).toBeLessThan(windowedScore(noisy, labels, W, fewMisses).score);
  });
});
