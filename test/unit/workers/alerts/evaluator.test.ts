import { describe, expect, it } from 'vitest';
import { fingerprint, RuleEvaluator, type Transition } from '../../../../workers/alerts/evaluator.js';
import type { ClosedBucket } from '../../../../workers/rollup.js';
import type { EnsembleScore } from '../../../../models/ensemble.js';
import { AlertLifecycle } from '../../../../pipeline/alerts/lifecycle.js';
import { parseRuleBundle, parseRules, parseRulesText } from '../../../../workers/alerts/rules.js';

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
    series: { metric, tags: ['host', 'a'], tenant: '', type: 0 },
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
    fingerprint: fp, ruleId: 'auth', status, metric: 'auth', tags: ['host', 'a'], tenant: '', value: 12, score: null, startsAtMs: at, atMs: at, explanation: {},
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

interface BucketValues {
  count?: number;
  sum?: number;
  min?: number;
  max?: number;
  last?: number;
}

/** A closed one-minute bucket `i` of series `id`; one point of `value` unless the fields say otherwise. */
function closedBucket(id: bigint, metric: string, i: number, value: number | BucketValues, where: { partition?: number; topic?: string; tags?: string[]; tenant?: string } = {}): ClosedBucket {
  const f: BucketValues = typeof value === 'number' ? { count: 1, sum: value, min: value, max: value, last: value } : value;
  const count = f.count ?? 1;
  const sum = f.sum ?? 0;
  return {
    seriesId: id,
    series: { metric, tags: where.tags ?? ['host', 'a'], tenant: where.tenant ?? '', type: 0 },
    widthMs: W,
    startMs: i * W,
    count,
    sum,
    min: f.min ?? sum / count,
    max: f.max ?? sum / count,
    last: f.last ?? sum / count,
    lastTsMs: i * W,
    sumsq: 0,
    baseOffset: i,
    baseMaxBeforeMs: 0,
    closed: true,
    evicted: false,
    topic: where.topic ?? 't',
    partition: where.partition ?? 0,
  } as ClosedBucket;
}

function configured(yaml: string, active: { fingerprint: string; startsAtMs: number }[] | null = null): RuleEvaluator {
  const e = new RuleEvaluator();
  e.configure({ hash: 'h1', text: `rules:\n${yaml}`, file: 'rules.yaml', active });
  return e;
}

/** Feeds buckets `from`..`to` of series 1n (metric m) with value(i), returning [ruleId, status, at bucket, value] per transition. */
function run(e: RuleEvaluator, from: number, to: number, value: (i: number) => number | BucketValues, metric = 'm', id = 1n): [string, string, number, number][] {
  const out: [string, string, number, number][] = [];
  for (let i = from; i <= to; i++) {
    e.onBucket(closedBucket(id, metric, i, value(i)), null);
    for (const t of e.take()) out.push([t.ruleId, t.status, t.atMs / W, t.value]);
  }
  return out;
}

function score(s: number): EnsembleScore {
  return {
    score: s,
    anomaly: s >= 0.5,
    ready: true,
    expected: 10,
    lower: 8,
    upper: 12,
    scores: { robust: s, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 },
    explanation: { drivers: ['robust'], detectors: { robust: { z: 4 } } },
  };
}

describe('fingerprint', () => {
  it('is FNV-1a 64 over the rule id, then the series id bytes, as 16 hex digits', () => {
    expect(fingerprint('cpu', 1n)).toBe('5db887ee9dcf7dc8');
    expect(fingerprint('cpu', 12n)).toBe('00c832d37d019f65');
    expect(fingerprint('cpu', 2n ** 63n + 5n)).toBe('d9a32412c98bcccc');
    expect(fingerprint('é', 1n)).toBe('2f5cf94f2095fa45');
  });
});

