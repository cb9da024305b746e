import { describe, expect, it } from 'vitest';
import { defaultLabelledOptions, labelledWorkload } from '../../../bench/anomalies.js';
import { injectIncidents, scoreGrouping, type FoundIncident, type InjectedIncident } from '../../../bench/grouping.js';
import { mulberry32 } from '../../../models/random.js';

describe('injected incidents and their grouping score', () => {
  it('shifts each member from its lag for the given buckets, and labels the shifts when asked', () => {
    const o = defaultLabelledOptions({ series: 8, buckets: 1200, widthMs: 10_000, periodMs: 2_400_000, anomaliesPerSeries: 0 });
    const clean = labelledWorkload(o);
    const w = labelledWorkload(o);
    const injected = injectIncidents(w, mulberry32(1), { count: 2, firstAt: 600, spacing: 200, jitter: 10, maxLag: 3, minSize: 3, maxSize: 20, buckets: 30, label: true });
    expect(injected).toHaveLength(2);
    for (const inj of injected) {
      // At most the workload's series.
      expect(inj.members.size).toBeGreaterThanOrEqual(3);
      expect(inj.members.size).toBeLessThanOrEqual(8);
      for (const [s, lag] of inj.members) {
        const diff = (t: number) => (w.series[s]?.values[t] as number) - (clean.series[s]?.values[t] as number);
        const shift = diff(inj.at + lag);
        expect(Math.abs(shift)).toBeGreaterThanOrEqual(6 * (w.series[s]?.noise as number) - 1e-9);
        expect(diff(inj.at + lag + 29)).toBeCloseTo(shift, 9);
        expect(diff(inj.at + lag - 1)).toBe(0);
        expect(diff(inj.at + lag + 30)).toBe(0);
      }
    }
    expect(w.labels).toHaveLength(injected.reduce((n, i) => n + i.members.size, 0));
    expect(w.labels.every((l) => l.kind === 'level_shift' && l.endMs - l.startMs === 30 * 10_000)).toBe(true);
  });

  it('counts an incident grouped right only when its flagged members share one incident, with their share of it as purity', () => {
    const startMs = 0;
    const widthMs = 60_000;
    // Two injected incidents at buckets 100 and 200: members 0, 1, 2 (lags 0, 1, 2) and 3, 4 (lags 0, 0).
    const injected: InjectedIncident[] = [
      { at: 100, members: new Map([[0, 0], [1, 1], [2, 2]]) },
      { at: 200, members: new Map([[3, 0], [4, 0]]) },
    ];
    const t = (bucket: number) => bucket * 60;
    const found: FoundIncident[] = [
      // The first whole, with one other series' onset (purity 3 of 4).
      { id: 'a', members: [{ series: 0, t: t(100) }, { series: 1, t: t(102) }, { series: 2, t: t(102) }, { series: null, t: t(103) }] },
      // The second split in two; and an onset of series 3 long after its shift (not a hit).
      { id: 'b', members: [{ series: 3, t: t(201) }] },
      { id: 'c', members: [{ series: 4, t: t(215) }, { series: 7, t: t(216) }] },
      { id: 'd', members: [{ series: 3, t: t(400) }] },
    ];
    const g = scoreGrouping(found, injected, startMs, widthMs, 30);
    expect(g).toMatchObject({ seen: 2, right: 1, incidents: 4 });
    expect(g.purity).toBeCloseTo(0.75, 9);
    expect(g.flagged).toBe(1);
    // Others: the null member, series 7 (in a 2-series incident), and series 3's late onset (alone).
    expect(g.others).toBe(3);
    expect(g.joined).toBeCloseTo(2 / 3, 9);
  });
});
