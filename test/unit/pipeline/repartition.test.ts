import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { commitMetadata, parseCommitMetadata } from '../../../pipeline/commit.js';
import { ALL_POINTS, forwardHeaders, forwards, progressHeaders, SourceLog } from '../../../pipeline/repartition.js';

const record = (source: string, offset: number, index: number, maxMs: number): KafkaMessage =>
  ({ key: null, value: Buffer.alloc(0), headers: forwardHeaders(source, offset, index, maxMs), offset: '0', timestamp: '0', attributes: 0 }) as unknown as KafkaMessage;
const idle = (source: string, maxMs: number): KafkaMessage => ({ key: null, value: Buffer.alloc(0), headers: progressHeaders(source, maxMs, true), offset: '0', timestamp: '0', attributes: 0 }) as unknown as KafkaMessage;

describe('forwarding decision (kafka.repartition)', () => {
  const m = (key: string | null) => ({ key: key === null ? null : Buffer.from(key) }) as KafkaMessage;
  it('auto forwards messages without a key (or an empty one), always forwards all, never none', () => {
    expect([m(null), m(''), m('host-1')].map((x) => forwards('auto', x))).toEqual([true, true, false]);
    expect([m(null), m('host-1')].map((x) => forwards('always', x))).toEqual([true, true]);
    expect([m(null), m('host-1')].map((x) => forwards('never', x))).toEqual([false, false]);
  });
});

