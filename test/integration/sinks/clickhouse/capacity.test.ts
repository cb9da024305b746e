import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from '../../../../bench/process.js';
import { capacity, capacityTable, humanDuration } from '../../../../sinks/clickhouse/capacity.js';
import { useResources } from '../../../helpers/resources.js';

const res = useResources();
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 10);
const at = (ms: number) => Math.floor(ms / 1000);

/** A forecast of `values`, one an hour from an hour after `issuedMs`, ±`spread` as its 95 % interval. */
function forecastRows(series: number, metric: string, host: string, issuedMs: number, values: number[], spread: number): string[] {
  return values.map(
    (v, i) => `(${series}, '${metric}', ['host'], ['${host}'], 'gauge', 60, ${at(issuedMs + (i + 1) * HOUR)}, ${at(issuedMs)}, ${v}, ${v - spread / 2}, ${v + spread / 2}, ${v - spread}, ${v + spread}, '{}')`,
  );
}

describe('vigil capacity (forecasts_latest on 18.16)', () => {
  it('gives each series its time to the threshold from its latest forecast, with the 95 % range, soonest first', async () => {
    const db = await res.migratedDatabase('capacity');
    const rows = [
      // db-a: its latest forecast reaches 90 three hours out; the interval's top edge two hours out, its bottom edge never.
      ...forecastRows(1, 'disk.used', 'db-a', T0, [80, 85, 90, 95], 6),
      // An older forecast of db-a, reaching 90 at once: not the latest, not read.
      ...forecastRows(1, 'disk.used', 'db-a', T0 - HOUR, [91, 92], 1),
      // db-b reaches 90 at its first hour, every edge too; db-c stays at 50.
      ...forecastRows(2, 'disk.used', 'db-b', T0, [95, 96, 97, 98], 1),
      ...forecastRows(3, 'disk.used', 'db-c', T0, [50, 50, 50, 50], 2),
      // Another metric.
      ...forecastRows(4, 'cpu', 'db-a', T0, [99, 99], 1),
    ];
    await res.clickhouse().command({ query: `INSERT INTO ${db}.forecasts (series_id, metric, tags.key, tags.value, type, width_s, bucket_start, issued_at, value, lower_80, upper_80, lower_95, upper_95, model) VALUES ${rows.join(', ')}` });

    const query = { database: db, metricLike: 'disk.%', threshold: 90, below: false };
    const out = await capacity(res.clickhouse(), query);
    expect(out).toEqual([
      { metric: 'disk.used', tags: { host: 'db-b' }, issuedMs: T0, firstValue: 95, horizonEndMs: T0 + 4 * HOUR, reachesMs: T0 + HOUR, earliestMs: T0 + HOUR, latestMs: T0 + HOUR },
      { metric: 'disk.used', tags: { host: 'db-a' }, issuedMs: T0, firstValue: 80, horizonEndMs: T0 + 4 * HOUR, reachesMs: T0 + 3 * HOUR, earliestMs: T0 + 2 * HOUR, latestMs: null },
      { metric: 'disk.used', tags: { host: 'db-c' }, issuedMs: T0, firstValue: 50, horizonEndMs: T0 + 4 * HOUR, reachesMs: null, earliestMs: null, latestMs: null },
    ]);
    // Falling to a level: db-c is already at 50 or below, the others never within the horizon.
    const below = await capacity(res.clickhouse(), { ...query, threshold: 52, below: true });
    expect(below.map((r) => [r.tags['host'], r.reachesMs])).toEqual([
      ['db-c', T0 + HOUR],
      ['db-a', null],
      ['db-b', null],
    ]);
    expect(below[0]?.earliestMs).toBe(T0 + HOUR);
    // Its top edge (52) is at the threshold: reached by then with 97.5 % confidence.
    expect(below[0]?.latestMs).toBe(T0 + HOUR);

    const table = capacityTable(out, query).split('\n');
    expect(table[0]).toMatch(/^series\s+forecast now\s+reaches >= 90 in\s+earliest \(95 %\)\s+latest \(95 %\)\s+forecast made$/);
    expect(table[1]).toMatch(/^disk\.used\{host="db-b"\}\s+95\s+1h\s+1h\s+1h\s+2026-01-05T10:00:00\.000Z$/);
    expect(table[2]).toMatch(/^disk\.used\{host="db-a"\}\s+80\s+3h\s+2h\s+–\s/);
    expect(table[3]).toMatch(/^disk\.used\{host="db-c"\}\s+50\s+not within 4h\s+–\s+–\s/);

    // The command: the same table, or JSON lines.
    const env = { ...process.env, VIGIL_CLICKHOUSE_DATABASE: db };
    const text = execFileSync('node', [CLI, 'capacity', '--metric', 'disk.%', '--threshold', '90'], { env }).toString();
    expect(text).toBe(capacityTable(out, query));
    const json = execFileSync('node', [CLI, 'capacity', '--metric', 'disk.used', '--threshold', '90', '--json'], { env }).toString().trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(json).toEqual(out);
    expect(() => execFileSync('node', [CLI, 'capacity', '--metric', 'disk.%', '--threshold', 'full'], { env, stdio: 'pipe' })).toThrow(/VIGIL_ERR_CLI_USAGE.*--threshold = "full": expected a number/s);
  });

  it('writes durations as people read them', () => {
    expect([0, 59_000, 60_000, 3_600_000, 5_400_000, 47 * HOUR, 50 * HOUR].map(humanDuration)).toEqual(['0m', '1m', '1m', '1h', '1h 30m', '47h', '2d 2h']);
  });
});