describe('configure', () => {
  const RULES = '  - { id: a, expr: "m > 5" }\n  - { id: b, kind: absent, metric: m, for: 2m }\n';

  it('counts the rules; no rules evaluate nothing', () => {
    const e = new RuleEvaluator();
    expect(e.ruleCount).toBe(0);
    e.onBucket(closedBucket(1n, 'm', 0, 10), null);
    expect(e.take()).toEqual([]);
    e.configure({ hash: 'h1', text: `rules:\n${RULES}`, file: 'r.yaml', active: null });
    expect(e.ruleCount).toBe(2);
  });

  it('the same hash, or no text, keeps the rules in force', () => {
    const e = configured(RULES);
    e.configure({ hash: 'h1', text: 'rules: []', file: 'r.yaml', active: null });
    expect(e.ruleCount).toBe(2);
    e.configure({ hash: 'h2', text: null, file: 'r.yaml', active: null });
    expect(e.ruleCount).toBe(2);
    e.configure({ hash: 'h2', text: 'rules: []', file: 'r.yaml', active: null });
    expect(e.ruleCount).toBe(0);
  });

  it('a kept rule keeps its state and takes its new definition; a removed rule stops', () => {
    const e = configured('  - { id: a, expr: "m > 5 for 3m" }\n  - { id: z, expr: "m > 5 for 3m" }\n');
    expect(run(e, 0, 1, () => 10)).toEqual([]);
    e.configure({ hash: 'h2', text: 'rules:\n  - { id: a, expr: "m > 7 for 3m" }\n', file: 'r.yaml', active: null });
    expect(run(e, 2, 2, () => 6)).toEqual([]);
    expect(run(e, 3, 5, () => 10)).toEqual([['a', 'firing', 6, 10]]);
    const kept = configured('  - { id: a, expr: "m > 5 for 3m" }\n');
    run(kept, 0, 1, () => 10);
    kept.configure({ hash: 'h2', text: 'rules:\n  - { id: a, expr: "m > 5 for 3m", severity: info }\n', file: 'r.yaml', active: null });
    expect(run(kept, 2, 2, () => 10)).toEqual([['a', 'firing', 3, 10]]);
  });

  it('states of a reloaded series can be snapshot before its next bucket', () => {
    const e = configured('  - { id: a, expr: "m > 5 for 3m" }\n');
    run(e, 0, 0, () => 10);
    e.configure({ hash: 'h2', text: 'rules:\n  - { id: a, expr: "m > 5 for 3m" }\n  - { id: c, expr: "m > 1" }\n', file: 'r.yaml', active: null });
    expect(e.snapshot(1n)?.map((s) => [s.ruleId, s.since])).toEqual([['a', 0]]);
  });

  it('an absent rule removed by a reload no longer fires on the watermark', () => {
    const e = configured(RULES);
    run(e, 0, 0, () => 1);
    e.configure({ hash: 'h2', text: 'rules:\n  - { id: a, expr: "m > 5" }\n', file: 'r.yaml', active: null });
    e.checkAbsent('t', 0, 100 * W, 10_000);
    expect(e.take()).toEqual([]);
    const kept = configured(RULES);
    run(kept, 0, 0, () => 1);
    kept.configure({ hash: 'h2', text: `rules:\n${RULES}  - { id: c, expr: "m > 1" }\n`, file: 'r.yaml', active: null });
    kept.checkAbsent('t', 0, 100 * W, 10_000);
    expect(kept.take().map((t) => [t.ruleId, t.status])).toEqual([['b', 'firing']]);
  });
});