describe('SourceLog: one repartition partition\'s sources', () => {
  it('skips what a replayed first stage sends again: points at or below the source\'s last mark', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0']);
    expect(log.admit(0, record('m/0', 10, 3, 1000))).toMatchObject({ skipOffset: -1, skipIndex: ALL_POINTS });
    expect(log.admit(1, record('m/0', 20, ALL_POINTS, 2000))).toMatchObject({ skipOffset: 10, skipIndex: 3 });
    // The first stage crashed before committing and sends from offset 15 again, cut differently.
    expect(log.admit(2, record('m/0', 17, 0, 1500))).toMatchObject({ skipOffset: 20, skipIndex: ALL_POINTS });
    expect(log.admit(3, record('m/0', 25, ALL_POINTS, 2500))).toMatchObject({ skipOffset: 20, skipIndex: ALL_POINTS });
    expect(log.marksBefore(4)).toEqual({ 'm/0': [25, ALL_POINTS, 2500, false] });
  });

  it('the watermark is the least of the sources\' maxima, unknown until every expected source reported, and never moves back', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1']);
    expect(log.admit(0, record('m/0', 1, ALL_POINTS, 5000)).watermarkBefore).toBe(-Infinity);
    expect(log.watermarkNow).toBe(-Infinity);
    log.admit(1, record('m/1', 1, ALL_POINTS, 3000));
    expect(log.watermarkNow).toBe(3000);
    expect(log.admit(2, record('m/1', 2, ALL_POINTS, 7000)).watermarkBefore).toBe(3000);
    expect(log.watermarkNow).toBe(5000);
    // A source that appears late, far behind, does not pull the watermark back.
    log.admit(3, record('other/0', 1, ALL_POINTS, 100));
    expect(log.watermarkNow).toBe(5000);
  });

  it('a source holds the watermark back until it says it is idle, however long it is silent; its next record makes it count again', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1', 'm/2']);
    log.admit(0, record('m/0', 1, ALL_POINTS, 5000));
    log.admit(1, record('m/1', 1, ALL_POINTS, 3000));
    // m/2 has not reported; m/1 may be silent for any wall time (its instance killed, rebalancing).
    log.admit(2, record('m/0', 2, ALL_POINTS, 9000));
    expect(log.watermarkNow).toBe(-Infinity);
    // m/2's owner has nothing to forward: it no longer counts. m/1 still does.
    const skip = log.admit(3, idle('m/2', -Infinity));
    expect(skip).toMatchObject({ skipOffset: -1, skipIndex: ALL_POINTS });
    expect(log.watermarkNow).toBe(3000);
    log.admit(4, idle('m/1', 3000));
    expect(log.watermarkNow).toBe(9000);
    // An idle record moves no mark: m/1's next points are judged against its last forwarded one.
    expect(log.marksBefore(5)).toEqual({ 'm/0': [2, ALL_POINTS, 9000, false], 'm/1': [1, ALL_POINTS, 3000, true], 'm/2': [-1, ALL_POINTS, -Infinity, true] });
    expect(log.admit(5, record('m/1', 4, ALL_POINTS, 9500))).toMatchObject({ skipOffset: 1, skipIndex: ALL_POINTS, watermarkBefore: 9000 });
    log.admit(6, record('m/0', 3, ALL_POINTS, 12_000));
    // m/1 resuming woke m/2, which holds until it repeats that it is idle.
    expect(log.watermarkNow).toBe(9000);
    log.admit(7, idle('m/2', -Infinity));
    log.admit(8, record('m/0', 4, ALL_POINTS, 12_500));
    expect(log.watermarkNow).toBe(9500);
    // Every source idle: the least of all their maxima (m/2's unknown one keeps it where it is).
    log.admit(9, idle('m/0', 12_500));
    log.admit(10, idle('m/1', 9500));
    expect(log.watermarkNow).toBe(9500);
  });

  it('a source resuming wakes the idle ones: they hold the watermark again until they repeat that they are idle (a backfill starting on idle partitions)', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1', 'm/2']);
    for (const [i, source] of ['m/0', 'm/1', 'm/2'].entries()) log.admit(i, idle(source, -Infinity));
    expect(log.allIdle).toBe(true);
    // m/0's first points: m/1 and m/2 (resuming a moment later) hold the watermark until they report.
    log.admit(3, record('m/0', 100, ALL_POINTS, 60_000));
    expect(log.allIdle).toBe(false);
    expect(log.watermarkNow).toBe(-Infinity);
    log.admit(4, record('m/1', 100, ALL_POINTS, 30_000));
    expect(log.admit(5, record('m/2', 100, ALL_POINTS, 45_000)).watermarkBefore).toBe(-Infinity);
    expect(log.watermarkNow).toBe(30_000);
    // m/2 has nothing more and says so again: it stops holding; m/1 still holds.
    log.admit(6, idle('m/2', 45_000));
    log.admit(7, record('m/0', 101, ALL_POINTS, 90_000));
    expect(log.watermarkNow).toBe(30_000);
    log.admit(8, record('m/1', 101, ALL_POINTS, 80_000));
    expect(log.watermarkNow).toBe(80_000);
    // A replay from offset 4 sees the same marks, so the same watermarks.
    const replay = new SourceLog(log.marksBefore(4) ?? undefined, -Infinity, ['m/0', 'm/1', 'm/2']);
    expect(replay.admit(4, record('m/1', 100, ALL_POINTS, 30_000)).watermarkBefore).toBe(-Infinity);
    replay.admit(5, record('m/2', 100, ALL_POINTS, 45_000));
    expect(replay.watermarkNow).toBe(30_000);
  });

  it('a source whose messages forward nothing (keyed, under auto) moves the watermark by its progress records, without points and without marks', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1']);
    const progress = (source: string, maxMs: number) => ({ key: null, value: Buffer.alloc(0), headers: progressHeaders(source, maxMs, false), offset: '0', timestamp: '0', attributes: 0 }) as unknown as KafkaMessage;
    log.admit(0, record('m/0', 7, ALL_POINTS, 5000));
    log.admit(1, progress('m/1', 4000));
    expect(log.watermarkNow).toBe(4000);
    log.admit(2, progress('m/1', 6000));
    expect(log.watermarkNow).toBe(5000);
    // An idle source sending progress counts again.
    log.admit(3, idle('m/1', 6000));
    log.admit(4, record('m/0', 8, ALL_POINTS, 9000));
    expect(log.watermarkNow).toBe(9000);
    log.admit(5, progress('m/1', 6500));
    log.admit(6, record('m/0', 9, ALL_POINTS, 9900));
    expect(log.watermarkNow).toBe(9000);
    expect(log.marksBefore(7)).toEqual({ 'm/0': [9, ALL_POINTS, 9900, false], 'm/1': [-1, ALL_POINTS, 6500, false] });
    expect(log.allIdle).toBe(false);
    log.admit(7, idle('m/0', 9900));
    log.admit(8, idle('m/1', 6500));
    expect(log.allIdle).toBe(true);
  });

  it('the idle state is part of the marks a commit saves: a replay from there holds the watermark exactly as the first run did', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1']);
    log.admit(0, record('m/0', 1, ALL_POINTS, 5000));
    log.admit(1, idle('m/1', -Infinity));
    log.admit(2, record('m/0', 2, ALL_POINTS, 8000));
    expect(log.watermarkNow).toBe(8000);
    const meta = parseCommitMetadata(commitMetadata({ maxEventTimeMs: log.watermarkNow, storedUpTo: 3, sources: log.marksBefore(3) ?? {} }));
    const again = new SourceLog(meta.sources, meta.maxEventTimeMs, ['m/0', 'm/1']);
    again.admit(3, record('m/0', 3, ALL_POINTS, 9000));
    log.admit(3, record('m/0', 3, ALL_POINTS, 9000));
    expect(again.watermarkNow).toBe(9000);
    expect(again.watermarkNow).toBe(log.watermarkNow);
  });

  it('marks as of any offset, for the commit there, from marks restored from the last commit', () => {
    const log = new SourceLog({ 'm/0': [5, ALL_POINTS, 900, false] }, 900, ['m/0']);
    log.admit(10, record('m/0', 8, ALL_POINTS, 1000));
    log.admit(11, record('m/1', 3, 2, 1100));
    log.admit(12, record('m/0', 9, ALL_POINTS, 1200));
    expect(log.marksBefore(10)).toEqual({ 'm/0': [5, ALL_POINTS, 900, false] });
    expect(log.marksBefore(12)).toEqual({ 'm/0': [8, ALL_POINTS, 1000, false], 'm/1': [3, 2, 1100, false] });
    log.committed(12);
    expect(log.marksBefore(12)).toEqual({ 'm/0': [8, ALL_POINTS, 1000, false], 'm/1': [3, 2, 1100, false] });
    expect(log.marksBefore(13)).toEqual({ 'm/0': [9, ALL_POINTS, 1200, false], 'm/1': [3, 2, 1100, false] });
    // Below the last commit the marks are folded away: not known (the committer stays put).
    expect(log.marksBefore(11)).toBeNull();
    // A restored mark is what the next record's duplicates are judged by.
    const again = new SourceLog(log.marksBefore(13) ?? undefined, 1200, ['m/0']);
    expect(again.admit(13, record('m/0', 9, ALL_POINTS, 1200))).toMatchObject({ skipOffset: 9, skipIndex: ALL_POINTS });
  });

  it('the marks survive the commit metadata: a record cut inside a message, an unknown event time, an idle source, no watermark base', () => {
    const meta = { maxEventTimeMs: 1200, storedUpTo: 13, sources: { 'm/0': [9, ALL_POINTS, 1200, false], 'm/1': [-1, ALL_POINTS, -Infinity, true], 'm/2': [4, ALL_POINTS, 1000, true], 'a/b/7': [5, 3, 1100, false] } as Record<string, [number, number, number, boolean]> };
    expect(parseCommitMetadata(commitMetadata(meta))).toEqual(meta);
    const noBase = { ...meta, maxEventTimeMs: -Infinity };
    expect(parseCommitMetadata(commitMetadata(noBase))).toEqual(noBase);
    expect(parseCommitMetadata(commitMetadata({ maxEventTimeMs: 1, storedUpTo: 2 }))).toEqual({ maxEventTimeMs: 1, storedUpTo: 2 });
  });

  it('the marks of 180 source partitions fit Kafka\'s default offset.metadata.max.bytes (4,096)', () => {
    const now = 1_795_750_000_000;
    const sources: Record<string, [number, number, number, boolean]> = {};
    for (let p = 0; p < 180; p++) sources[`metrics.prod/${p}`] = [123_456_789 + p, ALL_POINTS, now - (p % 7) * 1_000, false];
    const text = commitMetadata({ maxEventTimeMs: now - 6_000, storedUpTo: 987_654_321, sources });
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    expect(parseCommitMetadata(text).sources).toEqual(sources);
  });
});
