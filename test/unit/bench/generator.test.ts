import { describe, expect, it } from 'vitest';
import { makeSeries, nextValue, rng } from '../../../bench/generator.js';

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
