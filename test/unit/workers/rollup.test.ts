import { describe, expect, it } from 'vitest';
import type { RollupRow } from '../../../workers/encode/rollups.js';
import { COUNTER_STALENESS_MS, RollupState, type ClosedBucket } from '../../../workers/rollup.js';
import { ShardCollector, type RollupSettings } from '../../../workers/shard-task.js';

interface P {
  id: bigint;
  ts: number;
  v: number;
  type?: number;
}

const settings: RollupSettings = { widthsMs: [10_000, 60_000], latenessMs: 5_000, retentionMs: 20_000 };

/**
 * Feeds messages (one point each; offset = index) to a RollupState in tasks of the given sizes,
 * computing the per-message watermark inputs the way the ingest task and main thread do.
 */
function run(state: RollupState, points: P[], from: number, to: number, taskSize: number, seedMax: number) {
  const rows: RollupRow[] = [];
  const rowsByTask: RollupRow[][] = [];
  const held = [];
  let partitionMax = seedMax;
  for (let start = from; start < to; start += taskSize) {
    const end = Math.min(to, start + taskSize);
    const c = new ShardCollector();
    let runMax = -Infinity;
    for (let o = start; o < end; o++) {
      const p = points[o] as P;
      const maxBefore = runMax;
      runMax = Math.max(runMax, p.ts);
      c.add(p.id, `m${p.id}`, ['k', String(p.id)], p.ts, p.v, p.type ?? 0, o, 0, maxBefore);
    }
    const before = partitionMax;
    partitionMax = Math.max(partitionMax, runMax);
    const taskRows = state.apply('t', 0, c.finish(), before, partitionMax).rows;
    rows.push(...taskRows);
    rowsByTask.push(taskRows);
    held.push({ ...(state.held('t', 0) ?? { offset: Infinity, maxBeforeMs: partitionMax }), after: end, maxAfter: partitionMax });
  }
  return { rows, rowsByTask, held };
}

type Acc = { count: number; sum: number; min: number; max: number; last: number; lastTs: number };

/** Adds a partial aggregate (count, sum, min, max, last at lastTs) to the accumulator under `key`. */
function accumulate(out: Map<string, Acc>, key: string, a: Acc): void {
  const m = out.get(key) ?? { count: 0, sum: 0, min: Infinity, max: -Infinity, last: 0, lastTs: -Infinity };
  m.count += a.count;
  m.sum += a.sum;
  m.min = Math.min(m.min, a.min);
  m.max = Math.max(m.max, a.max);
  if (a.lastTs >= m.lastTs) {
    m.last = a.last;
    m.lastTs = a.lastTs;
  }
  out.set(key, m);
}

function withoutLastTs(out: Map<string, Acc>): Map<string, Omit<Acc, 'lastTs'>> {
  return new Map([...out].map(([k, { lastTs: _lastTs, ...m }]) => [k, m]));
}

/** ReplacingMergeTree(version) FINAL, then the rollups_merged aggregation. */
function merged(rows: RollupRow[]): Map<string, Omit<Acc, 'lastTs'>> {
  const latest = new Map<string, RollupRow>();
  for (const r of rows) {
    const key = [r.seriesId, r.widthMs, r.startMs, r.partition, r.kind, r.correctionOffset, r.correctionPoint].join('/');
    const prev = latest.get(key);
    if (!prev || r.version >= prev.version) latest.set(key, r);
  }
  const out = new Map<string, Acc>();
  for (const r of latest.values()) accumulate(out, [r.seriesId, r.widthMs, r.startMs].join('/'), { ...r, lastTs: r.lastTsMs });
  return withoutLastTs(out);
}

/** GROUP BY over raw points: what merged rollups of gauges must equal. */
function groupBy(points: P[]): Map<string, Omit<Acc, 'lastTs'>> {
  const out = new Map<string, Acc>();
  for (const p of points) {
    for (const w of settings.widthsMs) accumulate(out, [p.id, w, Math.floor(p.ts / w) * w].join('/'), { count: 1, sum: p.v, min: p.v, max: p.v, last: p.v, lastTs: p.ts });
  }
  return withoutLastTs(out);
}

