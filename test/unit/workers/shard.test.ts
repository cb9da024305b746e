import { beforeEach, describe, expect, it } from 'vitest';
import { dictEntry, emptyBatch, ShardCollector, type ModelSettings, type ShardTask } from '../../../workers/shard-task.js';
import { FORECAST_COLUMNS } from '../../../workers/encode/forecasts.js';
import { prepareModels, resetShardState, track } from '../../../workers/shard.js';
import { DEFAULT_ENSEMBLE } from '../../../models/ensemble.js';
import { mulberry32 } from '../../../models/random.js';
import { ANOMALY_COLUMNS } from '../../../workers/encode/anomalies.js';
import { ROLLUP_COLUMNS } from '../../../workers/encode/rollups.js';
import { STATE_COLUMNS } from '../../../workers/encode/state.js';
import { decodeRowBinary } from '../../helpers/rowbinary.js';

function task(batch: ShardTask['batch'], nowMs: number, rollups: ShardTask['rollups'] = null): ShardTask {
  return { kind: 'data', topic: 't', partition: 0, partitionMaxBeforeMs: -Infinity, partitionMaxAfterMs: 0, idleWatermarkMs: -Infinity, batch, nowMs, seriesIdleMs: 60_000, stateIntervalMs: 0, maxSeries: Infinity, maxTenantSeries: Infinity, rollups, models: null, alerts: null, alertWidthMs: 0 };
}

/**
 * Two series of 200 buckets of 10 s (a noisy sine with one spike at `spikeAt`, and a flat one),
 * the per-series detectors (the shard's isolation forest is not handed over) and a threshold rule
 * held for 30 s on the sine.
 */
function replayFixture(seed: number, spikeAt: number, forecast: ModelSettings['forecast'] = null) {
  const models = { widthMs: 10_000, ensemble: { ...DEFAULT_ENSEMBLE, detectors: ['robust', 'ewma', 'seasonal'] as const }, lstmModelDir: '', minScore: 0, forecast };
  const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
  const rand = mulberry32(seed);
  const values = Array.from({ length: 200 }, (_, i) => [50 + 10 * Math.sin(i / 7) + rand() * 3 + (i === spikeAt ? 80 : 0), 20 + rand()]);
  const text = 'rules:\n  - id: hot\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 55\n    for: 30s\n';
  const alerts = { hash: 'h1', text, file: 'rules.yaml', active: null };
  /** The task of bucket i (points at offset i), the partition's maximum before it `maxBeforeMs`. */
  const taskAt = (i: number, maxBeforeMs: number, stateIntervalMs = 0): ShardTask => {
    const c = new ShardCollector();
    c.add(1n, 'cpu', ['host', 'a'], i * 10_000, values[i]?.[0] as number, 0, i, 0, maxBeforeMs);
    c.add(2n, 'cpu', ['host', 'b'], i * 10_000, values[i]?.[1] as number, 0, i, 1, maxBeforeMs);
    return { ...task(c.finish(), 0, rollups), partitionMaxBeforeMs: maxBeforeMs, partitionMaxAfterMs: i * 10_000, stateIntervalMs, models, alerts, alertWidthMs: 10_000 };
  };
  return { models, taskAt };
}

/** A new consumer group generation: every series dropped, then `states` (detector_state rows) restored, as pipeline/shards.ts does. */
function resetAndRestore(states: ReadonlyMap<bigint, Uint8Array>, models: ShardTask['models']): void {
  track({ ...task(emptyBatch(), 0), kind: 'reset', seeds: [] });
  const ids = [...states.keys()];
  const parts = ids.map((id) => states.get(id) as Uint8Array);
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  const bounds = new Uint32Array(ids.length * 2);
  let pos = 0;
  parts.forEach((p, i) => {
    bounds[2 * i] = pos;
    data.set(p, pos);
    pos += p.length;
    bounds[2 * i + 1] = pos;
  });
  track({ ...task(emptyBatch(), 0), kind: 'restore', models, restore: { ids: BigUint64Array.from(ids), bounds, data } });
}

