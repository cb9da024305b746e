import { describe, expect, it } from 'vitest';
import { fingerprint, RuleEvaluator, type Transition } from '../../../../workers/alerts/evaluator.js';
import type { ClosedBucket } from '../../../../workers/rollup.js';
import { AlertLifecycle } from '../../../../pipeline/alerts/lifecycle.js';
import { parseRules } from '../../../../workers/alerts/rules.js';

const W = 60_000;
const RULES = `
rules:
  - id: cpu
    expr: "cpu > 90 for 5m"
    keepFiringFor: 0s
  - id: auth
    kind: rate
    metric: auth
    aggregate: sum
    op: ">"
    value: 10
    window: 5m
  - id: gone
    kind: absent
    metric: "hb*"
    for: 3m
`;

function bucket(seriesId: bigint, metric: string, i: number, value: number, count = 1): ClosedBucket {
  return {
    seriesId,
    series: { metric, tags: ['host', 'a'], type: 0 },
    widthMs: W,
    startMs: i * W,
    count,
    sum: value * count,
    min: value,
    max: value,
    last: value,
    lastTsMs: i * W,
    sumsq: value * value * count,
    baseOffset: i,
    baseMaxBeforeMs: 0,
    closed: true,
    evicted: false,
    topic: 't',
    partition: 0,
  } as ClosedBucket;
}

function evaluator(active: { fingerprint: string; startsAtMs: number }[] | null = null): RuleEvaluator {
  const e = new RuleEvaluator();
  e.configure({ hash: 'h1', text: RULES, file: 'rules.yaml', active });
  return e;
}

describe('rule evaluation on closed buckets', () => {
  it('threshold: fires at the end of the bucket completing the duration, once, and resolves at the first bucket below', () => {
    const e = evaluator();
    const out: Transition[] = [];
    for (let i = 0; i < 20; i++) {
      e.onBucket(bucket(1n, 'cpu', i, i >= 3 && i < 12 ? 95 : 50), null);
      out.push(...e.take());
    }
    expect(out.map((t) => [t.status, t.atMs / W])).toEqual([
      ['firing', 8],
      ['resolved', 13],
    ]);
    expect(out[0]?.startsAtMs).toBe(8 * W);
    expect(out[0]?.explanation).toMatchObject({ threshold: 90, value: 95, heldMs: 5 * W });
  });

  it('rate: the window sum over the last five buckets, missing buckets counting as nothing', () => {
    const e = evaluator();
    const out: Transition[] = [];
    // 3 per bucket: 5 buckets hold 15 > 10 once the window is full of them (from bucket 3 on: 4 × 3 = 12).
    for (const i of [0, 1, 2, 3, 4, 10, 11]) {
      e.onBucket(bucket(2n, 'auth', i, 3), null);
      out.push(...e.take());
    }
    expect(out.map((t) => [t.status, t.atMs / W, t.value])).toEqual([
      ['firing', 4, 12],
      ['resolved', 11, 3],
    ]);
  });

  it('absent: fires when the watermark passes the last data by the duration, resolves when data returns', () => {
    const e = evaluator();
    e.onBucket(bucket(3n, 'hb.api', 0, 1), null);
    e.checkAbsent('t', 0, 3 * W, 10_000);
    expect(e.take()).toEqual([]);
    e.checkAbsent('t', 0, 4 * W, 20_000);
    const fired = e.take();
    expect(fired.map((t) => [t.status, t.startsAtMs / W])).toEqual([['firing', 4]]);
    e.onBucket(bucket(3n, 'hb.api', 9, 1), null);
    expect(e.take().map((t) => t.status)).toEqual(['resolved']);
  });

  it('a fingerprint restored as firing resolves on the first good bucket after a restart, without firing again', () => {
    const fp = fingerprint('cpu', 1n);
    // The episode started at the end of bucket 2; the replay begins before it, at bucket 0.
    const e = evaluator([{ fingerprint: fp, startsAtMs: 3 * W }]);
    e.onBucket(bucket(1n, 'cpu', 0, 50), null);
    e.onBucket(bucket(1n, 'cpu', 1, 95), null);
    e.onBucket(bucket(1n, 'cpu', 2, 95), null);
    expect(e.take()).toEqual([]);
    e.onBucket(bucket(1n, 'cpu', 3, 50), null);
    expect(e.take().map((t) => [t.fingerprint, t.status, t.startsAtMs, t.atMs])).toEqual([[fp, 'resolved', 3 * W, 4 * W]]);
  });

  it('absent: a gap inside one burst of replayed buckets fires and resolves from bucket times alone', () => {
    const e = evaluator();
    e.onBucket(bucket(3n, 'hb.api', 0, 1), null);
    e.onBucket(bucket(3n, 'hb.api', 6, 1), null);
    expect(e.take().map((t) => [t.status, t.startsAtMs / W, t.atMs / W])).toEqual([
      ['firing', 4, 4],
      ['resolved', 4, 7],
    ]);
  });

  it('a rule added by a reload is evaluated on series other rules already watch', () => {
    const e = evaluator();
    e.onBucket(bucket(1n, 'cpu', 0, 50), null);
    e.configure({ hash: 'h2', text: RULES + '  - id: cpu-now\n    expr: "cpu > 40 for 0s"\n', file: 'rules.yaml', active: null });
    e.onBucket(bucket(1n, 'cpu', 1, 50), null);
    expect(e.take().map((t) => [t.ruleId, t.status])).toEqual([['cpu-now', 'firing']]);
  });

  it('fingerprints are stable 16-hex values distinct per rule and series', () => {
    expect(fingerprint('cpu', 1n)).toMatch(/^[0-9a-f]{16}$/);
    expect(fingerprint('cpu', 1n)).toBe(fingerprint('cpu', 1n));
    expect(fingerprint('cpu', 2n)).not.toBe(fingerprint('cpu', 1n));
    expect(fingerprint('cpu2', 1n)).not.toBe(fingerprint('cpu', 1n));
  });
});

