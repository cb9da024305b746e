import { describe, expect, it } from 'vitest';
import { AlertLifecycle, PUBLISHED_MEMORY_MS, type AlertSinks } from '../../../../pipeline/alerts/lifecycle.js';
import type { Transition } from '../../../../workers/alerts/evaluator.js';
import { parseRules } from '../../../../workers/alerts/rules.js';

// handle() is pure bookkeeping: the sinks are never touched by it.
const sinks = { others: [] } as unknown as AlertSinks;
const rules = parseRules(`rules:\n  - id: cpu-hot\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 90\n    for: 1m\n    repeatInterval: 0s\n`, 'rules.yaml');

function transition(status: Transition['status'], startsAtMs: number, atMs: number, fingerprint = 'f1'): Transition {
  return { fingerprint, ruleId: 'cpu-hot', status, metric: 'cpu', tags: ['host', 'a'], value: 95, tenant: '', score: null, startsAtMs, atMs, explanation: {} };
}

const iso = (ms: number): string => new Date(ms).toISOString();
const MINUTE = 60_000;

/** A rules file of the given rule entries (YAML list items). */
function ruleSet(...rulesYaml: string[]) {
  return parseRules(`rules:\n${rulesYaml.join('')}`, 'rules.yaml');
}

const detailed = `  - id: cpu-hot
    name: HotCpu
    kind: threshold
    metric: cpu
    op: ">"
    value: 90
    for: 1m
    severity: critical
    repeatInterval: 0s
    labels: { team: infra }
    annotations:
      summary: "{{ status }} {{ metric }} {{ value }} on {{ tags.host }} score {{ score }} from {{ startsAt }} seen {{ observedAt }}"
`;

describe('AlertLifecycle', () => {
  it('fires once per episode and resolves once, dropping a second firing while it lasts', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(rules);
    const fired = l.handle([transition('firing', 60_000, 60_000), transition('firing', 60_000, 120_000)]);
    expect(fired.map((e) => [e.status, e.id])).toEqual([['firing', 'f1-firing-60000']]);
    const resolved = l.handle([transition('resolved', 60_000, 180_000), transition('resolved', 60_000, 240_000)]);
    expect(resolved.map((e) => [e.status, e.id])).toEqual([['resolved', 'f1-resolved-60000']]);
    // A new episode (another start) fires again.
    expect(l.handle([transition('firing', 300_000, 300_000)]).map((e) => e.id)).toEqual(['f1-firing-300000']);
  });

  it('a replay of a whole episode it already published (kill -9 before the commit) publishes nothing', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(rules);
    const episode = [transition('firing', 60_000, 60_000), transition('resolved', 60_000, 180_000)];
    expect(l.handle(episode)).toHaveLength(2);
    expect(l.handle(episode)).toEqual([]);
    // Other fingerprints and later episodes are not affected.
    expect(l.handle([transition('firing', 60_000, 60_000, 'f2')]).map((e) => e.id)).toEqual(['f2-firing-60000']);
  });

  it('forgets published ids after a day', () => {
    let now = 1_000_000;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(rules);
    const episode = [transition('firing', 60_000, 60_000), transition('resolved', 60_000, 180_000)];
    expect(l.handle(episode)).toHaveLength(2);
    now += 86_400_000 + 120_000;
    expect(l.handle(episode)).toHaveLength(2);
  });

  it('remembers a published id for the whole day: a replay exactly PUBLISHED_MEMORY_MS later is still dropped', () => {
    let now = 1_000_000;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(rules);
    const episode = [transition('firing', 60_000, 60_000), transition('resolved', 60_000, 180_000)];
    expect(l.handle(episode)).toHaveLength(2);
    now += PUBLISHED_MEMORY_MS;
    expect(l.handle(episode)).toEqual([]);
  });

  it('prunes published ids at most once a minute, so an id past its day lives until the next prune', () => {
    const start = 1_000_000;
    let now = start;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(rules);
    const episode = [transition('firing', 60_000, 60_000), transition('resolved', 60_000, 180_000)];
    expect(l.handle(episode)).toHaveLength(2);
    // A prune 10 s before the ids are a day old keeps them.
    now = start + PUBLISHED_MEMORY_MS - 10_000;
    expect(l.handle([])).toEqual([]);
    // 20 s later they are past their day, but the last prune was under a minute ago.
    now = start + PUBLISHED_MEMORY_MS + 10_000;
    expect(l.handle(episode)).toEqual([]);
    // A minute after that prune, the next one forgets them.
    now = start + PUBLISHED_MEMORY_MS + 50_000;
    expect(l.handle(episode).map((e) => e.id)).toEqual(['f1-firing-60000', 'f1-resolved-60000']);
  });

  it('drops transitions of a rule it does not know', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(rules);
    const other = { ...transition('firing', 60_000, 60_000), ruleId: 'mem-hot' };
    expect(l.handle([other, { ...other, status: 'resolved', atMs: 120_000 }])).toEqual([]);
    expect(l.firing).toBe(0);
  });
});

