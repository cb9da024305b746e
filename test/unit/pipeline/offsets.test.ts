import { describe, expect, it } from 'vitest';
import { OffsetTracker } from '../../../pipeline/offsets.js';

describe('OffsetTracker', () => {
  it('commits only over the contiguous prefix of finished ranges, per partition', () => {
    const t = new OffsetTracker();
    const a = t.register({ topic: 't', partition: 0, first: 0, last: 9 });
    const b = t.register({ topic: 't', partition: 0, first: 10, last: 19 });
    const c = t.register({ topic: 't', partition: 0, first: 20, last: 29 });
    const other = t.register({ topic: 't', partition: 1, first: 5, last: 7 });
    t.done(b);
    t.done(c);
    expect(t.takeCommittable()).toEqual([]);
    t.done(other);
    expect(t.takeCommittable()).toEqual([{ topic: 't', partition: 1, offset: '8' }]);
    t.done(a);
    expect(t.takeCommittable()).toEqual([{ topic: 't', partition: 0, offset: '30' }]);
    expect(t.takeCommittable()).toEqual([]);
    expect(t.pendingRanges).toBe(0);
  });

  it('offers a failed commit again, and forgets partitions a rebalance took away', () => {
    const t = new OffsetTracker();
    const a = t.register({ topic: 't', partition: 0, first: 0, last: 4 });
    t.register({ topic: 't', partition: 1, first: 0, last: 4 });
    t.done(a);
    const first = t.takeCommittable();
    t.commitFailed(first);
    expect(t.takeCommittable()).toEqual(first);
    t.retain(new Map([['t', [0]]]));
    expect(t.pendingRanges).toBe(0);
  });

  it('rejects a range registered out of offset order', () => {
    const t = new OffsetTracker();
    t.register({ topic: 't', partition: 0, first: 10, last: 19 });
    expect(() => t.register({ topic: 't', partition: 0, first: 15, last: 30 })).toThrow(/overlaps/);
  });
});
