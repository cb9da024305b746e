import { describe, expect, it } from 'vitest';
import { AlertLifecycle, type AlertSinks } from '../../../../pipeline/alerts/lifecycle.js';
import type { Transition } from '../../../../workers/alerts/evaluator.js';
import { parseRules } from '../../../../workers/alerts/rules.js';

// handle() is pure bookkeeping: the sinks are never touched by it.
const sinks = { others: [] } as unknown as AlertSinks;
const rules = parseRules(`rules:\n  - id: cpu-hot\n    kind: threshold\n    metric: cpu\n    op: ">"\n    value: 90\n    for: 1m\n    repeatInterval: 0s\n`, 'rules.yaml');

function transition(status: Transition['status'], startsAtMs: number, atMs: number, fingerprint = 'f1'): Transition {
  return { fingerprint, ruleId: 'cpu-hot', status, metric: 'cpu', tags: ['host', 'a'], value: 95, score: null, startsAtMs, atMs, explanation: {} };
}

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

  it('after a restore a replay re-derives the firing state without publishing it again, and still publishes the resolve it never sent', async () => {
    // The alerts table as a restarted member reads it: the firing event is there, no resolve yet.
    const firingEvent = (() => {
      const l = new AlertLifecycle(sinks, () => 1_000_000);
      l.setRules(rules);
      return l.handle([transition('firing', 60_000, 60_000)])[0];
    })();
    const table = {
      query: async ({ query }: { query: string }) => ({
        json: async () => (query.includes('HAVING last') ? [] : [{ id: firingEvent?.id, at: 1_000_000 }]),
      }),
    };
    const l = new AlertLifecycle({ ...sinks, clickhouse: table, database: 'db' } as unknown as AlertSinks, () => 1_000_500);
    l.setRules(rules);
    // The firing set the table reports is empty here (say, read before the insert was visible), so
    // the shards replay the episode from its start.
    expect(await l.restore()).toEqual([]);
    expect(l.handle([transition('firing', 60_000, 60_000)])).toEqual([]);
    expect(l.firing).toBe(1);
    expect(l.handle([transition('resolved', 60_000, 180_000)]).map((e) => e.id)).toEqual(['f1-resolved-60000']);
    expect(l.firing).toBe(0);
  });
});

