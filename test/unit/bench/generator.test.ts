import { describe, expect, it } from 'vitest';
import { makeSeries, nextValue, rng, tenantOf, withTenants } from '../../../bench/generator.js';

/** Decimals of a number as JavaScript prints it. */
const decimals = (v: number) => (String(v).split('.')[1] ?? '').length;

describe('the load generator', () => {
  it('keeps gauges at their resolution (percentages and milliseconds to 0.1, else 0.001) and counters integer and growing', () => {
    const series = makeSeries(60);
    const rand = rng(7);
    const counters = new Float64Array(series.length);
    const seen = new Map<string, number>();
    for (let step = 0; step < 200; step++) {
      for (const [i, s] of series.entries()) {
        const v = nextValue(s, i, step, rand, counters[i] as number);
        if (s.type === 'counter') {
          expect(Number.isInteger(v)).toBe(true);
          expect(v).toBeGreaterThanOrEqual(counters[i] as number);
          counters[i] = v;
        } else {
          expect(decimals(v), `${s.metric} ${v}`).toBeLessThanOrEqual(s.decimals ?? 3);
          seen.set(s.metric, Math.max(seen.get(s.metric) ?? 0, decimals(v)));
        }
      }
    }
    // The resolution is used, not rounded away: each gauge shows its last decimal somewhere.
    expect(Object.fromEntries(seen)).toEqual({ 'system.cpu.usage_total': 1, 'system.memory.usage_percent': 1, 'http.server.latency_ms': 1 });
  });
});

describe('tenants of the generated series (issue 18)', () => {
  it('gives t0 every other series (half the points), the rest spread evenly over the others, as a tenant tag', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 1000; i++) counts.set(tenantOf(i, 100), (counts.get(tenantOf(i, 100)) ?? 0) + 1);
    expect(counts.size).toBe(100);
    expect(counts.get('t0')).toBe(500);
    expect(new Set([...counts].filter(([t]) => t !== 't0').map(([, n]) => n))).toEqual(new Set([5, 6]));
    const series = withTenants(makeSeries(4), 3);
    expect(series.map((s) => s.tags['tenant'])).toEqual(['t0', 't1', 't0', 't2']);
    expect(withTenants(makeSeries(2), 0).map((s) => s.tags['tenant'])).toEqual([undefined, undefined]);
  });
});
