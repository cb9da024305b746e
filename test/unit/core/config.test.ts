import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configDocs, envName, leaves, loadConfig } from '../../../core/config/index.js';
import { VigilError } from '../../../core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'vigil-config-'));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
function loadError(fn: () => unknown): VigilError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VigilError);
    return err as VigilError;
  }
  throw new Error('expected a configuration error');
}

describe('configuration', () => {
  it('applies every default when nothing is configured, and freezes the result', () => {
    const config = loadConfig({ env: {}, cwd: '/srv/x' });
    for (const { path, leaf } of leaves()) {
      const value = path.split('.').reduce<unknown>((n, k) => (n as Record<string, unknown>)[k], config);
      if (path === 'dataDir') expect(value).toBe('/srv/x/.vigil');
      // 0 stands for the widest rollup width.
      else if (path === 'models.widthSeconds') expect(value).toBe(60);
      else expect(value).toEqual(leaf.default);
    }
    expect(Object.isFrozen(config.kafka.brokers)).toBe(true);
    expect(() => ((config.http as { port: number }).port = 1)).toThrow(TypeError);
  });

  it('reads JSON and YAML files and lets the environment override them', () => {
    const yaml = file('a.yaml', 'kafka:\n  brokers: [b1:9092, b2:9092]\nhttp:\n  port: 9500\n');
    const config = loadConfig({ file: yaml, env: { VIGIL_HTTP_PORT: '9600', VIGIL_KAFKA_TOPICS: 'm1, m2' } });
    expect(config.kafka.brokers).toEqual(['b1:9092', 'b2:9092']);
    expect(config.http.port).toBe(9600);
    expect(config.kafka.topics).toEqual(['m1', 'm2']);
    const json = file('a.json', JSON.stringify({ pipeline: { workers: 3 }, kafka: { topicFormats: { telegraf: 'influx' } } }));
    const c2 = loadConfig({ file: json, env: {} });
    expect(c2.pipeline.workers).toBe(3);
    expect(c2.kafka.topicFormats).toEqual({ telegraf: 'influx' });
  });

  it('rejects a wrong type with the key, the value, its source and what was expected', () => {
    const err = loadError(() => loadConfig({ env: { VIGIL_HTTP_PORT: 'abc' } }));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect(err.message).toContain('http.port = "abc" (from environment variable VIGIL_HTTP_PORT): expected a value of type integer');
    const err2 = loadError(() => loadConfig({ file: file('t.json', '{"kafka":{"fromBeginning":"yes"}}'), env: {} }));
    expect(err2.message).toMatch(/kafka\.fromBeginning = "yes" \(from file .*t\.json\): expected a value of type boolean/);
  });

  it('scores the widest rollup width unless told otherwise, and rejects a width rollups do not compute', () => {
    expect(loadConfig({ env: { VIGIL_ROLLUPS_WIDTHS_SECONDS: '5,10' } }).models.widthSeconds).toBe(10);
    expect(loadConfig({ env: { VIGIL_MODELS_WIDTH_SECONDS: '10' } }).models.widthSeconds).toBe(10);
    const err = loadError(() => loadConfig({ env: { VIGIL_MODELS_WIDTH_SECONDS: '30' } }));
    expect(err.message).toContain('models.widthSeconds = 30: expected one of rollups.widthsSeconds [10,60]');
  });

  it('takes failover replicas only with a cluster, and checks each is a URL (credentials not echoed)', () => {
    const urls = 'http://r2:8123, http://u:secret@r3:8123';
    expect(loadConfig({ env: { VIGIL_CLICKHOUSE_CLUSTER: 'vigil', VIGIL_CLICKHOUSE_FAILOVER_URLS: urls } }).clickhouse.failoverUrls).toEqual(['http://r2:8123', 'http://u:secret@r3:8123']);
    const err = loadError(() => loadConfig({ env: { VIGIL_CLICKHOUSE_FAILOVER_URLS: urls } }));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect(err.message).toContain('expected clickhouse.cluster too');
    expect(err.message).not.toContain('secret');
    expect(loadError(() => loadConfig({ env: { VIGIL_CLICKHOUSE_CLUSTER: 'vigil', VIGIL_CLICKHOUSE_FAILOVER_URLS: 'r2:8123' } })).message).toContain('clickhouse.failoverUrls');
  });

  it('rejects an out-of-range port with the allowed range', () => {
    const err = loadError(() => loadConfig({ file: file('p.json', '{"http":{"port":70000}}'), env: {} }));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_INVALID');
    expect(err.message).toContain('http.port = 70000');
    expect(err.message).toContain('expected a number <= 65535');
    expect(loadError(() => loadConfig({ env: { VIGIL_HTTP_PORT: '0' } })).message).toContain('expected a number >= 1');
  });

  it('rejects unknown keys in the file and unknown VIGIL_ variables', () => {
    const err = loadError(() => loadConfig({ file: file('u.json', '{"kafka":{"brokerz":["x:1"]}}'), env: {} }));
    expect(err.code).toBe('VIGIL_ERR_CONFIG_UNKNOWN_KEY');
    expect(err.message).toContain('unknown key kafka.brokerz');
    const top = loadError(() => loadConfig({ file: file('u2.yaml', 'colour: red\n'), env: {} }));
    expect(top.message).toContain('unknown key colour');
    const env = loadError(() => loadConfig({ env: { VIGIL_KAFKA_BROKER: 'x:1' } }));
    expect(env.code).toBe('VIGIL_ERR_CONFIG_UNKNOWN_KEY');
    expect(env.message).toContain('VIGIL_KAFKA_BROKER');
  });

  it('rejects a value outside an enumeration, listing the allowed values', () => {
    const err = loadError(() => loadConfig({ env: { VIGIL_LOG_LEVEL: 'loud' } }));
    expect(err.message).toContain('log.level = "loud"');
    expect(err.message).toContain('"fatal", "error", "warn", "info", "debug", "trace", "silent"');
    const fmt = loadError(() => loadConfig({ file: file('f.json', '{"kafka":{"topicFormats":{"t":"csv"}}}'), env: {} }));
    expect(fmt.message).toContain('kafka.topicFormats.t = "csv"');
  });

  it('reports an unreadable or unparseable file as VIGIL_ERR_CONFIG_FILE', () => {
    expect(loadError(() => loadConfig({ file: join(dir, 'missing.json'), env: {} })).code).toBe('VIGIL_ERR_CONFIG_FILE');
    expect(loadError(() => loadConfig({ file: file('bad.json', '{"kafka":'), env: {} })).code).toBe('VIGIL_ERR_CONFIG_FILE');
  });

  it('splits a list from the environment at its commas, not those inside braces or quotes (forecast selectors)', () => {
    const config = loadConfig({ env: { VIGIL_FORECASTS_SERIES: 'disk.used{host="db-*",dc="a,b"}, cpu ,', VIGIL_KAFKA_BROKERS: 'a:9092,b:9092' } });
    expect(config.forecasts.series).toEqual(['disk.used{host="db-*",dc="a,b"}', 'cpu']);
    expect(config.kafka.brokers).toEqual(['a:9092', 'b:9092']);
  });

  it('derives environment names from key paths', () => {
    expect(envName('pipeline.maxInFlightBytes')).toBe('VIGIL_PIPELINE_MAX_IN_FLIGHT_BYTES');
    expect(envName('kafka.brokers')).toBe('VIGIL_KAFKA_BROKERS');
  });

  it('documents every option in README.md exactly as the schema defines it', async () => {
    const { readFileSync } = await import('node:fs');
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(configDocs());
  });
});
