import { describe, expect, it } from 'vitest';
import { OffsetTracker } from '../../../pipeline/offsets.js';

describe('OffsetTracker', () => {
  it('moves the position only over the contiguous prefix of finished ranges, per partition', () => {
    const t = new OffsetTracker<number>();
    const a = t.register({ topic: 't', partition: 0, first: 0, last: 9 });
    const b = t.register({ topic: 't', partition: 0, first: 10, last: 19 });
    const c = t.register({ topic: 't', partition: 0, first: 20, last: 29 });
    const other = t.register({ topic: 't', partition: 1, first: 5, last: 7 });
    t.done(b, 200);
    t.done(c, 300);
    expect(t.positions()).toEqual([]);
    t.done(other, 50);
    expect(t.positions()).toEqual([{ topic: 't', partition: 1, offset: 8, meta: 50 }]);
    t.done(a, 100);
    expect(t.positions()).toContainEqual({ topic: 't', partition: 0, offset: 30, meta: 300 });
    expect(t.pendingRanges).toBe(0);
  });

  it('forgets partitions a rebalance took away', () => {
    const t = new OffsetTracker();
    t.register({ topic: 't', partition: 0, first: 0, last: 4 });
    t.register({ topic: 't', partition: 1, first: 0, last: 4 });
    t.retain(new Map([['t', [0]]]));
    expect(t.pendingRanges).toBe(1);
  });

  it('rejects a range registered behind one that already finished (regression: the position skipped it)', () => {
    const t = new OffsetTracker<number>();
    const late = { topic: 't', partition: 0, first: 100, last: 199 };
    t.done(t.register({ topic: 't', partition: 0, first: 200, last: 299 }), 0);
    expect(() => t.register(late)).toThrow(/overlaps/);
  });

  it('rejects a range registered out of offset order', () => {
    const t = new OffsetTracker();
    t.register({ topic: 't', partition: 0, first: 10, last: 19 });
    expect(() => t.register({ topic: 't', partition: 0, first: 15, last: 30 })).toThrow(/overlaps/);
  });
});
