import { beforeEach, describe, expect, it } from 'vitest';
import { ShardCollector } from '../../../workers/shard-task.js';
import { resetShardState, track } from '../../../workers/shard.js';

describe('shard stage', () => {
  beforeEach(() => resetShardState());

  it('collects columns past the initial capacity without losing order', () => {
    const c = new ShardCollector();
    for (let i = 0; i < 1000; i++) c.add(BigInt(i), i * 10, i / 2, i % 2, i * 10);
    const b = c.finish();
    expect(b.count).toBe(1000);
    expect(b.seriesIds[999]).toBe(999n);
    expect(b.tsMs[500]).toBe(5000);
    expect(b.values.length).toBe(1000);
    expect(b.types[3]).toBe(1);
  });

  it('holds one state per series and evicts series silent longer than the idle time', () => {
    const c = new ShardCollector();
    for (const id of [1n, 2n, 1n, 3n]) c.add(id, 0, 1, 0, 0);
    const base = { topic: 't', partition: 0, partitionMaxBeforeMs: -Infinity, seriesIdleMs: 60_000 };
    expect(track({ ...base, batch: c.finish(), nowMs: 1_000_000 })).toMatchObject({ series: 3, evicted: 0 });
    const d = new ShardCollector();
    d.add(2n, 1, 1, 0, 1);
    const later = track({ ...base, batch: d.finish(), nowMs: 1_000_000 + 61_000 });
    expect(later).toMatchObject({ series: 1, evicted: 2 });
    expect(later.stateBytes).toBeGreaterThan(0);
  });
});