describe('threshold rules', () => {
  it('compare the bucket field named by `of`', () => {
    const e = configured(
      ['mean == 5', 'max == 9', 'min == 1', 'last == 7', 'sum == 20', 'count == 4'].map((c, i) => `  - { id: r${i}, expr: "${c.replace(/^(\w+) /, '$1(m) ')}" }\n`).join(''),
    );
    expect(run(e, 0, 0, () => ({ count: 4, sum: 20, min: 1, max: 9, last: 7 }))).toEqual([
      ['r0', 'firing', 1, 5],
      ['r1', 'firing', 1, 9],
      ['r2', 'firing', 1, 1],
      ['r3', 'firing', 1, 7],
      ['r4', 'firing', 1, 20],
      ['r5', 'firing', 1, 4],
    ]);
  });

  it('fire once the condition has held for `for`; a bucket where it fails starts the count again', () => {
    const e = configured('  - { id: a, expr: "m > 5 for 3m" }\n');
    const high = new Set([0, 1, 3, 4, 5, 6]);
    expect(run(e, 0, 7, (i) => (high.has(i) ? 10 : 0))).toEqual([
      ['a', 'firing', 6, 10],
      ['a', 'resolved', 8, 0],
    ]);
  });

  it('a firing transition carries the series, the episode start and an explanation', () => {
    const e = configured('  - { id: a, expr: "max(m) >= 5 for 2m" }\n');
    e.onBucket(closedBucket(1n, 'm', 0, 5, { tags: ['host', 'x', 'env', 'prod'] }), null);
    e.onBucket(closedBucket(1n, 'm', 1, 6, { tags: ['host', 'x', 'env', 'prod'] }), null);
    const [t] = e.take();
    expect(t).toEqual({
      fingerprint: fingerprint('a', 1n),
      ruleId: 'a',
      status: 'firing',
      metric: 'm',
      tags: ['host', 'x', 'env', 'prod'],
      tenant: '',
      value: 6,
      score: null,
      startsAtMs: 2 * W,
      atMs: 2 * W,
      explanation: { rule: { id: 'a', kind: 'threshold' }, threshold: 5, value: 6, of: 'max', op: '>=', heldMs: 2 * W, forMs: 2 * W },
    });
    expect(e.take()).toEqual([]);
  });

  it('keepFiringFor: resolves only when the value has been resolvable for longer than it', () => {
    const e = configured('  - { id: a, expr: "m > 5", keepFiringFor: 2m }\n');
    expect(run(e, 0, 5, (i) => (i === 0 || i === 2 ? 10 : 0))).toEqual([
      ['a', 'firing', 1, 10],
      ['a', 'resolved', 6, 0],
    ]);
  });

  it('resolveValue: a firing alert stays until the value is past it', () => {
    const e = configured('  - { id: a, expr: "m > 90", resolveValue: 85 }\n');
    expect(run(e, 0, 3, (i) => [95, 88, 85, 84][i] as number)).toEqual([
      ['a', 'firing', 1, 95],
      ['a', 'resolved', 4, 84],
    ]);
  });

  it('only series matching the tags are evaluated', () => {
    const e = configured('  - { id: a, expr: "m > 5", tags: { host: b } }\n  - { id: g, expr: "m* > 5" }\n');
    e.onBucket(closedBucket(1n, 'm', 0, 10), null);
    e.onBucket(closedBucket(2n, 'm', 0, 10, { tags: ['host', 'b'] }), null);
    expect(e.take().map((t) => [t.ruleId, t.tags])).toEqual([
      ['g', ['host', 'a']],
      ['a', ['host', 'b']],
      ['g', ['host', 'b']],
    ]);
  });
});

