import { describe, expect, it } from 'vitest';
import { backtest, type BacktestRow } from '../../../models/backtest.js';
import { DEFAULT_ENSEMBLE, type EnsembleScore } from '../../../models/ensemble.js';

/** Hourly rows (the settings below start episodes after a learning period of 30 buckets). */
const MIN = 3_600_000;

/** Two series of 200 hourly rows with a spike each; `b` is given in reverse order. */
function input(): BacktestRow[] {
  const a = Array.from({ length: 200 }, (_, i) => ({ series: 'a', tsMs: i * MIN, value: 10 + Math.sin(i / 5) + (i === 150 ? 30 : 0), label: '' }));
  const b = Array.from({ length: 200 }, (_, i) => ({ series: 'b', tsMs: i * MIN, value: 50 + Math.cos(i / 7) + (i === 120 ? -40 : 0), label: '' })).reverse();
  return [...a, ...b];
}

function run(rows: BacktestRow[]): { out: [BacktestRow, EnsembleScore][]; rows: number } {
  const out: [BacktestRow, EnsembleScore][] = [];
  const r = backtest(rows, { settings: { ...DEFAULT_ENSEMBLE, learningBuckets: 30 }, onRow: (row, s) => out.push([row, s]) });
  return { out, rows: r.rows };
}

describe('vigil backtest: one output row per input row, in input order', () => {
  it('out-of-order input is scored in time order, and written back in input order', () => {
    const rows = input();
    const r = run(rows);
    expect(r.rows).toBe(rows.length);
    expect(r.out.map(([row]) => row)).toEqual(rows);
    // Scored in time order: the same scores as the same rows given sorted.
    const sorted = run([...rows].sort((x, y) => x.series.localeCompare(y.series) || x.tsMs - y.tsMs));
    const key = (row: BacktestRow) => `${row.series}@${row.tsMs}`;
    const bySorted = new Map(sorted.out.map(([row, s]) => [key(row), s.score]));
    for (const [row, s] of r.out) expect(s.score, key(row)).toBe(bySorted.get(key(row)));
    expect(r.out.filter(([, s]) => s.anomaly).map(([row]) => key(row))).toEqual(expect.arrayContaining([`a@${150 * MIN}`, `b@${120 * MIN}`]));
  });

  it('rows repeating a timestamp (a daylight-saving hour, duplicates) are one bucket, their mean; each row gets its score', () => {
    const rows = input().filter((x) => x.series === 'a');
    // Row 100 appears three times with values around it; row 101 twice.
    const dup = [...rows];
    dup.splice(101, 0, { ...(rows[100] as BacktestRow), value: (rows[100] as BacktestRow).value + 2 }, { ...(rows[100] as BacktestRow), value: (rows[100] as BacktestRow).value - 2 });
    dup.push({ ...(rows[101] as BacktestRow), value: (rows[101] as BacktestRow).value });
    const r = run(dup);
    expect(r.rows).toBe(dup.length);
    expect(r.out.map(([row]) => row)).toEqual(dup);
    const at = (ts: number) => r.out.filter(([row]) => row.tsMs === ts).map(([, s]) => s);
    expect(at(100 * MIN)).toHaveLength(3);
    expect(new Set(at(100 * MIN))).toHaveProperty('size', 1);
    expect(new Set(at(101 * MIN))).toHaveProperty('size', 1);
    // The mean of the repeats is what was scored: the same as the input without repeats, bucket
    // for bucket until row 100 and the same value there.
    const plain = run(rows);
    // The robust z-score reads the bucket value alone: equal only if the repeats' mean was scored.
    expect(at(100 * MIN)[0]?.scores.robust).toBeCloseTo(plain.out[100]?.[1].scores.robust ?? NaN, 12);
    expect(at(100 * MIN)[0]?.scores.robust).toBeGreaterThan(0);
    expect(r.out.slice(0, 100).map(([, s]) => s.score)).toEqual(plain.out.slice(0, 100).map(([, s]) => s.score));
  });
});