describe('AlertLifecycle events', () => {
  it('a firing event carries the rule, the series, the value, the labels and the annotations rendered for firing', () => {
    const l = new AlertLifecycle(sinks, () => 3_600_000);
    l.setRules(ruleSet(detailed));
    const [event] = l.handle([{ ...transition('firing', 60_000, 60_000), tags: ['host', 'a', 'dc', 'eu'], score: 0.5, explanation: { mean: 95 } }]);
    expect(event).toEqual({
      version: 1,
      id: 'f1-firing-60000',
      fingerprint: 'f1',
      status: 'firing',
      rule: { id: 'cpu-hot', name: 'HotCpu', kind: 'threshold' },
      severity: 'critical',
      series: { metric: 'cpu', tags: { host: 'a', dc: 'eu' } },
      tenant: '',
      value: 95,
      threshold: 90,
      score: 0.5,
      startsAt: '1970-01-01T00:01:00.000Z',
      endsAt: null,
      observedAt: '1970-01-01T01:00:00.000Z',
      explanation: { mean: 95 },
      labels: { team: 'infra' },
      annotations: { summary: 'firing cpu 95 on a score 0.5 from 1970-01-01T00:01:00.000Z seen 1970-01-01T01:00:00.000Z' },
    });
  });

  it('a resolve keeps the firing identity and carries the resolving value, score, end time, explanation and re-rendered annotations', () => {
    let now = 3_600_000;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(ruleSet(detailed));
    const [firing] = l.handle([transition('firing', 60_000, 60_000)]);
    now = 7_200_000;
    const [resolved] = l.handle([{ ...transition('resolved', 60_000, 300_000), value: 80, score: 0.25, explanation: { mean: 80 } }]);
    expect(resolved).toEqual({
      ...firing,
      id: 'f1-resolved-60000',
      status: 'resolved',
      value: 80,
      score: 0.25,
      endsAt: '1970-01-01T00:05:00.000Z',
      observedAt: '1970-01-01T02:00:00.000Z',
      explanation: { mean: 80 },
      annotations: { summary: 'resolved cpu 80 on a score 0.25 from 1970-01-01T00:01:00.000Z seen 1970-01-01T02:00:00.000Z' },
    });
  });

  it('a value that is not a finite number is published as null', () => {
    const l = new AlertLifecycle(sinks, () => 3_600_000);
    l.setRules(ruleSet(detailed));
    const [firing] = l.handle([{ ...transition('firing', 60_000, 60_000), value: Number.NaN }]);
    const [resolved] = l.handle([{ ...transition('resolved', 60_000, 120_000), value: Number.POSITIVE_INFINITY }]);
    expect([firing?.value, resolved?.value]).toEqual([null, null]);
    expect([firing?.annotations, resolved?.annotations]).toEqual([
      { summary: 'firing cpu  on a score  from 1970-01-01T00:01:00.000Z seen 1970-01-01T01:00:00.000Z' },
      { summary: 'resolved cpu  on a score  from 1970-01-01T00:01:00.000Z seen 1970-01-01T01:00:00.000Z' },
    ]);
  });

  it('an absent rule has no threshold in its events', () => {
    const l = new AlertLifecycle(sinks, () => 3_600_000);
    l.setRules(ruleSet(`  - id: cpu-gone\n    kind: absent\n    metric: cpu\n    for: 5m\n`));
    const [event] = l.handle([{ ...transition('firing', 60_000, 60_000), ruleId: 'cpu-gone' }]);
    expect([event?.rule.kind, event?.threshold]).toEqual(['absent', null]);
  });

  it('a resolve whose event time is before the episode start (event time went back) ends at the start, not before it', () => {
    const l = new AlertLifecycle(sinks, () => 3_600_000);
    l.setRules(rules);
    l.handle([transition('firing', 600_000, 600_000)]);
    const [resolved] = l.handle([transition('resolved', 600_000, 300_000)]);
    expect(resolved?.endsAt).toBe(iso(600_000));
  });
});