describe('rate rules', () => {
  // Buckets 0..3: count 2, 1, 3, 1; sum 10, 1, 30, 4 (means 5, 1, 10, 4); max 6, 1, 12, 4.
  const BUCKETS: BucketValues[] = [
    { count: 2, sum: 10, max: 6 },
    { count: 1, sum: 1, max: 1 },
    { count: 3, sum: 30, max: 12 },
    { count: 1, sum: 4, max: 4 },
  ];

  it('each aggregate over the window of the last three buckets', () => {
    const conditions = ['sum(m) > 40', 'count(m) > 5', 'max(m) > 11', 'mean(m) > 6.5', 'm > 959', 'rate(m) > 5.3'];
    const e = configured(conditions.map((c, i) => `  - { id: r${i}, expr: "${c} in 3m" }\n`).join(''));
    expect(run(e, 0, 3, (i) => BUCKETS[i] as BucketValues)).toEqual([
      // After bucket 2: sum 41, count 6, max 12, mean 41/6, increase (5 + 1 + 10) × 60 = 960, rate 960 / 180.
      ['r0', 'firing', 3, 41],
      ['r1', 'firing', 3, 6],
      ['r2', 'firing', 3, 12],
      ['r3', 'firing', 3, 41 / 6],
      ['r4', 'firing', 3, 960],
      ['r5', 'firing', 3, 960 / 180],
      // After bucket 3 (buckets 1..3): sum 35, count 5, max 12, mean 7, increase 900, rate 5.
      ['r0', 'resolved', 4, 35],
      ['r1', 'resolved', 4, 5],
      ['r4', 'resolved', 4, 900],
      ['r5', 'resolved', 4, 5],
    ]);
  });

  it('a rate transition explains the aggregate, the window and how long the condition held', () => {
    const e = configured('  - { id: r, expr: "sum(m) > 5 in 2m for 1m" }\n');
    e.onBucket(closedBucket(1n, 'm', 0, 6), null);
    expect(e.take().map((t) => t.explanation)).toEqual([{ rule: { id: 'r', kind: 'rate' }, threshold: 5, value: 6, aggregate: 'sum', op: '>', windowMs: 2 * W, heldMs: W }]);
  });

  it('rate divides by the window, not by the buckets it spans', () => {
    const e = configured('  - { id: r, expr: "rate(m) >= 1 in 90s" }\n');
    // 90s spans two buckets; 1/s for 60s is 60 over the window: 60 / 90.
    expect(run(e, 0, 0, () => 1).map((t) => t[3])).toEqual([]);
    expect(run(e, 1, 1, () => 2)).toEqual([['r', 'firing', 2, 180 / 90]]);
  });

  it('a window shorter than a bucket holds that bucket', () => {
    const e = configured('  - { id: r, expr: "sum(m) > 3 in 30s" }\n');
    expect(run(e, 0, 2, (i) => [4, 2, 5][i] as number)).toEqual([
      ['r', 'firing', 1, 4],
      ['r', 'resolved', 2, 2],
      ['r', 'firing', 3, 5],
    ]);
  });

  it('missing buckets count as empty, whatever the gap', () => {
    const e = configured('  - { id: r, expr: "sum(m) >= 0 in 3m" }\n', null);
    const values = new Map([
      [0, 1],
      [1, 2],
      [2, 4],
      [4, 8],
      [6, 16],
      [13, 32],
      [14, 64],
    ]);
    const sums: number[] = [];
    for (const [i, v] of values) {
      e.onBucket(closedBucket(1n, 'm', i, v), null);
      e.take();
      sums.push(e.snapshot(1n)?.[0]?.ring?.filter((_, k) => k % 4 === 0).reduce((a, b) => a + b, 0) ?? Number.NaN);
    }
    // Windows: {0}, {0,1}, {0,1,2}, {2,4}, {4,6}, {13}, {13,14}.
    expect(sums).toEqual([1, 3, 7, 12, 24, 32, 96]);
  });

  it('max skips the empty slots of a window not yet full', () => {
    const e = configured('  - { id: r, expr: "max(m) < -2 in 3m" }\n');
    expect(run(e, 0, 0, () => -3)).toEqual([['r', 'firing', 1, -3]]);
  });

  it('a bucket older than the window is left out of it', () => {
    const e = configured('  - { id: r, expr: "sum(m) < 5 in 2m" }\n');
    expect(run(e, 5, 5, () => 10)).toEqual([]);
    expect(run(e, 3, 3, () => 1)).toEqual([]);
    expect(run(e, 7, 7, () => 1)).toEqual([['r', 'firing', 8, 1]]);
  });
});

describe('anomaly rules', () => {
  const RULE = '  - { id: an, kind: anomaly, metric: m, score: 0.8, buckets: 2 }\n';

  function feed(e: RuleEvaluator, scores: (number | null)[]): Transition[] {
    const out: Transition[] = [];
    scores.forEach((s, i) => {
      e.onBucket(closedBucket(1n, 'm', i, 10 + i), s === null ? null : score(s));
      out.push(...e.take());
    });
    return out;
  }

  it('fire after `buckets` consecutive scores at or above the level; a bucket without a score changes nothing', () => {
    const out = feed(configured(RULE), [0.9, 0.5, 0.8, null, 0.85, 0.79]);
    expect(out.map((t) => [t.status, t.atMs / W, t.value, t.score])).toEqual([
      ['firing', 5, 14, 0.85],
      ['resolved', 6, 15, 0.79],
    ]);
    expect(out[0]?.explanation).toEqual({
      rule: { id: 'an', kind: 'anomaly' },
      threshold: 0.8,
      value: 14,
      expected: 10,
      lower: 8,
      upper: 12,
      scores: { robust: 0.85, ewma: 0, seasonal: 0, iforest: 0, lstm: 0 },
      drivers: ['robust'],
      detectors: { robust: { z: 4 } },
      streak: 2,
    });
    expect(out[1]?.explanation).toMatchObject({ streak: 0 });
  });

  it('resolveValue holds a firing anomaly alert until the score drops below it', () => {
    const e = configured('  - { id: an, kind: anomaly, metric: m, score: 0.8, resolveValue: 0.5 }\n');
    expect(feed(e, [0.9, 0.6, 0.5, 0.4]).map((t) => [t.status, t.atMs / W])).toEqual([
      ['firing', 1],
      ['resolved', 4],
    ]);
  });
});

