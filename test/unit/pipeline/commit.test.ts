import { describe, expect, it } from 'vitest';
import { Committer, commitMetadata, offsetsToCommit, parseCommitMetadata, type DoneMeta, type OffsetCommit } from '../../../pipeline/commit.js';
import { rootLogger } from '../../../core/log.js';
import type { Position } from '../../../pipeline/offsets.js';

const log = rootLogger('silent');

describe('commit metadata', () => {
  it('round-trips the watermark base and stored-up-to', () => {
    const text = commitMetadata({ maxEventTimeMs: 1_700_000_000_123, storedUpTo: 42 });
    expect(JSON.parse(text)).toEqual({ v: 1, maxEventTimeMs: 1_700_000_000_123, storedUpTo: 42 });
    expect(parseCommitMetadata(text)).toEqual({ maxEventTimeMs: 1_700_000_000_123, storedUpTo: 42 });
  });

  it('writes an unknown watermark (no event yet) as null and reads it back as -Infinity', () => {
    const text = commitMetadata({ maxEventTimeMs: -Infinity, storedUpTo: 0 });
    expect(JSON.parse(text)).toEqual({ v: 1, maxEventTimeMs: null, storedUpTo: 0 });
    expect(parseCommitMetadata(text)).toEqual({ maxEventTimeMs: -Infinity, storedUpTo: 0 });
  });

  it('reads missing, foreign and broken metadata as "nothing known"', () => {
    const none = { maxEventTimeMs: -Infinity, storedUpTo: -1 };
    expect(parseCommitMetadata(null)).toEqual(none);
    expect(parseCommitMetadata(undefined)).toEqual(none);
    expect(parseCommitMetadata('')).toEqual(none);
    expect(parseCommitMetadata('{not json')).toEqual(none);
    expect(parseCommitMetadata('{"maxEventTimeMs":"soon","storedUpTo":"7"}')).toEqual(none);
    expect(parseCommitMetadata('{"storedUpTo":7}')).toEqual({ maxEventTimeMs: -Infinity, storedUpTo: 7 });
  });
});

const pos = (partition: number, offset: number, meta: DoneMeta): Position<DoneMeta> => ({ topic: 't', partition, offset, meta });