describe('AlertLifecycle rate limit', () => {
  const limited = (id: string) => `  - id: ${id}\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 90\n    rateLimit: { max: 2, per: 1m }\n`;
  const fire = (fingerprint: string, ruleId = 'cpu-hot', startsAtMs = 60_000): Transition => ({ ...transition('firing', startsAtMs, startsAtMs, fingerprint), ruleId });
  const resolve = (fingerprint: string, ruleId = 'cpu-hot', startsAtMs = 60_000): Transition => ({ ...transition('resolved', startsAtMs, startsAtMs + MINUTE, fingerprint), ruleId });

  it('fires at most `max` episodes of a rule per window, and `max` again from the instant the window ends', () => {
    const start = 1_000_000;
    let now = start;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(ruleSet(limited('cpu-hot')));
    expect(l.handle([fire('f1'), fire('f2'), fire('f3')]).map((e) => e.fingerprint)).toEqual(['f1', 'f2']);
    expect(l.counts.suppressed).toBe(1);
    now = start + MINUTE - 1;
    expect(l.handle([fire('f4')])).toEqual([]);
    now = start + MINUTE;
    expect(l.handle([fire('f5'), fire('f6'), fire('f7')]).map((e) => e.fingerprint)).toEqual(['f5', 'f6']);
    expect(l.counts.suppressed).toBe(3);
  });

  it('a rule without a rate limit is never suppressed', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(rules);
    const fingerprints = ['f1', 'f2', 'f3', 'f4', 'f5'];
    expect(l.handle(fingerprints.map((fp) => fire(fp))).map((e) => e.fingerprint)).toEqual(fingerprints);
    expect(l.counts.suppressed).toBe(0);
  });

  it('counts the limit per rule', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(ruleSet(limited('cpu-hot'), limited('cpu-very-hot')));
    const events = l.handle([fire('f1'), fire('f2'), fire('f3'), fire('g1', 'cpu-very-hot'), fire('g2', 'cpu-very-hot')]);
    expect(events.map((e) => e.fingerprint)).toEqual(['f1', 'f2', 'g1', 'g2']);
  });

  it('a suppressed firing stays unheard for its whole episode: not fired later, its resolve dropped; its next episode may fire', () => {
    const start = 1_000_000;
    let now = start;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(ruleSet(limited('cpu-hot')));
    l.handle([fire('f1'), fire('f2'), fire('f3')]);
    now = start + MINUTE;
    // Tokens again, but f3's episode is the one nobody heard of.
    expect(l.handle([fire('f3')])).toEqual([]);
    expect(l.handle([resolve('f3')])).toEqual([]);
    expect(l.firing).toBe(2);
    expect(l.handle([fire('f3', 'cpu-hot', 300_000)]).map((e) => e.id)).toEqual(['f3-firing-300000']);
  });

  it('resolves of announced alerts are delivered even with no tokens left', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(ruleSet(limited('cpu-hot')));
    l.handle([fire('f1'), fire('f2'), fire('f3')]);
    expect(l.handle([resolve('f1'), resolve('f2')]).map((e) => e.id)).toEqual(['f1-resolved-60000', 'f2-resolved-60000']);
  });

  it('a replay of an announced episode spends no token and is not suppressed', () => {
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(ruleSet(limited('cpu-hot')));
    expect(l.handle([fire('f1'), resolve('f1'), fire('f2')])).toHaveLength(3);
    // No tokens left; the replayed firing of f1 is known, so it is tracked again without being published.
    expect(l.handle([fire('f1')])).toEqual([]);
    expect(l.firing).toBe(2);
    expect(l.counts.suppressed).toBe(0);
  });
});

