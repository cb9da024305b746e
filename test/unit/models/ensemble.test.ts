import { describe, expect, it } from 'vitest';
import { defaultLabelledOptions, labelledWorkload, workloadCsv } from '../../../bench/anomalies.js';
import { backtest, parseBacktestCsv } from '../../../models/backtest.js';
import { DEFAULT_ENSEMBLE, Ensemble } from '../../../models/ensemble.js';
import { evaluate } from '../../../models/evaluate.js';
import { isVigilError } from '../../../core/errors.js';

describe('evaluate', () => {
  it('counts an event detected by a flag in its span or grace, and each run of flags outside as one false alarm', () => {
    const W = 60_000;
    const flags = (series: string, idx: number[]) => Array.from({ length: 100 }, (_, i) => ({ series, tsMs: i * W, flagged: idx.includes(i) }));
    const q = evaluate(
      [...flags('a', [10, 52, 53, 54, 80]), ...flags('b', [])],
      [
        { series: 'a', kind: 'spike', startMs: 10 * W, endMs: 11 * W },
        { series: 'a', kind: 'dropout', startMs: 40 * W, endMs: 50 * W },
        { series: 'b', kind: 'spike', startMs: 20 * W, endMs: 21 * W },
      ],
      W,
      3,
    );
    // a/52 is within the dropout's grace (50..52): detected with delay 12; 53-54 and 80 are two false alarms.
    expect(q).toMatchObject({ events: 3, detected: 2, falseAlarms: 2, falseBuckets: 3 });
    expect(q.byKind['dropout']).toMatchObject({ detected: 1, meanDelayBuckets: 12 });
    expect(q.recall).toBeCloseTo(2 / 3, 9);
    expect(q.precision).toBeCloseTo(2 / 4, 9);
  });
});

describe('ensemble on the labelled workload', () => {
  const w = labelledWorkload(defaultLabelledOptions({ series: 9, seed: 7 }));
  const rows = parseBacktestCsv(workloadCsv(w));

  it('reaches the quality target at default settings (F1 >= 0.85 here, fewer than 1 false bucket per 1,000)', () => {
    const scored: { series: string; tsMs: number; flagged: boolean }[] = [];
    backtest(rows, { settings: DEFAULT_ENSEMBLE, onRow: (r, s) => scored.push({ series: r.series, tsMs: r.tsMs, flagged: s.anomaly }) });
    const labels = w.labels.map((l) => ({ series: `s${l.series}`, kind: l.kind, startMs: l.startMs, endMs: l.endMs }));
    const q = evaluate(scored, labels, w.options.widthMs);
    expect(q.f1).toBeGreaterThanOrEqual(0.85);
    expect(q.fpPerThousand).toBeLessThan(1);
    expect(q.byKind['spike']?.recall).toBe(1);
  });

  it('explains a spike: expected value, band and the detectors that drove it', () => {
    const e = new Ensemble();
    const m = e.init();
    let r = e.step(m, { tsMs: 0, widthMs: 60_000, value: 10, count: 1, min: 10, max: 10, std: 0 });
    for (let i = 1; i < 400; i++) r = e.step(m, { tsMs: i * 60_000, widthMs: 60_000, value: 10 + Math.sin(i), count: 1, min: 0, max: 0, std: 0 });
    expect(r.anomaly).toBe(false);
    r = e.step(m, { tsMs: 400 * 60_000, widthMs: 60_000, value: 40, count: 1, min: 40, max: 40, std: 0 });
    expect(r.anomaly).toBe(true);
    expect(r.explanation.drivers).toContain('robust');
    expect(r.expected).toBeGreaterThan(8);
    expect(r.upper).toBeLessThan(40);
    // The per-series state is plain data: it survives a structured clone (a worker hand-over).
    expect(structuredClone(m).robust.ring.length).toBe(DEFAULT_ENSEMBLE.robust.window);
  });

  it('flags a series that resumes after a dropout, naming the gap', () => {
    const e = new Ensemble();
    const m = e.init();
    for (let i = 0; i < 100; i++) e.step(m, { tsMs: i * 60_000, widthMs: 60_000, value: 5 + (i % 3), count: 1, min: 0, max: 0, std: 0 });
    const r = e.step(m, { tsMs: 112 * 60_000, widthMs: 60_000, value: 6, count: 1, min: 6, max: 6, std: 0 });
    expect(r.anomaly).toBe(true);
    expect(r.explanation.gap).toEqual({ missingBuckets: 12 });
  });
});

describe('backtest CSV', () => {
  it('reads header-less two-column files with epoch seconds and names the line of a bad value', () => {
    const rows = parseBacktestCsv('1700000000,1.5\n1700000060,2\n');
    expect(rows).toEqual([
      { series: '', tsMs: 1_700_000_000_000, value: 1.5, label: '' },
      { series: '', tsMs: 1_700_000_060_000, value: 2, label: '' },
    ]);
    let err: unknown;
    try {
      parseBacktestCsv('timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,abc\n');
    } catch (e) {
      err = e;
    }
    expect(isVigilError(err, 'VIGIL_ERR_BACKTEST_INPUT')).toBe(true);
    expect((err as Error).message).toContain('line 3');
  });
});