describe('alert lifecycle', () => {
  const sinks = { producer: null as never, topic: 't', clickhouse: null as never, database: 'd', others: [] };
  const t = (fp: string, status: Transition['status'], at: number): Transition => ({
    fingerprint: fp, ruleId: 'auth', status, metric: 'auth', tags: ['host', 'a'], value: 12, score: null, startsAtMs: at, atMs: at, explanation: {},
  });

  it('one firing event per episode, resolves only what fired, rate limit suppresses a firing and its resolve', () => {
    let now = 0;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(parseRules(RULES.replace('window: 5m', 'window: 5m\n    rateLimit: { max: 1, per: 1h }'), 'r.yaml'));
    const events = l.handle([t('a', 'firing', 1), t('a', 'firing', 2), t('b', 'firing', 3), t('b', 'resolved', 4), t('a', 'resolved', 5), t('c', 'resolved', 6)]);
    expect(events.map((e) => [e.fingerprint, e.status])).toEqual([
      ['a', 'firing'],
      ['a', 'resolved'],
    ]);
    expect(events[0]?.id).toBe('a-firing-1');
    expect(events[1]).toMatchObject({ id: 'a-resolved-1', endsAt: new Date(5).toISOString(), rule: { id: 'auth', kind: 'rate' } });
    expect(l.counts.suppressed).toBe(1);
    now = 2 * 3_600_000;
    expect(l.handle([t('b', 'firing', 7)]).map((e) => e.fingerprint)).toEqual(['b']);
  });

  it('repeats a firing alert after its repeat interval and resolves alerts of a removed rule', () => {
    let now = 0;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(parseRules(RULES.replace('window: 5m', 'window: 5m\n    repeatInterval: 10m'), 'r.yaml'));
    l.handle([t('a', 'firing', 1)]);
    now = 9 * 60_000;
    expect(l.repeats()).toEqual([]);
    now = 11 * 60_000;
    expect(l.repeats().map((e) => [e.id, e.status])).toEqual([['a-firing-1', 'firing']]);
    const gone = l.setRules(parseRules(RULES.replace(/ {2}- id: auth[\s\S]*?window: 5m\n/, ''), 'r.yaml'));
    expect(gone.map((e) => [e.fingerprint, e.status, e.explanation])).toEqual([['a', 'resolved', { reason: 'rule removed' }]]);
  });
});
