import type { KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { commitMetadata, parseCommitMetadata } from '../../../pipeline/commit.js';
import { ALL_POINTS, forwardHeaders, forwards, SourceLog } from '../../../pipeline/repartition.js';

const record = (source: string, offset: number, index: number, maxMs: number): KafkaMessage =>
  ({ key: null, value: Buffer.alloc(0), headers: forwardHeaders(source, offset, index, maxMs), offset: '0', timestamp: '0', attributes: 0 }) as unknown as KafkaMessage;

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
    const log = new SourceLog(undefined, -Infinity, ['m/0'], 60_000);
    expect(log.admit(0, record('m/0', 10, 3, 1000))).toMatchObject({ skipOffset: -1, skipIndex: ALL_POINTS });
    expect(log.admit(1, record('m/0', 20, ALL_POINTS, 2000))).toMatchObject({ skipOffset: 10, skipIndex: 3 });
    // The first stage crashed before committing and sends from offset 15 again, cut differently.
    expect(log.admit(2, record('m/0', 17, 0, 1500))).toMatchObject({ skipOffset: 20, skipIndex: ALL_POINTS });
    expect(log.admit(3, record('m/0', 25, ALL_POINTS, 2500))).toMatchObject({ skipOffset: 20, skipIndex: ALL_POINTS });
    expect(log.marksBefore(4)).toEqual({ 'm/0': [25, ALL_POINTS, 2500] });
  });

  it('the watermark is the least of the sources\' maxima, unknown until every expected source reported, and never moves back', () => {
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1'], 60_000);
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

  it('a source silent for idleMs of wall time stops holding the watermark back; an expected one that never reports too', () => {
    let now = 0;
    const log = new SourceLog(undefined, -Infinity, ['m/0', 'm/1', 'm/2'], 1000, () => now);
    log.admit(0, record('m/0', 1, ALL_POINTS, 5000));
    log.admit(1, record('m/1', 1, ALL_POINTS, 3000));
    expect(log.watermarkNow).toBe(-Infinity); // m/2 has not reported
    now = 1500;
    log.admit(2, record('m/0', 2, ALL_POINTS, 9000));
    // m/1 (seen at 0) and m/2 (expected since 0) are silent past 1000 ms: only m/0 counts.
    expect(log.watermarkNow).toBe(9000);
  });

  it('marks as of any offset, for the commit there, from marks restored from the last commit', () => {
    const log = new SourceLog({ 'm/0': [5, ALL_POINTS, 900] }, 900, ['m/0'], 60_000);
    log.admit(10, record('m/0', 8, ALL_POINTS, 1000));
    log.admit(11, record('m/1', 3, 2, 1100));
    log.admit(12, record('m/0', 9, ALL_POINTS, 1200));
    expect(log.marksBefore(10)).toEqual({ 'm/0': [5, ALL_POINTS, 900] });
    expect(log.marksBefore(12)).toEqual({ 'm/0': [8, ALL_POINTS, 1000], 'm/1': [3, 2, 1100] });
    log.committed(12);
    expect(log.marksBefore(12)).toEqual({ 'm/0': [8, ALL_POINTS, 1000], 'm/1': [3, 2, 1100] });
    expect(log.marksBefore(13)).toEqual({ 'm/0': [9, ALL_POINTS, 1200], 'm/1': [3, 2, 1100] });
    // Below the last commit the marks are folded away: not known (the committer stays put).
    expect(log.marksBefore(11)).toBeNull();
    // A restored mark is what the next record's duplicates are judged by.
    const again = new SourceLog(log.marksBefore(13) ?? undefined, 1200, ['m/0'], 60_000);
    expect(again.admit(13, record('m/0', 9, ALL_POINTS, 1200))).toMatchObject({ skipOffset: 9, skipIndex: ALL_POINTS });
  });

  it('the marks survive the commit metadata: a record cut inside a message, an unknown event time, no watermark base', () => {
    const meta = { maxEventTimeMs: 1200, storedUpTo: 13, sources: { 'm/0': [9, ALL_POINTS, 1200], 'm/1': [-1, ALL_POINTS, -Infinity], 'a/b/7': [5, 3, 1100] } as Record<string, [number, number, number]> };
    expect(parseCommitMetadata(commitMetadata(meta))).toEqual(meta);
    const noBase = { ...meta, maxEventTimeMs: -Infinity };
    expect(parseCommitMetadata(commitMetadata(noBase))).toEqual(noBase);
    expect(parseCommitMetadata(commitMetadata({ maxEventTimeMs: 1, storedUpTo: 2 }))).toEqual({ maxEventTimeMs: 1, storedUpTo: 2 });
  });

  it('the marks of 180 source partitions fit Kafka\'s default offset.metadata.max.bytes (4,096)', () => {
    const now = 1_795_750_000_000;
    const sources: Record<string, [number, number, number]> = {};
    for (let p = 0; p < 180; p++) sources[`metrics.prod/${p}`] = [123_456_789 + p, ALL_POINTS, now - (p % 7) * 1_000];
    const text = commitMetadata({ maxEventTimeMs: now - 6_000, storedUpTo: 987_654_321, sources });
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    expect(parseCommitMetadata(text).sources).toEqual(sources);
  });
});
