import { describe, expect, it } from 'vitest';
import { CORPUS_SHAPES, realisticCorpus } from '../../../bench/corpus.js';

describe('the realistic labelled corpus (bench/corpus.ts)', () => {
  const c = realisticCorpus(1);

  it('is the same for the same seed, and another for another seed', () => {
    expect(realisticCorpus(1).rows).toEqual(c.rows);
    expect(realisticCorpus(2).rows).not.toEqual(c.rows);
  });

  it('every shape has series, incident windows inside the data, and rows labelled inside them only', () => {
    for (const shape of CORPUS_SHAPES) {
      const series = [...c.shapes].filter(([, s]) => s === shape).map(([name]) => name);
      expect(series.length, shape).toBeGreaterThan(0);
      expect(c.labels.filter((l) => series.includes(l.series)).length, shape).toBeGreaterThanOrEqual(2 * series.length);
    }
    const first = Math.min(...c.rows.map((r) => r.tsMs));
    const last = Math.max(...c.rows.map((r) => r.tsMs));
    for (const l of c.labels) {
      expect(l.startMs).toBeGreaterThanOrEqual(first + 4 * 86_400_000);
      expect(l.endMs).toBeLessThanOrEqual(last + 3 * c.widthMs);
    }
    for (const r of c.rows) {
      const inside = c.labels.some((l) => l.series === r.series && r.tsMs >= l.startMs && r.tsMs < l.endMs);
      expect(r.label !== '', `${r.series}@${r.tsMs}`).toBe(inside);
    }
  });

  it('repeats an hour of timestamps in some series, and leaves dropouts without rows', () => {
    const seen = new Map<string, number>();
    for (const r of c.rows) seen.set(`${r.series}@${r.tsMs}`, (seen.get(`${r.series}@${r.tsMs}`) ?? 0) + 1);
    const repeated = [...seen].filter(([, n]) => n > 1).map(([key]) => key);
    // One hour (12 buckets) on day 10, in half the series of each shape, nowhere else.
    expect(repeated).toHaveLength(12 * (c.shapes.size / 2));
    const day10 = Date.UTC(2026, 0, 15);
    for (const key of repeated) {
      const ts = Number(key.split('@')[1]);
      expect(ts >= day10 && ts < day10 + 86_400_000, key).toBe(true);
    }
    const dropouts = c.labels.filter((l) => l.kind === 'dropout');
    expect(dropouts.length).toBeGreaterThan(0);
    for (const d of dropouts) expect(c.rows.some((r) => r.series === d.series && r.tsMs >= d.startMs && r.tsMs < d.startMs + 24 * c.widthMs)).toBe(false);
  });
});