describe('offsetsToCommit', () => {
  it('a repartition partition whose held offset moved back below its last commit stays at that commit, with its marks and watermark base', () => {
    const marks = { 'm/0': [9, 4294967295, 1200, false] as [number, number, number, boolean] };
    // Marks are known from offset 60 on (the last commit); below it they are folded away.
    const sourcesAt = (_key: string, offset: number) => (offset >= 60 ? marks : null);
    const last = new Map([['t/0', { offset: 60, storedUpTo: 60, maxEventTimeMs: 1100 }]]);
    const out = offsetsToCommit([pos(0, 100, { maxAfterMs: 5000, held: { offset: 10, maxBeforeMs: 900 } })], () => 100, last, sourcesAt);
    expect(out).toHaveLength(1);
    expect(out[0]?.offset).toBe('60');
    expect(parseCommitMetadata(out[0]?.metadata)).toEqual({ maxEventTimeMs: 1100, storedUpTo: 100, sources: marks });
    // Held at or above the last commit: committed there as usual.
    const up = offsetsToCommit([pos(0, 100, { maxAfterMs: 5000, held: { offset: 70, maxBeforeMs: 1150 } })], () => 100, last, sourcesAt);
    expect(up[0]?.offset).toBe('70');
    expect(parseCommitMetadata(up[0]?.metadata).maxEventTimeMs).toBe(1150);
  });

  it('commits the position with the watermark after its last task when no bucket is held', () => {
    const out = offsetsToCommit([pos(0, 100, { maxAfterMs: 5000, held: null })], () => -1, new Map());
    expect(out).toEqual([{ topic: 't', partition: 0, offset: '100', metadata: commitMetadata({ maxEventTimeMs: 5000, storedUpTo: 100 }) }]);
  });

  it('holds the offset back to the first offset of a held bucket, with the watermark base there, and records everything before the position as stored', () => {
    const out = offsetsToCommit([pos(2, 100, { maxAfterMs: 5000, held: { offset: 40, maxBeforeMs: 3000 } })], () => -1, new Map());
    expect(out).toEqual([{ topic: 't', partition: 2, offset: '40', metadata: commitMetadata({ maxEventTimeMs: 3000, storedUpTo: 100 }) }]);
  });

  it('ignores a held offset at or past the position', () => {
    const out = offsetsToCommit([pos(0, 100, { maxAfterMs: 5000, held: { offset: 100, maxBeforeMs: 3000 } })], () => -1, new Map());
    expect(out[0]?.offset).toBe('100');
    expect(parseCommitMetadata(out[0]?.metadata).maxEventTimeMs).toBe(5000);
  });

  it('keeps the stored-up-to an earlier run recorded when it is ahead of the position (a replay)', () => {
    const out = offsetsToCommit([pos(0, 100, { maxAfterMs: 5000, held: null })], (key) => (key === 't/0' ? 250 : -1), new Map());
    expect(parseCommitMetadata(out[0]?.metadata).storedUpTo).toBe(250);
  });

  it('commits a partition again only when its offset or stored-up-to moved', () => {
    const positions = [pos(0, 100, { maxAfterMs: 1, held: { offset: 40, maxBeforeMs: 0 } }), pos(1, 60, { maxAfterMs: 1, held: null })];
    const last = new Map([
      ['t/0', { offset: 40, storedUpTo: 90 }],
      ['t/1', { offset: 60, storedUpTo: 60 }],
    ]);
    // Partition 0: same held offset, stored-up-to moved 90 → 100; partition 1: nothing moved.
    expect(offsetsToCommit(positions, () => -1, last).map((o) => [o.partition, o.offset])).toEqual([[0, '40']]);
    last.set('t/0', { offset: 40, storedUpTo: 100 });
    expect(offsetsToCommit(positions, () => -1, last)).toEqual([]);
    // The held bucket released (held offset moves) while the position stays: the offset alone moved.
    const released = [pos(0, 100, { maxAfterMs: 1, held: { offset: 60, maxBeforeMs: 0 } })];
    expect(offsetsToCommit(released, () => -1, last).map((o) => [o.partition, o.offset])).toEqual([[0, '60']]);
  });
});