describe('absent rules', () => {
  const RULE = '  - { id: hb, kind: absent, metric: m, for: 3m }\n';

  it('fire once the watermark is `for` past the last data, once, with the watermark in the explanation', () => {
    const e = configured(RULE);
    run(e, 0, 0, () => 1);
    e.checkAbsent('t', 0, 4 * W - 1, 10_000);
    expect(e.take()).toEqual([]);
    e.checkAbsent('t', 0, 4 * W, 11_000);
    expect(e.take()).toEqual([
      {
        fingerprint: fingerprint('hb', 1n),
        ruleId: 'hb',
        status: 'firing',
        metric: 'm',
        tags: ['host', 'a'],
        tenant: '',
        value: Number.NaN,
        score: null,
        startsAtMs: 4 * W,
        atMs: 4 * W,
        explanation: { rule: { id: 'hb', kind: 'absent' }, threshold: null, value: Number.NaN, lastDataMs: W, forMs: 3 * W, watermarkMs: 4 * W },
      },
    ]);
    e.checkAbsent('t', 0, 9 * W, 12_000);
    expect(e.take()).toEqual([]);
    const [back] = run(e, 9, 9, () => 3);
    expect(back).toEqual(['hb', 'resolved', 10, 3]);
  });

  it('check a partition at most once a second of wall time', () => {
    const e = configured(RULE);
    run(e, 0, 0, () => 1);
    e.checkAbsent('t', 0, 2 * W, 10_000);
    e.checkAbsent('t', 0, 10 * W, 10_999);
    expect(e.take()).toEqual([]);
    e.checkAbsent('t', 0, 10 * W, 11_000);
    expect(e.take().map((t) => t.startsAtMs / W)).toEqual([4]);
  });

  it('every silent series of a partition fires', () => {
    const e = configured(RULE);
    e.onBucket(closedBucket(1n, 'm', 0, 1), null);
    e.onBucket(closedBucket(2n, 'm', 1, 1, { tags: ['host', 'b'] }), null);
    e.checkAbsent('t', 0, 10 * W, 10_000);
    expect(e.take().map((t) => [t.tags, t.startsAtMs / W])).toEqual([
      [['host', 'a'], 4],
      [['host', 'b'], 5],
    ]);
  });

  it('a check of a partition with no absent states does not count against the throttle', () => {
    const e = configured(RULE);
    run(e, 0, 0, () => 1);
    e.configure({ hash: 'h2', text: 'rules: []\n', file: 'r.yaml', active: null });
    e.checkAbsent('t', 0, 10 * W, 10_000);
    e.configure({ hash: 'h3', text: `rules:\n${RULE}`, file: 'r.yaml', active: null });
    e.onBucket(closedBucket(2n, 'm', 0, 1), null);
    e.checkAbsent('t', 0, 10 * W, 10_500);
    expect(e.take().map((t) => [t.ruleId, t.startsAtMs / W])).toEqual([['hb', 4]]);
  });

  it('each partition is checked against its own watermark', () => {
    const e = configured(RULE);
    e.onBucket(closedBucket(1n, 'm', 0, 1, { partition: 1 }), null);
    e.checkAbsent('t', 0, 10 * W, 10_000);
    e.checkAbsent('u', 1, 10 * W, 10_000);
    expect(e.take()).toEqual([]);
    e.checkAbsent('t', 1, 10 * W, 10_000);
    expect(e.take().map((t) => t.ruleId)).toEqual(['hb']);
  });

  it('a gap between buckets fires only when it is at least `for` long', () => {
    const e = configured(RULE);
    expect(run(e, 0, 0, () => 1)).toEqual([]);
    expect(run(e, 3, 3, () => 1)).toEqual([]);
    const fired = run(e, 7, 7, () => 1);
    expect(fired.map((t) => t.slice(0, 3))).toEqual([
      ['hb', 'firing', 7],
      ['hb', 'resolved', 8],
    ]);
  });

  it('an evicted series keeps its absent states and drops the others', () => {
    const e = configured(`${RULE}  - { id: a, expr: "m > 5 for 2m" }\n`);
    run(e, 0, 0, () => 10);
    e.forget([1n, 99n]);
    expect(run(e, 5, 5, () => 10).map((t) => t.slice(0, 3))).toEqual([
      ['hb', 'firing', 4],
      ['hb', 'resolved', 6],
    ]);
    expect(run(e, 6, 6, () => 10)).toEqual([['a', 'firing', 7, 10]]);
    const threshold = configured('  - { id: a, expr: "m > 5 for 2m" }\n');
    run(threshold, 0, 0, () => 10);
    threshold.forget([1n]);
    expect(threshold.snapshot(1n)).toBeNull();
    expect(run(threshold, 1, 1, () => 10)).toEqual([]);
  });
});

