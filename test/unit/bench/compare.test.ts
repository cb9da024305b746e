import { describe, expect, it } from 'vitest';
import { compareResults, type BenchResult } from '../../../bench/harness.js';

/** The figures compareResults reads; the rest of a result does not matter to it. */
function result(f: { ref?: number | null; engine?: number | null; p99?: number; alertP99?: number; f1?: number }): BenchResult {
  return {
    ratioToReference: f.ref ?? null,
    ratioToKafkaEngine: f.engine ?? null,
    latencyMs: f.p99 === undefined ? null : { p50: 1, p95: 1, p99: f.p99, max: f.p99 },
    alertLatencyMs: f.alertP99 === undefined ? null : { p50: 1, p95: 1, p99: f.alertP99, max: f.alertP99, probes: 1 },
    quality: f.f1 === undefined ? null : { f1: f.f1 },
  } as unknown as BenchResult;
}

describe('compareResults', () => {
  it('flags a higher-is-better figure that fell below the ratio, and only that one', () => {
    const before = result({ ref: 2, engine: 1.5, f1: 0.9 });
    expect(compareResults(before, result({ ref: 1.8, engine: 1.5, f1: 0.9 }), 0.85)).toEqual([]);
    expect(compareResults(before, result({ ref: 1.6, engine: 1.5, f1: 0.9 }), 0.85)).toEqual([expect.stringMatching(/^ratio to reference \(rows\/s out\): 1\.60 vs 2\.00 before \(0\.80×, below 0\.85×\)$/)]);
    expect(compareResults(before, result({ ref: 2, engine: 1.2, f1: 0.7 }), 0.85)).toEqual([expect.stringContaining('ratio to Kafka engine'), expect.stringContaining('detection F1')]);
  });

  it('flags a lower-is-better figure (latency) that rose past 1/ratio, not one that fell', () => {
    const before = result({ p99: 100, alertP99: 1000 });
    expect(compareResults(before, result({ p99: 50, alertP99: 500 }), 0.85)).toEqual([]);
    expect(compareResults(before, result({ p99: 117, alertP99: 1000 }), 0.85)).toEqual([]);
    expect(compareResults(before, result({ p99: 125, alertP99: 1300 }), 0.85)).toEqual([expect.stringContaining('latency p99 ms: 125.00 vs 100.00'), expect.stringContaining('alert latency p99 ms: 1300.00 vs 1000.00')]);
  });

  it('compares only figures both runs have', () => {
    expect(compareResults(result({ ref: 2 }), result({ p99: 10, f1: 0.1 }), 0.85)).toEqual([]);
    expect(compareResults(result({ ref: 0 }), result({ ref: 1 }), 0.85)).toEqual([]);
  });
});
