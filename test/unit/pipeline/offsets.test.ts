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
    expect(t.pendingRanges).toBe(4);
    t.done(other, 50);
    expect(t.positions()).toEqual([{ topic: 't', partition: 1, offset: 8, meta: 50 }]);
    t.done(a, 100);
    // Every partition, exactly: partition 0 past c with c's metadata, partition 1 unchanged.
    expect(t.positions()).toEqual([
      { topic: 't', partition: 0, offset: 30, meta: 300 },
      { topic: 't', partition: 1, offset: 8, meta: 50 },
    ]);
    expect(t.pendingRanges).toBe(0);
  });

  it('stops at the first unfinished range and reports the metadata of the last finished one before it', () => {
    const t = new OffsetTracker<string>();
    const a = t.register({ topic: 't', partition: 0, first: 0, last: 4 });
    t.register({ topic: 't', partition: 0, first: 5, last: 9 });
    const c = t.register({ topic: 't', partition: 0, first: 10, last: 14 });
    t.done(c, 'c');
    t.done(a, 'a');
    expect(t.positions()).toEqual([{ topic: 't', partition: 0, offset: 5, meta: 'a' }]);
    expect(t.pendingRanges).toBe(2);
  });

  it('accepts a one-message range (first = last)', () => {
    const t = new OffsetTracker<number>();
    t.done(t.register({ topic: 't', partition: 3, first: 7, last: 7 }), 1);
    expect(t.positions()).toEqual([{ topic: 't', partition: 3, offset: 8, meta: 1 }]);
  });

  it('keeps topics apart even when partition numbers match', () => {
    const t = new OffsetTracker<number>();
    t.done(t.register({ topic: 'a', partition: 0, first: 0, last: 0 }), 1);
    t.register({ topic: 'b', partition: 0, first: 0, last: 0 });
    expect(t.positions()).toEqual([{ topic: 'a', partition: 0, offset: 1, meta: 1 }]);
  });

  it('rejects a range registered behind one that already finished (regression: the position skipped it)', () => {
    const t = new OffsetTracker<number>();
    const late = { topic: 't', partition: 0, first: 100, last: 199 };
    t.done(t.register({ topic: 't', partition: 0, first: 200, last: 299 }), 0);
    expect(() => t.register(late)).toThrow(/overlaps one registered before \(up to 299\)/);
  });

  it('rejects a range registered out of offset order, and one starting at the last offset registered', () => {
    const t = new OffsetTracker();
    t.register({ topic: 't', partition: 0, first: 10, last: 19 });
    expect(() => t.register({ topic: 't', partition: 0, first: 15, last: 30 })).toThrow(/overlaps/);
    expect(() => t.register({ topic: 't', partition: 0, first: 19, last: 30 })).toThrow(/overlaps/);
    expect(() => t.register({ topic: 't', partition: 0, first: 20, last: 30 })).not.toThrow();
  });

  it('refuses to finish a range it does not hold, or one finished already', () => {
    const t = new OffsetTracker<number>();
    const r = t.register({ topic: 't', partition: 0, first: 0, last: 9 });
    expect(() => t.done({ ...r }, 1)).toThrow(/never registered/);
    t.done(r, 1);
    expect(() => t.done(r, 1)).toThrow(/never registered or is already done/);
  });
});