describe('restored state', () => {
  it('an alert firing at the start cannot resolve on buckets ending by its start, and resolves after', () => {
    const fp = fingerprint('a', 1n);
    const e = configured('  - { id: a, expr: "m > 5" }\n', [{ fingerprint: fp, startsAtMs: 3 * W }]);
    expect(run(e, 0, 2, () => 0)).toEqual([]);
    expect(run(e, 3, 3, () => 0)).toEqual([['a', 'resolved', 4, 0]]);
  });

  it('firing alerts passed with unchanged rules still seed the states', () => {
    const e = configured('  - { id: a, expr: "m > 5" }\n');
    e.configure({ hash: 'h1', text: null, file: 'r.yaml', active: [{ fingerprint: fingerprint('a', 1n), startsAtMs: 0 }] });
    expect(run(e, 0, 0, () => 10)).toEqual([]);
    expect(run(e, 1, 1, () => 0)).toEqual([['a', 'resolved', 2, 0]]);
  });

  it('keepFiringFor counts from the start of the first bucket of a restored alert', () => {
    const e = configured('  - { id: a, expr: "m > 5", keepFiringFor: 1m }\n', [{ fingerprint: fingerprint('a', 1n), startsAtMs: 0 }]);
    expect(run(e, 0, 1, () => 0)).toEqual([['a', 'resolved', 2, 0]]);
  });

  it('reset forgets every state and seeds the given alerts', () => {
    const e = configured('  - { id: a, expr: "m > 5 for 2m" }\n  - { id: hb, kind: absent, metric: m, for: 1m }\n');
    run(e, 0, 0, () => 10);
    e.checkAbsent('t', 0, 0, 10_000);
    e.onBucket(closedBucket(1n, 'm', 1, 10), null);
    e.reset([{ fingerprint: fingerprint('a', 2n), startsAtMs: 0 }]);
    expect(e.take()).toEqual([]);
    expect(e.snapshot(1n)).toBeNull();
    // The absent state is gone, and the wall-clock throttle with it.
    e.checkAbsent('t', 0, 100 * W, 10_001);
    expect(e.take()).toEqual([]);
    expect(run(e, 2, 2, () => 10)).toEqual([]);
    expect(run(e, 3, 3, () => 10)).toEqual([['a', 'firing', 4, 10]]);
    e.checkAbsent('t', 0, 100 * W, 10_002);
    expect(e.take().map((t) => t.ruleId)).toEqual(['hb']);
    expect(run(e, 0, 0, () => 0, 'm', 2n)).toEqual([['a', 'resolved', 1, 0]]);
  });

  it('snapshot and restoreSeries carry a rule state into another evaluator', () => {
    const RULES = '  - { id: a, expr: "m > 5 for 3m" }\n  - { id: s, expr: "sum(m) > 10 in 3m" }\n';
    const e = configured(RULES);
    expect(e.snapshot(1n)).toBeNull();
    e.onBucket(closedBucket(7n, 'other', 0, 1), null);
    expect(e.snapshot(7n)).toBeNull();
    run(e, 0, 1, () => 4);
    run(e, 2, 2, () => 6);
    const snap = e.snapshot(1n);
    expect(snap).toEqual([
      { ruleId: 'a', firing: false, since: 2 * W, lastBad: 3 * W, startsAt: Number.NaN, streak: 0, heldMs: W, seededAt: -Infinity, ring: null, ringStart: Number.NaN, lastEnd: W },
      { ruleId: 's', firing: true, since: 2 * W, lastBad: 3 * W, startsAt: 3 * W, streak: 0, heldMs: W, seededAt: -Infinity, ring: new Float64Array([4, 1, 4, 240, 4, 1, 4, 240, 6, 1, 6, 360]), ringStart: 2, lastEnd: W },
    ]);
    run(e, 3, 3, () => 0);
    expect(snap?.[1]?.ring?.[0]).toBe(4);

    const other = configured(RULES);
    other.restoreSeries(1n, snap ?? []);
    expect(run(other, 3, 4, () => 6)).toEqual([['a', 'firing', 5, 6]]);
    expect(run(other, 5, 5, () => 0)).toEqual([['a', 'resolved', 6, 0]]);
    expect(run(other, 6, 6, () => 0)).toEqual([['s', 'resolved', 7, 6]]);
  });

  it('a snapshot replaces both the live states and a seeded firing alert', () => {
    const fp = fingerprint('a', 1n);
    const e = configured('  - { id: a, expr: "m > 5" }\n', [{ fingerprint: fp, startsAtMs: 0 }]);
    run(e, 0, 0, () => 10);
    e.restoreSeries(1n, [{ ruleId: 'a', firing: false, since: Number.NaN, lastBad: 0, startsAt: Number.NaN, streak: 0, heldMs: 0, seededAt: -Infinity, ring: null, ringStart: Number.NaN, lastEnd: 0 }]);
    expect(run(e, 1, 1, () => 10)).toEqual([['a', 'firing', 2, 10]]);
    const forgotten = configured('  - { id: a, expr: "m > 5" }\n');
    forgotten.restoreSeries(1n, [{ ruleId: 'a', firing: true, since: 0, lastBad: 0, startsAt: 0, streak: 0, heldMs: 0, seededAt: -Infinity, ring: null, ringStart: Number.NaN, lastEnd: 0 }]);
    forgotten.forget([1n]);
    expect(run(forgotten, 1, 1, () => 10)).toEqual([['a', 'firing', 2, 10]]);
  });
});

