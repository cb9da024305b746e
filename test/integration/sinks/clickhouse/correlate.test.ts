import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from '../../../../bench/process.js';
import { correlate, correlationTable } from '../../../../sinks/clickhouse/correlate.js';
import { useResources } from '../../../helpers/resources.js';

const res = useResources();
const T0 = Date.UTC(2026, 0, 5, 10) / 1000;

describe('vigil correlate (rollups_merged on 18.16)', () => {
  it("answers find_correlations: the series moving with the primary metric's, at their lag, strongest first", async () => {
    const db = await res.migratedDatabase('correlate');
    // An hour of minute buckets. Response time; cpu follows it 2 minutes later; free memory mirrors
    // it; disk is noise of its own; an old response time bucket lies outside the hour.
    const shape = (i: number) => Math.sin(i / 4) + 0.3 * Math.cos(i * 1.3);
    const noise = (i: number) => Math.sin(i * 12.9898) * 43758.5453 - Math.floor(Math.sin(i * 12.9898) * 43758.5453);
    const series: [number, string, string, (i: number) => number][] = [
      [1, 'application.api.response_time', 'api-1', (i) => 200 + 50 * shape(i)],
      [2, 'system.cpu.usage', 'api-1', (i) => 40 + 10 * shape(i - 2)],
      [3, 'system.memory.free', 'api-1', (i) => 900 - 30 * shape(i)],
      [4, 'system.disk.used', 'api-1', (i) => 50 + noise(i)],
    ];
    const rows: string[] = [];
    for (const [id, metric, host, f] of series) {
      for (let i = 0; i < 61; i++) {
        // Two partial rows per bucket (two source partitions): rollups_merged adds them up.
        const v = f(i);
        for (const part of [0, 1]) rows.push(`(${id}, '${metric}', ['host'], ['${host}'], 60, ${T0 + i * 60}, 'm', ${part}, 1, ${v}, ${v}, ${v}, ${v}, 1)`);
      }
    }
    rows.push(`(1, 'application.api.response_time', ['host'], ['api-1'], 60, ${T0 - 7200}, 'm', 0, 1, 5000, 5000, 5000, 5000, 1)`);
    await res.clickhouse().command({ query: `INSERT INTO ${db}.rollups (series_id, metric, tags.key, tags.value, width_s, bucket_start, source_topic, source_partition, count, sum, min, max, last, version) VALUES ${rows.join(', ')}` });

    const query = { database: db, metric: 'application.api.response_time', with: ['system.cpu.%', 'system.memory.%', 'system.disk.%'], widthSeconds: 60, sinceSeconds: 3600, threshold: 0.7, maxLag: 5 };
    const out = await correlate(res.clickhouse(), query);
    // Both exact (r = ±1): the smaller lag first.
    expect(out.map((c) => [c.series.metric, Number(c.r.toFixed(6)), c.lagSeconds, c.n])).toEqual([
      ['system.memory.free', -1, 0, 61],
      ['system.cpu.usage', 1, 120, 59],
    ]);
    expect(out[0]?.primary).toEqual({ metric: 'application.api.response_time', tags: { host: 'api-1' } });
    // Only cpu: --with narrows the comparison; a threshold of 1.01 leaves nothing.
    expect((await correlate(res.clickhouse(), { ...query, with: ['system.cpu.%'] })).map((c) => c.series.metric)).toEqual(['system.cpu.usage']);
    expect(await correlate(res.clickhouse(), { ...query, metric: 'nothing.here' })).toEqual([]);

    const env = { ...process.env, VIGIL_CLICKHOUSE_DATABASE: db };
    const table = execFileSync('node', [CLI, 'correlate', '--metric', 'application.api.response_time', '--with', 'system.cpu.%,system.memory.%,system.disk.%', '--width', '60'], { env }).toString();
    expect(table).toBe(correlationTable(out));
    expect(table.split('\n')[2]).toMatch(/^application\.api\.response_time\{host="api-1"\}\s+system\.cpu\.usage\{host="api-1"\}\s+1\.000\s+\+120s\s+59$/);
    const json = execFileSync('node', [CLI, 'correlate', '--metric', 'application.api.response_time', '--with', 'system.cpu.%', '--width', '60', '--json'], { env }).toString().trim().split('\n').map((l) => JSON.parse(l) as { r: number });
    expect(json).toHaveLength(1);
    expect(() => execFileSync('node', [CLI, 'correlate', '--metric', 'x', '--threshold', '2'], { env, stdio: 'pipe' })).toThrow(/VIGIL_ERR_CLI_USAGE.*--threshold = "2": expected a number from 0 to 1/s);
  });
});
