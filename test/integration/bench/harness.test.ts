import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compareResults, PRESETS, runBench, type BenchOptions, type BenchResult } from '../../../bench/harness.js';
import { testConfig } from '../../helpers/resources.js';

const outDir = mkdtempSync(join(tmpdir(), 'vigil-bench-'));
const base = { ...(PRESETS['smoke'] as BenchOptions), outDir, regressionRatio: 0.85, points: 0 };

function expectComplete(r: BenchResult): void {
  expect(r.pointsProduced).toBeGreaterThan(0);
  expect(r.rowsStored).toBe(r.pointsProduced);
  expect(r.deadLetters).toBe(0);
  expect(r.rowsPerSecondOut).toBeGreaterThan(0);
  expect(r.cpuSeconds.vigil).toBeGreaterThan(0);
  expect(r.vigilRssMaxMiB).toBeGreaterThan(0);
  expect(r.reference.pointsPerSecond).toBeGreaterThan(0);
  // The Kafka-engine baseline read the same topic: all of it, or the run says it failed.
  expect(r.kafkaEngine?.pointsPerSecond).toBeGreaterThan(0);
  for (const f of Object.values(r.files)) expect(existsSync(f)).toBe(true);
  expect(JSON.parse(readFileSync(r.files.json, 'utf8'))).toEqual(JSON.parse(JSON.stringify(r)));
  const md = readFileSync(r.files.markdown, 'utf8');
  for (const row of ['points/s in', 'rows/s out', 'ratio to reference', 'Kafka engine', 'ratio to Kafka engine', 'latency produce→ClickHouse', 'latency produce→alert', 'detection on injected anomalies', 'forecasts (forecast workload', 'incidents (window', 'CPU s: Vigil / Kafka / ClickHouse', 'Vigil RSS max', 'dead letters']) expect(md).toContain(row);
  // Every table row has the same number of cells (no stray "|" in a cell).
  const rows = md.split('\n').filter((l) => l.startsWith('|'));
  expect(new Set(rows.map((l) => l.replaceAll('\\|', '').split('|').length)).size).toBe(1);
  const svg = readFileSync(r.files.chart, 'utf8');
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg.match(/<polyline /g)).toHaveLength(2);
}

describe('benchmark harness (tiny presets; structure and consistency, no timings)', () => {
  it('reports a live run with all stages completely: ordered latency percentiles, produce→alert latency, detection quality, a timeline', async () => {
    const r = await runBench(testConfig(), base);
    expectComplete(r);
    expect(r.options.stages).toBe('alerts');
    const a = r.alertLatencyMs as NonNullable<BenchResult['alertLatencyMs']>;
    expect(a.probes).toBeGreaterThan(0);
    expect(a.p50).toBeLessThanOrEqual(a.p95);
    expect(a.p95).toBeLessThanOrEqual(a.max);
    // Quality is read back from anomalies_dedup: every bucket of the injected workload was scored.
    const q = r.quality as NonNullable<BenchResult['quality']>;
    expect(q.events).toBeGreaterThan(0);
    expect(q.buckets).toBe(q.workloadBuckets);
    expect(q.workloadBuckets).toBeGreaterThan(base.anomalies * 4 * 240);
    expect(q.detected).toBeLessThanOrEqual(q.events);
    // A detector that never flags fails here: some injected anomaly was found, and some flag was right.
    expect(q.detected).toBeGreaterThan(0);
    expect(q.precision).toBeGreaterThan(0);
    expect(q.f1).toBeGreaterThan(0);
    expect(q.f1).toBeLessThanOrEqual(1);
    // Forecasts and incidents are read back from what the pipeline wrote (forecasts, incidents_dedup).
    const f = r.forecast as NonNullable<BenchResult['forecast']>;
    expect(f.series).toBe(Math.min(4, base.anomalies));
    expect(f.forecasts).toBeGreaterThan(f.series * 20);
    expect(f.horizonBuckets).toBe(4 * 240);
    expect(f.relativeMae).toBeGreaterThan(0);
    // A forecast at all: far better than the last value carried (the workload has a season).
    expect(f.relativeMae).toBeLessThan(f.naiveRelativeMae);
    expect(f.covered80).toBeGreaterThan(0);
    expect(f.covered80).toBeLessThanOrEqual(f.covered95);
    const i = r.incidents as NonNullable<BenchResult['incidents']>;
    expect(i.injected).toBe(3);
    expect(i.right).toBeLessThanOrEqual(i.seen);
    expect(i.seen).toBeLessThanOrEqual(i.injected);
    // Some injected member's onset is in an incident the pipeline wrote.
    expect(i.flagged).toBeGreaterThan(0);
    expect(i.incidents).toBeGreaterThan(0);
    expect(r.latencyMs).not.toBeNull();
    const l = r.latencyMs as NonNullable<BenchResult['latencyMs']>;
    expect(l.p50).toBeLessThanOrEqual(l.p95);
    expect(l.p95).toBeLessThanOrEqual(l.p99);
    expect(l.p99).toBeLessThanOrEqual(l.max);
    expect(r.timeline.length).toBeGreaterThanOrEqual(2);
    expect(r.ratioToReference).toBeNull();
  });

  it('reports a drain run against the reference, and the comparison flags a regression', async () => {
    const r = await runBench(testConfig(), { ...base, rate: 0, points: 20_000, stages: 'raw', anomalies: 0 });
    expectComplete(r);
    expect(r.latencyMs).toBeNull();
    expect(r.alertLatencyMs).toBeNull();
    expect(r.quality).toBeNull();
    expect(r.forecast).toBeNull();
    expect(r.incidents).toBeNull();
    expect(r.ratioToReference).toBeGreaterThan(0);
    expect(r.ratioToKafkaEngine).toBeGreaterThan(0);
    expect(compareResults(r, r, 0.85)).toEqual([]);
    const better = { ...r, ratioToReference: (r.ratioToReference as number) * 2 };
    expect(compareResults(better, r, 0.85)).toEqual([expect.stringContaining('ratio to reference')]);
  });
});