describe('rules per tenant (issue 18)', () => {
  const main = 'rules:\n  - { id: hot, expr: "m > 90 for 1m" }\n  - { id: hot-default, expr: "m > 90 for 1m", tenant: "" }\n';
  const acme = 'rules:\n  - { id: hot, expr: "m > 50 for 1m" }\n';
  const bundle = () => parseRuleBundle([
    { file: 'rules.yaml', tenant: null, text: main },
    { file: 'tenants/acme.yaml', tenant: 'acme', text: acme },
  ]);

  it('a tenant file\'s rules match its series only, under ids of its own; the rules file\'s match every tenant\'s unless they name one', () => {
    const set = bundle();
    expect(set.rules.map((r) => [r.id, r.tenant])).toEqual([['hot', null], ['hot-default', ''], ['acme/hot', 'acme']]);
    // The shard threads get the bundle as text and parse the same rules from it.
    expect(parseRulesText(set.text, set.file).rules.map((r) => r.id)).toEqual(['hot', 'hot-default', 'acme/hot']);
    const e = new RuleEvaluator();
    e.configure({ hash: set.hash, text: set.text, file: set.file, active: null });
    const fired = (tenant: string, id: bigint, value: number) => {
      for (let i = 0; i < 3; i++) e.onBucket(closedBucket(id, 'm', i, value, { tenant }), null);
      return e.take().map((t) => [t.ruleId, t.tenant]);
    };
    expect(fired('acme', 1n, 60)).toEqual([['acme/hot', 'acme']]);
    expect(fired('beta', 2n, 60)).toEqual([]);
    expect(fired('beta', 3n, 95)).toEqual([['hot', 'beta']]);
    expect(fired('', 4n, 95)).toEqual([['hot', ''], ['hot-default', '']]);
  });

  it('refuses a tenant file\'s rule that names another tenant, and reads a rules file alone as before', () => {
    expect(() => parseRuleBundle([{ file: 'tenants/acme.yaml', tenant: 'acme', text: 'rules:\n  - { id: x, expr: "m > 1", tenant: beta }\n' }])).toThrow(/names tenant "beta" in tenant "acme"'s file/);
    const alone = parseRuleBundle([{ file: 'rules.yaml', tenant: null, text: main }]);
    expect(alone.text).toBe(main);
  });
});
