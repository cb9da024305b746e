import { describe, expect, it } from 'vitest';
import { concat } from '../../../core/bytes.js';
import { loadConfig } from '../../../core/config/index.js';
import { forecastSettings, modelSettings, parseSelector, shardOutputs } from '../../../pipeline/shards.js';
import type { ShardResult } from '../../../workers/shard-task.js';
import { emptyShardResult, stateKey } from '../../../workers/shard-task.js';

function result(tag: number, rows: { rollups: number; anomalies: number; state: number }): ShardResult {
  return {
    ...emptyShardResult(),
    rollupBody: new Uint8Array(rows.rollups).fill(tag),
    rollupRows: rows.rollups,
    anomalyBody: new Uint8Array(rows.anomalies).fill(tag + 10),
    anomalyRows: rows.anomalies,
    stateBody: new Uint8Array(rows.state).fill(tag + 20),
    stateRows: rows.state,
  };
}

describe('shard stage', () => {
  it('gathers a task’s shard results per table, state rows apart (written after the alerts), skipping empty tables', () => {
    const out = shardOutputs();
    out.add(result(1, { rollups: 2, anomalies: 1, state: 1 }));
    out.add(result(2, { rollups: 1, anomalies: 0, state: 2 }));
    expect(out.inserts().map((i) => [i.table, i.rows, [...concat(i.body)]])).toEqual([
      ['rollups', 3, [1, 1, 2]],
      ['anomalies', 1, [11]],
    ]);
    const state = out.state();
    expect(state?.rows).toBe(3);
    expect([...concat(state?.body ?? [])]).toEqual([21, 22, 22]);
    const none = shardOutputs();
    none.add(result(3, { rollups: 0, anomalies: 0, state: 0 }));
    expect(none.inserts()).toEqual([]);
    expect(none.state()).toBeNull();
  });

  it('keys detector state by every ensemble setting but the row filter minScore', () => {
    const base = modelSettings(loadConfig({ env: {} }));
    expect(base).not.toBeNull();
    const s = base as NonNullable<typeof base>;
    expect(stateKey(s)).toMatch(/^[0-9a-f]{16}$/);
    expect(stateKey({ ...s, minScore: 0.9 })).toBe(stateKey(s));
    expect(stateKey({ ...s, ensemble: { ...s.ensemble, robust: { window: 64 } } })).not.toBe(stateKey(s));
    expect(stateKey({ ...s, widthMs: s.widthMs * 2 })).not.toBe(stateKey(s));
    expect(modelSettings(loadConfig({ env: {}, overrides: { 'models.enabled': false } }))).toBeNull();
  });
});

describe('forecasts.series selectors', () => {
  it('reads metric{tag="matcher", ...} as the matchers rules use', () => {
    expect(parseSelector('disk.used_percent')).toEqual({ metric: 'disk.used_percent', tags: {} });
    expect(parseSelector(' system.cpu.* { host = "web-*", dc="/^eu-\\\\d$/" } ')).toEqual({ metric: 'system.cpu.*', tags: { host: 'web-*', dc: '/^eu-\\d$/' } });
    expect(parseSelector('m{k="a \\"quoted\\" b"}')).toEqual({ metric: 'm', tags: { k: 'a "quoted" b' } });
  });

  it('refuses a selector it cannot read, or a matcher that does not compile, naming the key', () => {
    expect(parseSelector('m{host=web}')).toMatch(/expected tag="matcher" at character 0/);
    expect(parseSelector('{host="a"}')).toMatch(/expected metric\{tag="matcher"/);
    const config = loadConfig({ env: {}, overrides: { 'forecasts.series': ['disk{host="/(/"}'] } });
    expect(() => forecastSettings(config)).toThrow(/forecasts\.series\[0\] = .*its tag host matcher "\/\(\/" is not a valid regular expression/);
    const ok = forecastSettings(loadConfig({ env: {}, overrides: { 'forecasts.series': ['disk{host="db-*"}'], 'forecasts.stepSeconds': 90 } }));
    // 90 s rounds to the model width's multiple (60 s buckets by default: 120 s).
    expect(ok).toEqual({ series: [{ metric: 'disk', tags: { host: 'db-*' } }], horizonMs: 86_400_000, stepMs: 120_000, refreshMs: 3_600_000 });
    expect(forecastSettings(loadConfig({ env: {} }))?.series).toEqual([]);
    expect(() => loadConfig({ env: {}, overrides: { 'forecasts.series': ['disk'], 'models.enabled': false } })).toThrow(/forecasts\.series = \["disk"\]: expected models\.enabled too/);
  });
});