describe('Committer', () => {
  function target() {
    const sent: OffsetCommit[][] = [];
    let fail = false;
    return {
      sent,
      failNext: () => (fail = true),
      commitOffsets: async (offsets: OffsetCommit[]) => {
        if (fail) {
          fail = false;
          throw new Error('REBALANCE_IN_PROGRESS');
        }
        sent.push(offsets);
      },
    };
  }

  it('commits finished ranges once, and nothing of a generation that ended', async () => {
    const t = target();
    const c = new Committer(t, log);
    const epoch = c.reset();
    const a = c.register({ topic: 't', partition: 0, first: 0, last: 9 });
    const b = c.register({ topic: 't', partition: 0, first: 10, last: 19 });
    c.done(epoch, a, { maxAfterMs: 10, held: null });
    await c.commit(() => -1);
    await c.commit(() => -1);
    expect(t.sent.map((s) => s.map((o) => o.offset))).toEqual([['10']]);
    expect(c.commits).toBe(1);
    // What was committed is remembered as such: the next range moves the offset on.
    c.done(epoch, b, { maxAfterMs: 20, held: null });
    await c.commit(() => -1);
    expect(t.sent.map((s) => s.map((o) => o.offset))).toEqual([['10'], ['20']]);
    t.sent.splice(1);
    const c2 = c.register({ topic: 't', partition: 0, first: 20, last: 29 });

    // A rebalance: the range c2 belonged to the old generation; finishing it moves nothing, and a
    // range of the new generation may start where the old one did (kafkajs re-delivers it).
    const next = c.reset();
    expect(next).toBe(epoch + 1);
    expect(c.epoch).toBe(next);
    expect(c.reset(7)).toBe(7);
    expect(c.epoch).toBe(7);
    c.done(epoch, c2, { maxAfterMs: 30, held: null });
    await c.commit(() => -1);
    expect(t.sent).toHaveLength(1);
    const again = c.register({ topic: 't', partition: 0, first: 10, last: 19 });
    c.done(7, again, { maxAfterMs: 20, held: null });
    void c.commit(() => -1);
    await c.settled();
    expect(t.sent.map((s) => s.map((o) => o.offset))).toEqual([['10'], ['20']]);
  });

  it('release: a drained partition whose shards hold less commits past what its last task held; not while a range is open, nor for an old generation', async () => {
    const t = target();
    const c = new Committer(t, log);
    const epoch = c.reset();
    const a = c.register({ topic: 't', partition: 0, first: 0, last: 99 });
    c.done(epoch, a, { maxAfterMs: 9000, held: { offset: 20, maxBeforeMs: 1000 } });
    await c.commit(() => -1);
    expect(t.sent.flat().map((o) => o.offset)).toEqual(['20']);
    const open = c.register({ topic: 't', partition: 0, first: 100, last: 109 });
    expect(c.release(epoch, 't', 0, { offset: 90, maxBeforeMs: 8000 })).toBe(false);
    c.done(epoch, open, { maxAfterMs: 9500, held: { offset: 20, maxBeforeMs: 1000 } });
    expect(c.release(epoch - 1, 't', 0, null)).toBe(false);
    expect(c.release(epoch, 't', 1, null)).toBe(false);
    expect(c.release(epoch, 't', 0, { offset: 90, maxBeforeMs: 8000 })).toBe(true);
    await c.commit(() => -1);
    expect(t.sent.flat().map((o) => [o.offset, JSON.parse(o.metadata).maxEventTimeMs])).toEqual([['20', 1000], ['90', 8000]]);
  });

  it('does not remember a commit answered after its generation ended: the new generation commits the same offset again', async () => {
    let release: () => void = () => undefined;
    const sent: string[] = [];
    const c = new Committer(
      {
        commitOffsets: async (offsets: OffsetCommit[]) => {
          await new Promise<void>((r) => (release = r));
          sent.push(...offsets.map((o) => o.offset));
        },
      },
      log,
    );
    const first = c.reset();
    c.done(first, c.register({ topic: 't', partition: 0, first: 0, last: 9 }), { maxAfterMs: 0, held: null });
    const inFlight = c.commit(() => -1);
    await new Promise((r) => setTimeout(r, 5));
    const second = c.reset();
    release();
    await inFlight;
    // kafkajs re-delivers 0-9 in the new generation; committing offset 10 again is right.
    c.done(second, c.register({ topic: 't', partition: 0, first: 0, last: 9 }), { maxAfterMs: 0, held: null });
    const again = c.commit(() => -1);
    await new Promise((r) => setTimeout(r, 5));
    release();
    await again;
    expect(sent).toEqual(['10', '10']);
  });

  it('drops a commit whose generation ended while it waited in the chain', async () => {
    const t = target();
    const c = new Committer(t, log);
    const epoch = c.reset();
    c.done(epoch, c.register({ topic: 't', partition: 0, first: 0, last: 0 }), { maxAfterMs: 0, held: null });
    const pending = c.commit(() => -1);
    c.reset();
    await pending;
    expect(t.sent).toEqual([]);
  });

  it('retries a failed commit with the next one, and counts only commits that went through as progress', async () => {
    const t = target();
    const c = new Committer(t, log);
    const epoch = c.reset();
    const before = c.lastProgressAt;
    c.done(epoch, c.register({ topic: 't', partition: 0, first: 0, last: 4 }), { maxAfterMs: 0, held: null });
    t.failNext();
    await c.commit(() => -1);
    expect(t.sent).toEqual([]);
    expect(c.commits).toBe(0);
    await new Promise((r) => setTimeout(r, 5));
    await c.commit(() => -1);
    expect(t.sent.map((s) => s.map((o) => o.offset))).toEqual([['5']]);
    expect(c.lastProgressAt).toBeGreaterThan(before);
  });

  it('settled() waits for every commit asked for so far', async () => {
    const sent: string[] = [];
    const c = new Committer({ commitOffsets: async (o: OffsetCommit[]) => void (await new Promise((r) => setTimeout(r, 20)), sent.push(...o.map((x) => x.offset))) }, log);
    const g = c.reset();
    c.done(g, c.register({ topic: 't', partition: 0, first: 0, last: 2 }), { maxAfterMs: 0, held: null });
    void c.commit(() => -1);
    await c.settled();
    expect(sent).toEqual(['3']);
  });
});