/** Gauges of `series` series every second, out of order within ±3 s, some late by 8-60 s. */
function workload(n: number, seed = 1, series = 3): P[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: n }, (_, i) => {
    const base = 1_700_000_000_000 + Math.floor(i / series) * 1000;
    const jitter = Math.floor((rand() - 0.5) * 6000);
    const late = rand() < 0.03 ? -(8_000 + Math.floor(rand() * 52_000)) : 0;
    return { id: BigInt(i % series), ts: base + jitter + late, v: Math.round(rand() * 1000) / 10 };
  });
}

function flushAll(state: RollupState, topic = 't'): RollupRow[] {
  return state.idle(topic, 0, Number.MAX_SAFE_INTEGER).rows;
}

/**
 * Applies one message (one point, offsets 0, 1, 2, ...) per task to one partition, with the
 * partition's event-time maximum before and after it as the main thread computes them.
 */
function feeder(state: RollupState, topic = 't', partition = 0) {
  let max = -Infinity;
  let offset = 0;
  return (p: P & { pointIndex?: number }) => {
    const c = new ShardCollector();
    c.add(p.id, `m${p.id}`, ['k', String(p.id)], p.ts, p.v, p.type ?? 0, offset++, p.pointIndex ?? 0, -Infinity);
    const before = max;
    max = Math.max(max, p.ts);
    return state.apply(topic, partition, c.finish(), before, max);
  };
}

/** The bucket row of series `id` (metric `m<id>`, tags k=<id>) as RollupState writes it. */
function bucketRow(id: bigint, r: Partial<RollupRow> & Pick<RollupRow, 'widthMs' | 'startMs' | 'count' | 'sum' | 'min' | 'max' | 'last' | 'lastTsMs' | 'sumsq' | 'version'>): RollupRow {
  return { seriesId: id, metric: `m${id}`, tags: ['k', String(id)], tenant: '', type: 0, topic: 't', partition: 0, kind: 1, correctionOffset: 0, correctionPoint: 0, ...r };
}