describe('AlertLifecycle repeats', () => {
  const repeating = `  - id: cpu-hot\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 90\n    repeatInterval: 10m\n`;

  it('re-sends a firing event every repeatInterval from its last send, with the same id and a new observedAt', () => {
    const start = 1_000_000;
    let now = start;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(ruleSet(repeating));
    const [firing] = l.handle([transition('firing', 60_000, 60_000)]);
    now = start + 10 * MINUTE - 1;
    expect(l.repeats()).toEqual([]);
    now = start + 10 * MINUTE;
    expect(l.repeats()).toEqual([{ ...firing, observedAt: iso(now) }]);
    expect(l.repeats()).toEqual([]);
    now = start + 20 * MINUTE;
    expect(l.repeats().map((e) => [e.id, e.observedAt])).toEqual([['f1-firing-60000', iso(now)]]);
    expect(l.counts.repeats).toBe(2);
    // Once resolved, nothing is due.
    now = start + 25 * MINUTE;
    l.handle([transition('resolved', 60_000, 120_000)]);
    now = start + 40 * MINUTE;
    expect(l.repeats()).toEqual([]);
  });

  it('never re-sends with repeatInterval 0s', () => {
    let now = 1_000_000;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(rules);
    l.handle([transition('firing', 60_000, 60_000)]);
    expect(l.repeats()).toEqual([]);
    now += PUBLISHED_MEMORY_MS;
    expect(l.repeats()).toEqual([]);
    expect(l.counts.repeats).toBe(0);
  });
});

describe('AlertLifecycle rules removed', () => {
  const memHot = `  - id: mem-hot\n    kind: threshold\n    metric: mem\n    op: ">"\n    value: 80\n`;

  it('resolves the alerts of a removed rule at once, keeping their firing annotations; alerts of kept rules go on firing', () => {
    let now = 3_600_000;
    const l = new AlertLifecycle(sinks, () => now);
    l.setRules(ruleSet(detailed, memHot));
    const [cpu] = l.handle([transition('firing', 60_000, 60_000), { ...transition('firing', 60_000, 60_000, 'm1'), ruleId: 'mem-hot', metric: 'mem' }]);
    now = 7_200_000;
    expect(l.setRules(ruleSet(memHot))).toEqual([
      {
        ...cpu,
        id: 'f1-resolved-60000',
        status: 'resolved',
        value: null,
        score: null,
        endsAt: iso(now),
        observedAt: iso(now),
        explanation: { reason: 'rule removed' },
      },
    ]);
    expect(l.firing).toBe(1);
    expect(l.setRules(ruleSet(memHot))).toEqual([]);
    expect(l.firing).toBe(1);
  });
});

describe('AlertLifecycle annotations', () => {
  it('render {{ fingerprint }} and {{ explanation }} in firing and resolved events (they rendered empty)', () => {
    const withVars = parseRules(
      `rules:\n  - id: cpu-hot\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 90\n    annotations:\n      summary: "fp={{ fingerprint }} why={{ explanation }}"\n`,
      'rules.yaml',
    );
    const l = new AlertLifecycle(sinks, () => 1_000_000);
    l.setRules(withVars);
    const firing = { ...transition('firing', 60_000, 60_000), explanation: { mean: 95 } };
    const [fired] = l.handle([firing]);
    expect(fired?.annotations['summary']).toBe('fp=f1 why={"mean":95}');
    const [resolved] = l.handle([{ ...transition('resolved', 60_000, 120_000), explanation: { mean: 80 } }]);
    expect(resolved?.annotations['summary']).toBe('fp=f1 why={"mean":80}');
  });
});