describe('shard stage', () => {
  beforeEach(() => resetShardState());

  it('collects columns past the initial capacity without losing order, with one dictionary entry per series', () => {
    const c = new ShardCollector();
    for (let i = 0; i < 1000; i++) c.add(BigInt(i % 10), `m${i % 10}`, ['k', 'v'], i * 10, i / 2, i % 2, i, 0, i * 10);
    const b = c.finish();
    expect(b.count).toBe(1000);
    expect(b.dictIds[b.dictIndexes[999] as number]).toBe(9n);
    expect(b.tsMs[500]).toBe(5000);
    expect(b.offsets[700]).toBe(700);
    expect(b.dictIds.length).toBe(10);
    expect(dictEntry(b, 3)).toEqual({ metric: 'm3', tags: ['k', 'v'], tenant: '' });
  });

  it('holds one state per series and evicts series silent longer than the idle time', () => {
    const c = new ShardCollector();
    for (const id of [1n, 2n, 1n, 3n]) c.add(id, 'm', [], 0, 1, 0, 0, 0, -Infinity);
    expect(track(task(c.finish(), 1_000_000))).toMatchObject({ series: 3, evicted: 0 });
    const d = new ShardCollector();
    d.add(2n, 'm', [], 1, 1, 0, 1, 0, -Infinity);
    const later = track(task(d.finish(), 1_000_000 + 61_000));
    expect(later).toMatchObject({ series: 1, evicted: 2 });
    expect(later.stateBytes).toBeGreaterThan(0);
  });

  it('a reset (new consumer group generation) drops every series, so a partition re-delivered from its committed offset applies again and rebuilds the same rows', () => {
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    const share = () => {
      const c = new ShardCollector();
      c.add(1n, 'cpu', ['host', 'a'], 1_000, 5, 0, 100, 0, -Infinity);
      c.add(1n, 'cpu', ['host', 'a'], 2_000, 7, 0, 101, 0, 1_000);
      return { ...task(c.finish(), 0, rollups), partitionMaxAfterMs: 25_000 };
    };
    const first = track(share());
    expect(first.rollupRows).toBe(1);
    // Without a reset the same offsets are refused: applying them twice would double the bucket.
    expect(() => track(share())).toThrow(/already applied/);
    const reset = track({ ...task(share().batch, 0), kind: 'reset', seeds: [] });
    expect(reset).toMatchObject({ series: 0, rollupRows: 0, anomalyRows: 0, alerts: [], held: null });
    const again = track(share());
    expect(again.series).toBe(1);
    expect(again.rollupRows).toBe(1);
    expect(Buffer.from(again.rollupBody).equals(Buffer.from(first.rollupBody))).toBe(true);
  });

  it('holds at most maxTenantSeries series of each named tenant: a tenant past it is refused apart, the others and the default tenant keep getting new series; eviction makes room', () => {
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    const share = (points: [bigint, string][], offset: number, nowMs: number) => {
      const c = new ShardCollector();
      points.forEach(([id, tenant], i) => c.add(id, `m${id}`, ['k', String(id)], 1_000 + i, Number(id), 0, offset + i, 0, -Infinity, undefined, tenant));
      return { ...task(c.finish(), nowMs, rollups), maxSeries: 100, maxTenantSeries: 2, partitionMaxAfterMs: 1_000 };
    };
    // acme brings four new series (a storm); beta two; the default tenant three (no tenant limit).
    const first = track(share([[1n, 'acme'], [2n, 'acme'], [3n, 'acme'], [4n, 'acme'], [5n, 'beta'], [6n, 'beta'], [7n, ''], [8n, ''], [9n, ''], [3n, 'acme']], 100, 1_000_000));
    expect(first.series).toBe(7);
    expect(first.refused).toBeNull();
    expect(first.tenantRefused).toEqual([
      {
        points: 3,
        series: 2,
        firstOffset: 102,
        lastOffset: 109,
        tenant: 'acme',
        sample:
          '{"name":"m3","value":3,"timestamp":1002,"type":"gauge","tags":{"k":"3"}}\n' +
          '{"name":"m4","value":4,"timestamp":1003,"type":"gauge","tags":{"k":"4"}}\n' +
          '{"name":"m3","value":3,"timestamp":1009,"type":"gauge","tags":{"k":"3"}}\n',
      },
    ]);
    // beta at its own limit is refused its third series, acme's known series keep flowing.
    const next = track({ ...share([[1n, 'acme'], [10n, 'beta']], 200, 1_000_000), partitionMaxBeforeMs: 1_000 });
    expect(next.tenantRefused.map((r) => [r.tenant, r.series])).toEqual([['beta', 1]]);
    // acme's series silent past seriesIdleMs (60 s) are evicted; then a new one of acme fits.
    track({ ...share([[7n, '']], 300, 1_000_000 + 61_000), partitionMaxBeforeMs: 1_000 });
    const after = track({ ...share([[11n, 'acme'], [12n, 'acme'], [13n, 'acme']], 400, 1_000_000 + 62_000), partitionMaxBeforeMs: 1_000 });
    expect(after.tenantRefused.map((r) => [r.tenant, r.series, r.points])).toEqual([['acme', 1, 1]]);
  });

  it('holds at most maxSeries series: points of new series past it skip the stateful stages and are reported; known series keep flowing; eviction makes room', () => {
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    const share = (ids: bigint[], offset: number, nowMs: number) => {
      const c = new ShardCollector();
      ids.forEach((id, i) => c.add(id, `m${id}`, ['k', String(id)], 1_000 + i, Number(id), 0, offset + i, 0, -Infinity));
      return { ...task(c.finish(), nowMs, rollups), maxSeries: 3, partitionMaxAfterMs: 1_000 };
    };
    const first = track(share([1n, 2n, 3n, 4n, 5n, 4n], 100, 1_000_000));
    expect(first.series).toBe(3);
    expect(first.refused).toEqual({
      points: 3,
      series: 2,
      firstOffset: 103,
      lastOffset: 105,
      sample:
        '{"name":"m4","value":4,"timestamp":1003,"type":"gauge","tags":{"k":"4"}}\n' +
        '{"name":"m5","value":5,"timestamp":1004,"type":"gauge","tags":{"k":"5"}}\n' +
        '{"name":"m4","value":4,"timestamp":1005,"type":"gauge","tags":{"k":"4"}}\n',
    });
    // Only the admitted series have buckets: closing them writes one row each for series 1-3 (their
    // point of each share), and none for 4 or 5.
    const close = track({ ...share([1n, 2n, 3n], 200, 1_000_000), partitionMaxBeforeMs: 1_000, partitionMaxAfterMs: 50_000 });
    expect(close.refused).toBeNull();
    expect(decodeRowBinary(close.rollupBody, ROLLUP_COLUMNS).map((r) => [r['series_id'], r['count']])).toEqual([
      [1n, 2n],
      [2n, 2n],
      [3n, 2n],
    ]);
    // Series silent past seriesIdleMs (60 s here) are evicted at the end of a task; the next task's new series fits.
    const sweep = track({ ...share([6n], 300, 1_000_000 + 61_000), partitionMaxBeforeMs: 50_000, partitionMaxAfterMs: 50_000 });
    expect([sweep.refused?.points, sweep.evicted, sweep.series]).toEqual([1, 3, 0]);
    const later = track({ ...share([6n], 400, 1_000_000 + 62_000), partitionMaxBeforeMs: 50_000, partitionMaxAfterMs: 50_000 });
    expect(later.refused).toBeNull();
    expect(later.series).toBe(1);
  });

  it('reports the thread heap in use as its state bytes (measured, not estimated)', () => {
    const c = new ShardCollector();
    c.add(1n, 'cpu', [], 1_000, 5, 0, 0, 0, -Infinity);
    const r = track(task(c.finish(), 0));
    expect(r.stateBytes).toBeGreaterThan(1_000_000);
    expect(r.stateBytes).toBeLessThanOrEqual(process.memoryUsage().heapTotal);
  });

  it('encodes the rows of closed buckets for ClickHouse', () => {
    const c = new ShardCollector();
    c.add(1n, 'cpu', ['host', 'a'], 1_000, 5, 0, 0, 0, -Infinity);
    const t = { ...task(c.finish(), 0, { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 }), partitionMaxAfterMs: 25_000 };
    const r = track(t);
    expect(r.rollupRows).toBe(1);
    expect(r.closed).toBe(1);
    expect(decodeRowBinary(r.rollupBody, ROLLUP_COLUMNS)).toEqual([
      {
        series_id: 1n,
        metric: 'cpu',
        'tags.key': ['host'],
        'tags.value': ['a'],
        tenant: '',
        type: 1,
        width_s: 10,
        bucket_start: 0,
        source_topic: 't',
        source_partition: 0,
        kind: 1,
        correction_offset: 0n,
        correction_point: 0,
        count: 1n,
        sum: 5,
        min: 5,
        max: 5,
        last: 5,
        last_ts_ms: 1000n,
        sumsq: 25,
        version: 1n,
      },
    ]);
  });

  it('scores closed buckets of the models width into anomalies rows, one per series and bucket, flagging a spike', async () => {
    // A learning period of 100 buckets (the default, 288, is longer than this series).
    const models = { widthMs: 10_000, ensemble: { ...DEFAULT_ENSEMBLE, learningBuckets: 100 }, lstmModelDir: '', minScore: 0 };
    await prepareModels(models);
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    let rows = 0;
    let flagged = 0;
    let maxTs = -Infinity;
    for (let i = 0; i < 200; i++) {
      const c = new ShardCollector();
      const value = i === 150 ? 500 : 50 + (i % 5);
      c.add(1n, 'cpu', ['host', 'a'], i * 10_000, value, 0, i, 0, maxTs);
      c.add(2n, 'cpu', ['host', 'b'], i * 10_000, 20, 0, i, 1, maxTs);
      const before = maxTs;
      maxTs = i * 10_000;
      const r = track({ ...task(c.finish(), 0, rollups), partitionMaxBeforeMs: before, partitionMaxAfterMs: maxTs, models });
      rows += r.anomalyRows;
      flagged += r.flagged;
      if (i === 151) {
        expect(r.flagged).toBe(1);
        const spike = decodeRowBinary(r.anomalyBody, ANOMALY_COLUMNS).find((row) => row['series_id'] === 1n);
        expect(spike).toMatchObject({ bucket_start: 1500, value: 500, anomaly: 1 });
        expect(spike?.['score'] as number).toBeGreaterThanOrEqual(DEFAULT_ENSEMBLE.threshold);
        expect(spike?.['expected'] as number).toBeLessThan(60);
      }
    }
    // Bucket i closes when the point of bucket i+1 arrives: 199 closed buckets per series.
    expect(rows).toBe(2 * 199);
    expect(flagged).toBe(1);
  });

  it('series state (detectors and rules) written after each task and restored after a reset makes a replay score and alert exactly as a run without the reset', async () => {
    // A threshold held for 30 s on the sine: its episodes (buckets 92-106, 136-150) span the reset (bucket 99).
    const { models, taskAt } = replayFixture(5, 170);
    type Scored = { score: number; expected: number; version: bigint };
    const fired: string[][] = [[], []];
    const run = (from: number, to: number, out: Map<string, Scored>, states: Map<bigint, Uint8Array>, log: string[] = []) => {
      for (let i = from; i < to; i++) {
        const r = track(taskAt(i, i === 0 ? -Infinity : (i - 1) * 10_000));
        for (const t of r.alerts) log.push(`${t.fingerprint} ${t.status} ${t.startsAtMs} at ${t.atMs}`);
        for (const row of decodeRowBinary(r.anomalyBody, ANOMALY_COLUMNS)) {
          out.set(`${String(row['series_id'])}/${String(row['bucket_start'])}`, { score: row['score'] as number, expected: row['expected'] as number, version: row['version'] as bigint });
        }
        const rows = decodeRowBinary(r.stateBody, STATE_COLUMNS, { rawStrings: ['state'] });
        expect(rows).toHaveLength(r.stateRows);
        for (const row of rows) {
          expect(row).toMatchObject({ source_topic: 't', source_partition: 0, width_s: 10, last_bucket: (i - 1) * 10 });
          states.set(row['series_id'] as bigint, (row['state'] as Uint8Array).slice());
        }
      }
    };
    await prepareModels(models);
    const reference = new Map<string, Scored>();
    run(0, 200, reference, new Map(), fired[0]);
    expect(reference.size).toBe(2 * 199);
    expect(fired[0]?.filter((t) => t.includes(' firing ')).length).toBeGreaterThan(3);

    resetShardState();
    await prepareModels(models);
    const before = new Map<string, Scored>();
    const states = new Map<bigint, Uint8Array>();
    run(0, 100, before, states, fired[1]);
    expect([...states.keys()].sort()).toEqual([1n, 2n]);
    // A new generation: everything dropped, the saved state restored, the partition replayed from
    // an offset before the last scored bucket (its held buckets).
    resetAndRestore(states, models);
    const after = new Map<string, Scored>();
    run(80, 200, after, new Map(), fired[1]);
    // The replay from bucket 80 re-judges nothing the state had judged: the same transitions, once each.
    expect(fired[1]).toEqual(fired[0]);
    // Buckets the restored state had scored are not scored again; every later one is, exactly as without the reset.
    expect(Math.min(...[...after.keys()].map((k) => Number(k.split('/')[1])))).toBe(99 * 10);
    for (const [k, v] of after) expect(v, k).toEqual(reference.get(k));
    for (const [k, v] of before) expect(v, k).toEqual(reference.get(k));
    expect(before.size + after.size).toBe(reference.size);
  });

  it('forecasts the series forecasts.series selects, every refresh of event time, and continues them from restored state exactly as without a reset', async () => {
    const forecast = { series: [{ metric: 'cpu', tags: { host: 'a' } }], horizonMs: 600_000, stepMs: 60_000, refreshMs: 300_000 };
    const { models, taskAt } = replayFixture(7, 170, forecast);
    const run = (from: number, to: number, out: Map<string, Record<string, unknown>>, states: Map<bigint, Uint8Array>) => {
      for (let i = from; i < to; i++) {
        const r = track(taskAt(i, i === 0 ? -Infinity : (i - 1) * 10_000));
        const rows = decodeRowBinary(r.forecastBody, FORECAST_COLUMNS);
        expect(rows).toHaveLength(r.forecastRows);
        for (const row of rows) out.set(`${String(row['series_id'])}/${String(row['issued_at'])}/${String(row['bucket_start'])}`, row);
        for (const row of decodeRowBinary(r.stateBody, STATE_COLUMNS, { rawStrings: ['state'] })) states.set(row['series_id'] as bigint, (row['state'] as Uint8Array).slice());
      }
    };
    await prepareModels(models);
    const reference = new Map<string, Record<string, unknown>>();
    run(0, 200, reference, new Map());
    const rows = [...reference.values()];
    // Only host a; from its 30th bucket (the warm-up), at each 300 s boundary of event time: 10 rows 60 s apart, 600 s ahead.
    expect(new Set(rows.map((r) => r['series_id']))).toEqual(new Set([1n]));
    const issued = [...new Set(rows.map((r) => r['issued_at'] as number))].sort((a, b) => a - b);
    expect(issued).toEqual([300, 600, 900, 1200, 1500, 1800]);
    for (const at of issued) {
      const of = rows.filter((r) => r['issued_at'] === at).map((r) => r['bucket_start'] as number);
      expect(of.sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, k) => at - 10 + 60 * (k + 1)));
    }
    for (const r of rows) {
      expect(r['lower_95'] as number).toBeLessThan(r['lower_80'] as number);
      expect(r['lower_80'] as number).toBeLessThan(r['value'] as number);
      expect(r['upper_95'] as number).toBeGreaterThan(r['upper_80'] as number);
      // The noisy sine runs between 40 and 63.
      expect(Math.abs((r['value'] as number) - 51)).toBeLessThan(25);
      expect(JSON.parse(r['model'] as string)).toHaveProperty('alpha');
    }

    resetShardState();
    await prepareModels(models);
    const before = new Map<string, Record<string, unknown>>();
    const states = new Map<bigint, Uint8Array>();
    run(0, 100, before, states);
    resetAndRestore(states, models);
    const after = new Map<string, Record<string, unknown>>();
    run(80, 200, after, new Map());
    for (const [k, v] of [...before, ...after]) expect(v, k).toEqual(reference.get(k));
    expect(new Set([...before.keys(), ...after.keys()]).size).toBe(reference.size);
  });

  it('a forecast rule fires when the forecast crosses its value within its horizon, before the series itself does, and names when', async () => {
    // No forecasts.series: the rule alone has the disk forecast. 5-minute buckets over three and a
    // half days; disk a fills 0.01 a bucket from 50 (58 at bucket 800), disk b stays at 50.
    const w = 300_000;
    const models = { widthMs: w, ensemble: { ...DEFAULT_ENSEMBLE, detectors: ['robust', 'ewma', 'seasonal'] as const }, lstmModelDir: '', minScore: 0, forecast: { series: [], horizonMs: 6 * 3_600_000, stepMs: 3_600_000, refreshMs: 3_600_000 } };
    const rollups = { widthsMs: [w], latenessMs: 0, retentionMs: 0 };
    // Kept firing for an hour: the forecast's crossing wanders about the horizon's edge as its model changes.
    const text = 'rules:\n  - id: disk-full-soon\n    kind: forecast\n    metric: disk\n    op: ">"\n    value: 58\n    within: 6h\n    keepFiringFor: 1h\n';
    const alerts = { hash: 'f1', text, file: 'rules.yaml', active: null };
    await prepareModels(models);
    const rand = mulberry32(3);
    const fired: { tags: string[]; atMs: number; explanation: Record<string, unknown> }[] = [];
    let forecastRows = 0;
    for (let i = 0; i < 1000; i++) {
      const c = new ShardCollector();
      c.add(1n, 'disk', ['host', 'a'], i * w, 50 + 0.01 * i + 0.02 * (rand() - 0.5), 0, i, 0, (i - 1) * w);
      c.add(2n, 'disk', ['host', 'b'], i * w, 50 + 0.02 * (rand() - 0.5), 0, i, 1, (i - 1) * w);
      const r = track({ ...task(c.finish(), 0, rollups), partitionMaxBeforeMs: (i - 1) * w, partitionMaxAfterMs: i * w, models, alerts, alertWidthMs: w });
      forecastRows += r.forecastRows;
      for (const t of r.alerts) if (t.status === 'firing') fired.push({ tags: t.tags, atMs: t.atMs, explanation: t.explanation });
    }
    expect(fired).toHaveLength(1);
    const [alert] = fired;
    expect(alert?.tags).toEqual(['host', 'a']);
    // Fired while the disk was still below 58 (bucket 800), with the forecast crossing within the 6 hours.
    expect(alert?.atMs).toBeLessThan(790 * w);
    expect(alert?.atMs).toBeGreaterThan(650 * w);
    const e = alert?.explanation as Record<string, number>;
    expect(e['predictedValue']).toBeGreaterThan(58);
    expect(e['predictedInMs']).toBeGreaterThan(0);
    expect(e['predictedInMs']).toBeLessThanOrEqual(6 * 3_600_000);
    expect(e['predictedAtMs']).toBe((alert?.atMs as number) + (e['predictedInMs'] as number));
    // The rule's series is forecast into the table too (hourly forecasts of 6 rows); b is not.
    expect(forecastRows).toBeGreaterThan(0);
    expect(forecastRows % 6).toBe(0);
  });

  it('with models.stateIntervalSeconds, state is written once per interval and the commit held at the first unsaved bucket: a replay from there after a kill scores and alerts as a run without it', async () => {
    const { models, taskAt } = replayFixture(9, 150);
    const intervalMs = 100_000;
    type Scored = { score: number; expected: number; version: bigint };
    interface Run {
      scored: Map<string, Scored>;
      fired: string[];
      /** Per task: the state rows written and the offset the commit may reach (the lower of the task's last offset + 1 and the hold). */
      tasks: { states: Map<bigint, Uint8Array>; lastBucketS: number; commit: number }[];
    }
    const run = (from: number, to: number, out: Run) => {
      for (let i = from; i < to; i++) {
        const r = track(taskAt(i, i === 0 ? -Infinity : (i - 1) * 10_000, intervalMs));
        for (const t of r.alerts) out.fired.push(`${t.fingerprint} ${t.status} ${t.startsAtMs} at ${t.atMs}`);
        for (const row of decodeRowBinary(r.anomalyBody, ANOMALY_COLUMNS)) {
          out.scored.set(`${String(row['series_id'])}/${String(row['bucket_start'])}`, { score: row['score'] as number, expected: row['expected'] as number, version: row['version'] as bigint });
        }
        const states = new Map<bigint, Uint8Array>();
        let lastBucketS = -Infinity;
        for (const row of decodeRowBinary(r.stateBody, STATE_COLUMNS, { rawStrings: ['state'] })) {
          states.set(row['series_id'] as bigint, (row['state'] as Uint8Array).slice());
          lastBucketS = Math.max(lastBucketS, Number(row['last_bucket']));
        }
        out.tasks.push({ states, lastBucketS, commit: Math.min(i + 1, r.held?.offset ?? Infinity) });
      }
    };
    await prepareModels(models);
    const reference: Run = { scored: new Map(), fired: [], tasks: [] };
    run(0, 200, reference);
    expect(reference.scored.size).toBe(2 * 199);
    // State rows once per 100 s of event time (10 buckets), not after every task.
    const written = reference.tasks.filter((t) => t.states.size > 0);
    expect(written.length).toBeGreaterThanOrEqual(18);
    expect(written.length).toBeLessThanOrEqual(20);
    expect(written.every((t) => t.states.size === 2)).toBe(true);

    for (const kill of [57, 123, 171, 178]) {
      resetShardState();
      await prepareModels(models);
      const crashed: Run = { scored: new Map(), fired: [], tasks: [] };
      run(0, kill, crashed);
      // What survives the kill: the state rows of every task, and the commit of the last one.
      const last = new Map<bigint, Uint8Array>();
      for (const t of crashed.tasks) for (const [id, st] of t.states) last.set(id, st);
      const committed = (crashed.tasks[kill - 1] as Run['tasks'][number]).commit;
      // The hold keeps the commit at or before the first bucket judged since the last state written
      // (bucket i starts with point i); between two writes, well behind the last task.
      const savedUpTo = Math.max(...crashed.tasks.map((t) => t.lastBucketS)) / 10;
      expect(committed).toBeLessThanOrEqual(savedUpTo + 1);
      if (kill % 10 > 2) expect(committed).toBeLessThan(kill - 2);
      resetAndRestore(last, models);
      const replay: Run = { scored: new Map(), fired: [], tasks: [] };
      run(committed, 200, replay);
      // Every bucket scored after the replay as without the kill; none missing, none different.
      for (const [k, v] of replay.scored) expect(v, `kill ${kill} ${k}`).toEqual(reference.scored.get(k));
      for (const [k, v] of crashed.scored) expect(v, `kill ${kill} ${k}`).toEqual(reference.scored.get(k));
      expect(new Set([...crashed.scored.keys(), ...replay.scored.keys()]).size).toBe(reference.scored.size);
      // Transitions re-derived for the re-judged buckets are the same events (the lifecycle keeps one of each).
      expect([...new Set([...crashed.fired, ...replay.fired])].sort()).toEqual([...new Set(reference.fired)].sort());
      expect(replay.fired.every((t) => reference.fired.includes(t))).toBe(true);
    }
  });

  it('a save task (drained shutdown) writes the partition\'s unsaved series and reports what the rollups alone hold', async () => {
    const models = { widthMs: 10_000, ensemble: { ...DEFAULT_ENSEMBLE, detectors: ['robust', 'ewma'] as const }, lstmModelDir: '', minScore: 0 };
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    await prepareModels(models);
    let maxTs = -Infinity;
    let last = track(task(emptyBatch(), 0));
    for (let i = 0; i < 5; i++) {
      const c = new ShardCollector();
      c.add(1n, 'cpu', [], i * 10_000, i, 0, 100 + i, 0, maxTs);
      c.add(2n, 'cpu', ['k', 'v'], i * 10_000, i, 0, 100 + i, 1, maxTs);
      const before = maxTs;
      maxTs = i * 10_000;
      last = track({ ...task(c.finish(), 0, rollups), partitionMaxBeforeMs: before, partitionMaxAfterMs: maxTs, stateIntervalMs: 3_600_000, models });
      expect(last.stateRows).toBe(0);
    }
    // Held at the first judged bucket (offset 100), not at the open one (104).
    expect(last.held?.offset).toBe(100);
    const save = { ...task(emptyBatch(), 0, rollups), kind: 'save' as const, partitionMaxBeforeMs: maxTs, partitionMaxAfterMs: maxTs, stateIntervalMs: 3_600_000, models };
    const saved = track(save);
    expect(saved.stateRows).toBe(2);
    expect(decodeRowBinary(saved.stateBody, STATE_COLUMNS, { rawStrings: ['state'] }).map((r) => [r['series_id'], r['last_bucket'], r['version']])).toEqual([
      [1n, 30, 4n],
      [2n, 30, 4n],
    ]);
    expect(saved.held?.offset).toBe(104);
    expect(track(save)).toMatchObject({ stateRows: 0, held: { offset: 104 } });
    // Another partition's save writes nothing of this one's.
    expect(track({ ...save, partition: 1 })).toMatchObject({ stateRows: 0, held: null });
  });

  it('writes the state of a series evicted with unsaved buckets in a data task, and never in an idle close', async () => {
    const models = { widthMs: 10_000, ensemble: { ...DEFAULT_ENSEMBLE, detectors: ['robust', 'ewma'] as const }, lstmModelDir: '', minScore: 0 };
    const rollups = { widthsMs: [10_000], latenessMs: 0, retentionMs: 0 };
    await prepareModels(models);
    const at = (id: bigint, i: number, nowMs: number, maxBefore: number) => {
      const c = new ShardCollector();
      c.add(id, 'cpu', [], i * 10_000, i, 0, i, 0, maxBefore);
      return { ...task(c.finish(), nowMs, rollups), partitionMaxBeforeMs: maxBefore, partitionMaxAfterMs: i * 10_000, stateIntervalMs: 3_600_000, models };
    };
    expect(track(at(1n, 0, 0, -Infinity)).stateRows).toBe(0);
    const judged = track(at(1n, 1, 0, 0));
    expect(judged.scored).toBe(1);
    expect(judged.stateRows).toBe(0);
    expect(judged.held?.offset).toBe(0);
    // Silent past seriesIdleMs: an idle close does not evict it (its state would go unwritten)...
    const idle = track({ ...task(emptyBatch(), 120_000, rollups), kind: 'idle', idleWatermarkMs: 15_000, stateIntervalMs: 3_600_000, models });
    expect(idle).toMatchObject({ evicted: 0, stateRows: 0 });
    // ...the next data task evicts it with its state written.
    const sweep = track(at(2n, 2, 240_000, 10_000));
    expect(sweep.evicted).toBe(1);
    expect(sweep.stateRows).toBe(1);
    const [row] = decodeRowBinary(sweep.stateBody, STATE_COLUMNS, { rawStrings: ['state'] });
    expect(row).toMatchObject({ series_id: 1n, last_bucket: 10 });
  });
});