describe('rollup buckets', () => {
  it('places out-of-order and late points so that merged rollups equal a GROUP BY over the points, for two widths', () => {
    const points = workload(3000);
    const state = new RollupState(settings);
    const { rows } = run(state, points, 0, points.length, 97, -Infinity);
    rows.push(...flushAll(state));
    expect(merged(rows)).toEqual(groupBy(points));
  });

  it('closes a bucket when the watermark passes its end, hands it to the stages once, in event-time order per series', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 2_000, retentionMs: 0 });
    const closed: ClosedBucket[] = [];
    state.stages.push((b) => closed.push(b));
    const t0 = 1_700_000_000_000;
    const pts: P[] = [
      { id: 1n, ts: t0 + 1_000, v: 1 },
      { id: 1n, ts: t0 + 9_000, v: 2 },
      { id: 1n, ts: t0 + 11_000, v: 3 }, // watermark 9 s: bucket [0,10) still open
      { id: 1n, ts: t0 + 5_000, v: 4 }, // out of order, within lateness: joins bucket 0
      { id: 1n, ts: t0 + 12_500, v: 5 }, // watermark 10.5 s after this message: bucket 0 closes
    ];
    const first = run(state, pts, 0, 4, 4, -Infinity);
    expect(first.rows).toEqual([]);
    const second = run(state, pts, 4, 5, 1, t0 + 11_000);
    expect(second.rows).toHaveLength(1);
    expect(second.rows[0]).toMatchObject({ count: 3, sum: 7, min: 1, max: 4, last: 2, kind: 1, version: 3 });
    expect(closed.map((b) => b.startMs)).toEqual([t0]);
  });

  it('re-versions a closed bucket for a late point within retention, and writes a correction row after it', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 30_000 });
    const t0 = 1_700_000_000_000;
    const pts: P[] = [
      { id: 1n, ts: t0 + 1_000, v: 1 },
      { id: 1n, ts: t0 + 15_000, v: 2 }, // closes [0,10)
      { id: 1n, ts: t0 + 2_000, v: 10 }, // late, within retention: new version of [0,10)
      { id: 1n, ts: t0 + 60_000, v: 3 }, // evicts [0,10)
      { id: 1n, ts: t0 + 3_000, v: 100 }, // late beyond retention: its own correction row
    ];
    const { rows } = run(state, pts, 0, pts.length, 1, -Infinity);
    const bucket0 = rows.filter((r) => r.startMs === t0);
    expect(bucket0.map((r) => [r.kind, r.count, r.sum, r.version])).toEqual([
      [1, 1, 1, 1],
      [1, 2, 11, 2],
      [2, 1, 100, 1],
    ]);
    expect(merged(rows).get(`1/10000/${t0}`)).toMatchObject({ count: 3, sum: 111 });
  });

  it('a late point exactly at end + retention gets a correction row of its own: the bucket keeps both points (regression: a strict comparison lost it)', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 30_000 });
    const t0 = 1_700_000_000_000;
    const pts: P[] = [
      { id: 1n, ts: t0 + 1_000, v: 1 },
      { id: 1n, ts: t0 + 40_000, v: 2 }, // watermark = end of [0,10) + retention: evicted
      { id: 1n, ts: t0 + 2_000, v: 10 }, // judged by exactly that watermark
    ];
    const { rows } = run(state, pts, 0, pts.length, 1, -Infinity);
    expect(rows.filter((r) => r.startMs === t0).map((r) => [r.kind, r.count, r.sum, r.version])).toEqual([
      [1, 1, 1, 1],
      [2, 1, 10, 1],
    ]);
    expect(merged(rows).get(`1/10000/${t0}`)).toMatchObject({ count: 2, sum: 11 });
  });

  it('a late point one millisecond inside retention re-versions the retained bucket', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 30_000 });
    const t0 = 1_700_000_000_000;
    const pts: P[] = [
      { id: 1n, ts: t0 + 1_000, v: 1 },
      { id: 1n, ts: t0 + 39_999, v: 2 },
      { id: 1n, ts: t0 + 2_000, v: 10 },
    ];
    const { rows } = run(state, pts, 0, pts.length, 1, -Infinity);
    expect(rows.filter((r) => r.startMs === t0).map((r) => [r.kind, r.count, r.sum, r.version])).toEqual([
      [1, 1, 1, 1],
      [1, 2, 11, 2],
    ]);
  });

  it('a replay from the held offset after a crash rebuilds counter buckets with their first rate: the offset includes the point before (regression: the replay lost it)', () => {
    // Three counters, one point per series every 2 s, a reset now and then; widths of 10 s and 60 s.
    const points: P[] = [];
    const totals = [0, 0, 0];
    for (let i = 0; i < 900; i++) {
      const id = i % 3;
      totals[id] = i % 97 === 0 ? 5 : (totals[id] as number) + 1 + (i % 7);
      points.push({ id: BigInt(id), ts: 1_700_000_000_000 + Math.floor(i / 3) * 2000, v: totals[id] as number, type: 1 });
    }
    const whole = new RollupState(settings);
    const reference = run(whole, points, 0, points.length, 50, -Infinity).rows;
    reference.push(...flushAll(whole));

    for (const crashAfterTask of [3, 7, 11]) {
      const first = new RollupState(settings);
      const before = run(first, points, 0, points.length, 50, -Infinity);
      const at = before.held[crashAfterTask] as { offset: number; maxBeforeMs: number; after: number; maxAfter: number };
      // The commit: the position after the task, held back to the held offset with its watermark base.
      const from = Math.min(at.offset, at.after);
      const seed = at.offset < at.after ? at.maxBeforeMs : at.maxAfter;
      const written = before.rowsByTask.slice(0, crashAfterTask + 1).flat();
      const replayState = new RollupState(settings);
      const replay = run(replayState, points, from, points.length, 50, seed).rows;
      replay.push(...flushAll(replayState));
      expect(merged([...written, ...replay]), `crash after task ${crashAfterTask}, replay from ${from}`).toEqual(merged(reference));
    }
  });

  it('aggregates counters as per-second rates with resets handled as Prometheus rate() does', () => {
    const state = new RollupState({ widthsMs: [60_000], latenessMs: 0, retentionMs: 0 });
    const t0 = 1_699_999_980_000; // a minute boundary
    const pts: P[] = [
      { id: 7n, ts: t0, v: 100, type: 1 },
      { id: 7n, ts: t0 + 10_000, v: 150, type: 1 }, // +50 in 10 s = 5/s
      { id: 7n, ts: t0 + 20_000, v: 30, type: 1 }, // reset: +30 in 10 s = 3/s
      { id: 7n, ts: t0 + 15_000, v: 999, type: 1 }, // out of order: no rate
      { id: 7n, ts: t0 + 40_000, v: 90, type: 1 }, // +60 in 20 s = 3/s
      { id: 7n, ts: t0 + 70_000, v: 90, type: 1 }, // next bucket: 0/s, and closes the first
    ];
    const { rows } = run(state, pts, 0, pts.length, 2, -Infinity);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ count: 3, sum: 11, min: 3, max: 5, last: 3 });
    expect(rows[0]?.sumsq).toBeCloseTo(25 + 9 + 9, 10);
  });

  // 40 series: buckets of many series leave the held heap from its middle and their slots are reused.
  it.each([
    [7, 3],
    [11, 3],
    [13, 40],
  ])('after a crash anywhere (seed %i, %i series), a replay from the commit point rebuilds rows that merge to the same result', (seed, series) => {
    const points = workload(1500, seed, series);
    const taskSize = 40;
    const reference = new RollupState(settings);
    const full = run(reference, points, 0, points.length, taskSize, -Infinity);
    const expected = merged([...full.rows, ...flushAll(reference)]);
    expect(expected).toEqual(groupBy(points));

    for (let durable = 1; durable < full.held.length; durable++) {
      // Tasks up to `durable` are acknowledged; the commit is the ingestor's: their position,
      // held back to the first bucket still held after the last of them.
      const h = full.held[durable - 1] as (typeof full.held)[number];
      const commit = Math.min(h.after, h.offset);
      const seedMax = commit === h.after ? h.maxAfter : h.maxBeforeMs;
      const replay = new RollupState(settings);
      const again = run(replay, points, commit, points.length, taskSize + 13, seedMax);
      const replayed = [...again.rows, ...flushAll(replay)];
      // Either only the acknowledged tasks' rows reached ClickHouse, or every emitted row did.
      for (const inserted of [full.rowsByTask.slice(0, durable).flat(), full.rows]) {
        expect(merged([...inserted, ...replayed]), `crash after task ${durable}, replay from ${commit}`).toEqual(expected);
      }
    }
  });

  it('forgets an idle series: its buckets are no longer held or counted, and it starts afresh', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 60_000 });
    const t0 = 1_700_000_000_000;
    const pts: P[] = [
      { id: 1n, ts: t0 + 1_000, v: 1 },
      { id: 2n, ts: t0 + 2_000, v: 2 },
      { id: 1n, ts: t0 + 3_000, v: 3 },
    ];
    run(state, pts, 0, pts.length, 3, -Infinity);
    expect(state.bucketCount).toBe(2);
    expect(state.held('t', 0)).toMatchObject({ offset: 0 });
    state.forget(new Set([1n]));
    expect(state.bucketCount).toBe(1);
    expect(state.held('t', 0)).toMatchObject({ offset: 1 });
    state.forget(new Set([2n]));
    expect(state.bucketCount).toBe(0);
    expect(state.held('t', 0)).toBeNull();
    // Series 1 again: a new bucket of its own, not the forgotten one.
    const c = new ShardCollector();
    c.add(1n, 'm1', ['k', '1'], t0 + 4_000, 10, 0, 3, 0, t0 + 3_000);
    const out = state.apply('t', 0, c.finish(), t0 + 3_000, t0 + 25_000);
    expect(out.rows.map((r) => [r.seriesId, r.count, r.sum])).toEqual([[1n, 1, 10]]);
  });

  it('holds the counter base of each held bucket: the commit follows the lowest base, not the oldest bucket', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const t0 = 1_700_000_000_000;
    const c = new ShardCollector();
    // Counter 7 reports at offsets 0 and 5; counter 8 at 1, 2, 3; gauge 9 at 4.
    c.add(7n, 'c7', [], t0 + 1_000, 100, 1, 0, 0, -Infinity);
    c.add(8n, 'c8', [], t0 + 1_100, 10, 1, 1, 0, t0 + 1_000);
    c.add(8n, 'c8', [], t0 + 1_200, 20, 1, 2, 0, t0 + 1_100);
    c.add(8n, 'c8', [], t0 + 1_300, 30, 1, 3, 0, t0 + 1_200);
    c.add(9n, 'g9', [], t0 + 1_400, 5, 0, 4, 0, t0 + 1_300);
    c.add(7n, 'c7', [], t0 + 1_500, 110, 1, 5, 0, t0 + 1_400);
    const out = state.apply('t', 0, c.finish(), -Infinity, t0 + 1_500);
    expect(out.rows).toEqual([]);
    // The open buckets began at offsets 2 (counter 8's first rate, based on offset 1), 4 (the
    // gauge) and 5 (counter 7's first rate, based on offset 0): the replay must start at 0.
    expect(state.held('t', 0)).toEqual({ offset: 0, maxBeforeMs: -Infinity });
  });

  it('refuses a share that goes back in offsets, also after an empty share', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const t0 = 1_700_000_000_000;
    const one = (offset: number) => {
      const c = new ShardCollector();
      c.add(1n, 'm', [], t0 + offset, 1, 0, offset, 0, -Infinity);
      return c.finish();
    };
    state.apply('t', 0, one(10), -Infinity, t0 + 10);
    state.apply('t', 0, new ShardCollector().finish(), t0 + 10, t0 + 10);
    expect(() => state.apply('t', 0, one(10), t0 + 10, t0 + 10)).toThrow(/at or before 10 already applied/);
    expect(() => state.apply('t', 0, one(11), t0 + 10, t0 + 11)).not.toThrow();
  });

  it('gives no counter rate across a gap longer than COUNTER_STALENESS_MS, and counts late points exactly', () => {
    const state = new RollupState({ widthsMs: [60_000], latenessMs: 0, retentionMs: 0 });
    const t0 = 1_699_999_980_000;
    const pts: P[] = [
      { id: 3n, ts: t0, v: 100, type: 1 },
      { id: 3n, ts: t0 + 10_000, v: 110, type: 1 }, // 1/s
      { id: 3n, ts: t0 + 10_000 + COUNTER_STALENESS_MS + 1, v: 500, type: 1 }, // stale: no rate
      { id: 3n, ts: t0 + 20_000 + COUNTER_STALENESS_MS + 1, v: 520, type: 1 }, // 2/s
    ];
    const { rows } = run(state, pts, 0, pts.length, 1, -Infinity);
    rows.push(...flushAll(state));
    expect(merged(rows).get(`3/60000/${t0}`)).toMatchObject({ count: 1, sum: 1 });
    const later = [...merged(rows).entries()].filter(([k]) => k !== `3/60000/${t0}`).map(([, a]) => a);
    expect(later).toEqual([{ count: 1, sum: 2, min: 2, max: 2, last: 2 }]);

    // A counter that stays put has rate 0 (not a reset); a point at the previous one's timestamp is
    // out of order (no rate), counted.
    const flat = new RollupState({ widthsMs: [60_000], latenessMs: 0, retentionMs: 0 });
    const c = new ShardCollector();
    c.add(5n, 'c5', [], t0, 40, 1, 0, 0, -Infinity);
    c.add(5n, 'c5', [], t0 + 10_000, 40, 1, 1, 0, t0);
    c.add(5n, 'c5', [], t0 + 10_000, 41, 1, 2, 0, t0 + 10_000);
    const flatOut = flat.apply('t', 0, c.finish(), -Infinity, t0 + 10_000);
    expect(flatOut.counterOutOfOrder).toBe(1);
    expect(flat.idle('t', 0, Number.MAX_SAFE_INTEGER).rows.map((r) => [r.count, r.sum])).toEqual([[1, 0]]);

    // A gauge point whose bucket ends exactly at the watermark is born closed: late, counted once.
    const g = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 60_000 });
    const gp: P[] = [
      { id: 4n, ts: t0 + 20_000, v: 1 },
      { id: 4n, ts: t0 + 5_000, v: 2 }, // [0,10) ends at 10 s ≤ watermark 20 s: born closed
      { id: 4n, ts: t0 + 15_000, v: 3 }, // [10,20) ends at 20 s = watermark: born closed too
      { id: 4n, ts: t0 + 21_000, v: 4 }, // on time
    ];
    let late = 0;
    let maxTs = -Infinity;
    gp.forEach((p, i) => {
      const c = new ShardCollector();
      c.add(p.id, 'g', [], p.ts, p.v, 0, i, 0, -Infinity);
      const before = maxTs;
      maxTs = Math.max(maxTs, p.ts);
      late += g.apply('t', 0, c.finish(), before, maxTs).late;
    });
    expect(late).toBe(2);
  });

  it('writes a correction row of the late point alone, with its offset and point index, and counts the point late', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 30_000 });
    const feed = feeder(state);
    const t0 = 1_700_000_000_000;
    feed({ id: 1n, ts: t0 + 1_000, v: 1 });
    feed({ id: 1n, ts: t0 + 40_000, v: 2 }); // closes [0,10) and evicts it (end + retention = 40 s)
    const out = feed({ id: 1n, ts: t0 + 2_000, v: 3, pointIndex: 4 }); // offset 2
    expect(out.rows).toEqual([
      { ...bucketRow(1n, { widthMs: 10_000, startMs: t0, count: 1, sum: 3, min: 3, max: 3, last: 3, lastTsMs: t0 + 2_000, sumsq: 9, version: 1 }), kind: 2, correctionOffset: 2, correctionPoint: 4 },
    ]);
    expect(out.late).toBe(1);
    expect(out.closed).toBe(0);
  });

  it('keeps a closed bucket (counted and held) until the watermark reaches end + retention, then lets it go', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 20_000 });
    const feed = feeder(state);
    const t0 = 1_700_000_000_000;
    feed({ id: 1n, ts: t0 + 1_000, v: 1 }); // offset 0: [0,10) open
    expect([state.bucketCount, state.held('t', 0)]).toEqual([1, { offset: 0, maxBeforeMs: -Infinity }]);
    expect(feed({ id: 1n, ts: t0 + 12_000, v: 2 }).closed).toBe(1); // offset 1: [0,10) closed, retained until 30 s
    expect([state.bucketCount, state.held('t', 0)]).toEqual([2, { offset: 0, maxBeforeMs: -Infinity }]);
    expect(feed({ id: 1n, ts: t0 + 29_999, v: 3 }).closed).toBe(1); // offset 2: [10,20) closed, [0,10) one ms short of eviction
    expect([state.bucketCount, state.held('t', 0)]).toEqual([3, { offset: 0, maxBeforeMs: -Infinity }]);
    expect(feed({ id: 1n, ts: t0 + 30_000, v: 4 }).closed).toBe(1); // offset 3: watermark 30 s evicts [0,10), closes [20,30)
    // Held: [10,20) (first point at offset 1), [20,30) (offset 2), [30,40) (offset 3).
    expect([state.bucketCount, state.held('t', 0)]).toEqual([3, { offset: 1, maxBeforeMs: t0 + 1_000 }]);
    feed({ id: 1n, ts: t0 + 50_000, v: 5 }); // offset 4: evicts [10,20) and [20,30) (until 40 s, 50 s), closes [30,40)
    expect([state.bucketCount, state.held('t', 0)]).toEqual([2, { offset: 3, maxBeforeMs: t0 + 29_999 }]);
  });

  it('retains a bucket born closed for its retention like any closed bucket: a second late point re-versions it', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 20_000 });
    const feed = feeder(state);
    const t0 = 1_700_000_000_000;
    feed({ id: 1n, ts: t0 + 25_000, v: 1 }); // offset 0: [20,30) open
    const first = feed({ id: 1n, ts: t0 + 5_000, v: 2 }); // offset 1: [0,10) ended before watermark 25 s: born closed, retained until 30 s
    expect(first.rows).toEqual([bucketRow(1n, { widthMs: 10_000, startMs: t0, count: 1, sum: 2, min: 2, max: 2, last: 2, lastTsMs: t0 + 5_000, sumsq: 4, version: 1 })]);
    expect([first.late, first.closed]).toEqual([1, 0]);
    expect(state.bucketCount).toBe(2);
    const second = feed({ id: 1n, ts: t0 + 6_000, v: 3 }); // offset 2: watermark 25 s, still within retention
    expect(second.rows).toEqual([bucketRow(1n, { widthMs: 10_000, startMs: t0, count: 2, sum: 5, min: 2, max: 3, last: 3, lastTsMs: t0 + 6_000, sumsq: 13, version: 2 })]);
    expect(second.late).toBe(1);
    feed({ id: 1n, ts: t0 + 30_000, v: 4 }); // offset 3: watermark 30 s evicts [0,10) and closes [20,30)
    expect(state.held('t', 0)).toEqual({ offset: 0, maxBeforeMs: -Infinity });
    expect(state.bucketCount).toBe(2);
  });

  it('closes the buckets a watermark passes in end order, also when they were opened out of order, and hands them to the stages in that order', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 30_000, retentionMs: 0 });
    const stages: number[] = [];
    state.stages.push((b) => stages.push(b.startMs));
    const t0 = 1_700_000_000_000;
    const pts: P[] = [
      { id: 1n, ts: t0 + 25_000, v: 3 },
      { id: 1n, ts: t0 + 5_000, v: 1 },
      { id: 1n, ts: t0 + 15_000, v: 2 },
      { id: 1n, ts: t0 + 61_000, v: 4 }, // watermark 31 s: closes all three
    ];
    expect(run(state, pts, 0, 3, 3, -Infinity).rows).toEqual([]);
    const { rows } = run(state, pts, 3, 4, 1, t0 + 25_000);
    expect(rows.map((r) => [r.startMs - t0, r.sum])).toEqual([
      [0, 1],
      [10_000, 2],
      [20_000, 3],
    ]);
    expect(stages.map((s) => s - t0)).toEqual([0, 10_000, 20_000]);
  });

  it('takes last from the later message when two points of a bucket share a timestamp, and from the latest timestamp otherwise', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const feed = feeder(state);
    const t0 = 1_700_000_000_000;
    feed({ id: 1n, ts: t0 + 1_000, v: 5 });
    feed({ id: 1n, ts: t0 + 1_000, v: 7 });
    feed({ id: 1n, ts: t0 + 500, v: 9 });
    expect(flushAll(state)).toEqual([bucketRow(1n, { widthMs: 10_000, startMs: t0, count: 3, sum: 21, min: 5, max: 9, last: 7, lastTsMs: t0 + 1_000, sumsq: 155, version: 3 })]);
  });

  it('gives a counter rate across a gap of exactly COUNTER_STALENESS_MS', () => {
    const state = new RollupState({ widthsMs: [60_000], latenessMs: 0, retentionMs: 0 });
    const feed = feeder(state);
    const t0 = 1_699_999_980_000; // a minute boundary
    feed({ id: 3n, ts: t0, v: 100, type: 1 });
    feed({ id: 3n, ts: t0 + COUNTER_STALENESS_MS, v: 400, type: 1 }); // +300 in 300 s
    expect(flushAll(state)).toEqual([
      { ...bucketRow(3n, { widthMs: 60_000, startMs: t0 + COUNTER_STALENESS_MS, count: 1, sum: 1, min: 1, max: 1, last: 1, lastTsMs: t0 + COUNTER_STALENESS_MS, sumsq: 1, version: 1 }), type: 1 },
    ]);
  });

  it('keeps partitions apart: offsets, watermarks, held offsets and the rows topic and partition are per partition', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const a = feeder(state, 'a', 0);
    const b = feeder(state, 'b', 1);
    const t0 = 1_700_000_000_000;
    expect(a({ id: 1n, ts: t0 + 1_000, v: 1 }).rows).toEqual([]);
    expect(b({ id: 1n, ts: t0 + 2_000, v: 2 }).rows).toEqual([]); // offset 0 again, in its own partition
    // b's watermark (15 s) closes b's bucket only.
    expect(b({ id: 1n, ts: t0 + 15_000, v: 3 }).rows).toEqual([
      bucketRow(1n, { topic: 'b', partition: 1, widthMs: 10_000, startMs: t0, count: 1, sum: 2, min: 2, max: 2, last: 2, lastTsMs: t0 + 2_000, sumsq: 4, version: 1 }),
    ]);
    expect(state.held('a', 0)).toEqual({ offset: 0, maxBeforeMs: -Infinity });
    expect(state.held('b', 1)).toEqual({ offset: 1, maxBeforeMs: t0 + 2_000 });
    expect(state.idle('a', 0, t0 + 10_000).rows).toEqual([
      bucketRow(1n, { topic: 'a', partition: 0, widthMs: 10_000, startMs: t0, count: 1, sum: 1, min: 1, max: 1, last: 1, lastTsMs: t0 + 1_000, sumsq: 1, version: 1 }),
    ]);
  });

  it('forgetting a series leaves partitions that never saw it as they were', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const t0 = 1_700_000_000_000;
    feeder(state, 'a', 0)({ id: 1n, ts: t0 + 1_000, v: 1 });
    feeder(state, 'b', 1)({ id: 2n, ts: t0 + 2_000, v: 2 });
    state.forget(new Set([1n]));
    expect(state.held('a', 0)).toBeNull();
    expect(state.held('b', 1)).toEqual({ offset: 0, maxBeforeMs: -Infinity });
    expect(state.bucketCount).toBe(1);
    expect(state.idle('b', 1, t0 + 10_000).rows.map((r) => [r.seriesId, r.count, r.sum])).toEqual([[2n, 1, 2]]);
  });

  it('after its lowest held bucket goes, held() gives the next lowest base offset, wherever it sits in the heap', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const t0 = 1_700_000_000_000;
    const c = new ShardCollector();
    // Buckets open in the order of their base offsets 0, 5, 3 (counter 3's first rate, based on
    // offset 3, comes at offset 6) and 9.
    c.add(1n, 'g1', [], t0 + 1_000, 1, 0, 0, 0, -Infinity);
    c.add(3n, 'c3', [], t0 + 1_100, 10, 1, 3, 0, t0 + 1_000);
    c.add(2n, 'g2', [], t0 + 1_200, 2, 0, 5, 0, t0 + 1_100);
    c.add(3n, 'c3', [], t0 + 1_300, 20, 1, 6, 0, t0 + 1_200);
    c.add(4n, 'g4', [], t0 + 1_400, 4, 0, 9, 0, t0 + 1_300);
    state.apply('t', 0, c.finish(), -Infinity, t0 + 1_400);
    const helds = [state.held('t', 0)];
    for (const id of [1n, 3n, 2n, 4n]) {
      state.forget(new Set([id]));
      helds.push(state.held('t', 0));
    }
    expect(helds).toEqual([
      { offset: 0, maxBeforeMs: -Infinity },
      { offset: 3, maxBeforeMs: t0 + 1_000 },
      { offset: 5, maxBeforeMs: t0 + 1_100 },
      { offset: 9, maxBeforeMs: t0 + 1_300 },
      null,
    ]);
  });

  it('labels every row of a series with the type of its latest point, also a bucket opened before the type changed', () => {
    const state = new RollupState({ widthsMs: [10_000], latenessMs: 0, retentionMs: 0 });
    const feed = feeder(state);
    const t0 = 1_700_000_000_000;
    feed({ id: 1n, ts: t0 + 1_000, v: 5 }); // a gauge
    feed({ id: 1n, ts: t0 + 2_000, v: 100, type: 1 }); // now a counter: no rate yet
    const { rows } = feed({ id: 1n, ts: t0 + 12_000, v: 120, type: 1 }); // 2/s in [10,20); closes [0,10)
    rows.push(...flushAll(state));
    expect(rows.map((r) => [r.startMs - t0, r.type, r.sum])).toEqual([
      [0, 1, 5],
      [10_000, 1, 2],
    ]);
  });
});
