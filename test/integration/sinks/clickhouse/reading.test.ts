import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { capabilitiesOf } from '../../../../sinks/clickhouse/capabilities.js';
import { insertTarget, MIGRATIONS } from '../../../../sinks/clickhouse/schema.js';
import { useResources } from '../../../helpers/resources.js';

const res = useResources();

/** The SQL statements of the `n`th sql block (0: the first) of README's "Reading at scale" section, in order. */
function readmeStatements(n = 0): string[] {
  const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Reading at scale'), readme.indexOf('\n## ', readme.indexOf('### Reading at scale')));
  const block = [...section.matchAll(/```sql\n([\s\S]*?)```/g)][n]?.[1] ?? '';
  return block
    .split(';')
    .map((q) => q.replace(/^\s*--.*$/gm, '').trim())
    .filter((q) => q.length > 0);
}

async function rows(query: string): Promise<unknown[][]> {
  const rs = await res.clickhouse().query({ query, format: 'JSONCompact' });
  return ((await rs.json()) as unknown as { data: unknown[][] }).data.map((r) => r.map((v) => (typeof v === 'number' ? Math.round(v * 1e9) / 1e9 : v)));
}

describe('README "Reading at scale": the documented queries answer as the views', () => {
  it('on rollup versions, partitions and corrections and unmerged anomaly replays, each documented query returns the view’s rows', async () => {
    const db = await res.migratedDatabase('reading');
    const ch = res.clickhouse();
    const metric = 'system.cpu.usage_total';
    const now = Math.floor(Date.now() / 60_000) * 60 - 600;
    // Merges stopped: every duplicate and every old version stays visible to a read without FINAL.
    for (const t of ['points', 'rollups', 'anomalies']) await ch.command({ query: `SYSTEM STOP MERGES ${db}.${t}` });

    const point = (series: number, ts: number, value: number, offset: number) => `(${series}, '${metric}', ['host'], ['h${series}'], 'gauge', ${ts}, ${ts * 1000}, ${value}, 'm', 0, ${offset}, 0)`;
    const pointsInsert = `INSERT INTO ${db}.${insertTarget('points', res.config.clickhouse.cluster)} (series_id, metric, \`tags.key\`, \`tags.value\`, type, ts, ts_ms, value, source_topic, source_partition, source_offset, point_index) VALUES `;
    const points = [point(4711, now, 10, 1), point(4711, now + 60, 20, 2), point(4711, now + 120, 30, 3), point(42, now, 99, 4)];
    // Each point once, as the pipeline stores them (a replay skips the points the marks cover):
    // README documents `points` read as it is.
    await ch.command({ query: pointsInsert + points.join(', ') });

    const rollup = (partition: number, kind: string, correction: number, count: number, sum: number, version: number) =>
      `(4711, '${metric}', ['host'], ['h4711'], 'gauge', 60, ${now}, 'm', ${partition}, '${kind}', ${correction}, 0, ${count}, ${sum}, ${sum / count}, ${sum / count}, ${sum / count}, ${now * 1000}, ${sum * sum}, ${version})`;
    const rollupsInsert =
      `INSERT INTO ${db}.rollups (series_id, metric, \`tags.key\`, \`tags.value\`, type, width_s, bucket_start, source_topic, source_partition, kind, correction_offset, correction_point, ` +
      'count, sum, min, max, last, last_ts_ms, sumsq, version) VALUES ';
    // Partition 0's bucket row, then a later version of it (late points absorbed), partition 1's
    // partial row of the same bucket, and a correction row.
    for (const r of [rollup(0, 'bucket', 0, 3, 30, 3), rollup(0, 'bucket', 0, 5, 60, 5), rollup(1, 'bucket', 0, 2, 10, 2), rollup(0, 'correction', 77, 1, 4, 1)]) await ch.command({ query: rollupsInsert + r });

    const anomaly = (score: number, flagged: number, version: number, bucket = now) =>
      `(4711, '${metric}', ['host'], ['h4711'], 'gauge', 60, ${bucket}, 20, 19, 15, 25, ${score}, ${flagged}, 0, 0, 0, 0, 0, '{}', 'm', 0, ${version})`;
    const anomaliesInsert =
      `INSERT INTO ${db}.anomalies (series_id, metric, \`tags.key\`, \`tags.value\`, type, width_s, bucket_start, value, expected, lower, upper, score, anomaly, ` +
      'score_robust, score_ewma, score_seasonal, score_iforest, score_lstm, explanation, source_topic, source_partition, version) VALUES ';
    // A bucket flagged and written twice (a replay), one whose flag a later version cleared, one
    // flagged only by its later version.
    for (const a of [anomaly(0.9, 1, 7), anomaly(0.9, 1, 7), anomaly(0.95, 1, 8, now + 60), anomaly(0.4, 0, 9, now + 60), anomaly(0.3, 0, 9, now + 120), anomaly(0.8, 1, 10, now + 120)]) {
      await ch.command({ query: anomaliesInsert + a });
    }

    // Without FINAL the rollups' and anomalies' duplicates show: the comparison below can tell the forms apart.
    expect(Number((await rows(`SELECT sum(count) FROM ${db}.rollups`))[0]?.[0])).toBe(11);

    const views = [
      `SELECT toStartOfMinute(ts) AS t, avg(value) FROM ${db}.points_dedup WHERE metric = '${metric}' AND series_id = 4711 AND ts >= now() - 86400 GROUP BY t ORDER BY t`,
      // metric_rollups: the metric's gauges per minute over all its series.
      `SELECT toStartOfMinute(ts) AS bucket_start, avg(value) AS mean, max(value) AS max FROM ${db}.points_dedup WHERE metric = '${metric}' AND type = 'gauge' AND ts >= now() - 86400 GROUP BY bucket_start ORDER BY bucket_start`,
      `SELECT series_id, bucket_start, score FROM ${db}.anomalies_dedup WHERE bucket_start >= now() - 3600 AND anomaly = 1 ORDER BY score DESC LIMIT 100`,
      `SELECT bucket_start, count, mean, min, max FROM ${db}.rollups_merged WHERE metric = '${metric}' AND width_s = 60 AND series_id = 4711 AND bucket_start >= now() - 86400 ORDER BY bucket_start`,
    ];
    const documented = readmeStatements();
    expect(documented).toHaveLength(views.length);
    for (const [i, q] of documented.entries()) {
      const want = await rows(views[i] as string);
      expect(want.length, views[i]).toBeGreaterThan(0);
      expect(await rows(q.replaceAll('vigil.', `${db}.`)), q).toEqual(want);
    }
    const answer = async (i: number) => rows(documented[i]?.replaceAll('vigil.', `${db}.`) as string);
    // The metric's first minute: both series' points (10 and 99).
    expect((await answer(1))[0]?.slice(1)).toEqual([54.5, 99]);
    // The flagged buckets whose latest version is flagged: the replayed one and the one flagged later, not the one cleared.
    expect((await answer(2)).map((r) => r[2])).toEqual([0.9, 0.8]);
    // The rollup bucket: partition 0's latest version (5 points, sum 60), partition 1 (2, 10) and
    // the correction (1, 4): mean 74 / 8.
    expect(Number((await answer(3))[0]?.[2])).toBeCloseTo(74 / 8, 9);
  });

  it('README’s rebuild gives a rollups table made with the old sorting key the current one, every row kept', async () => {
    const db = await res.migratedDatabase('rebuild');
    const ch = res.clickhouse();
    const keyOf = async () => /ORDER BY \(([^)]*)\)/.exec(String((await rows(`SHOW CREATE TABLE ${db}.rollups`))[0]?.[0]))?.[1];
    const current = await keyOf();
    // The table as databases made before the key change have it: series_id before width_s.
    const old = 'metric, series_id, width_s, bucket_start, source_topic, source_partition, kind, correction_offset, correction_point';
    expect(current).not.toBe(old);
    await ch.command({ query: `DROP TABLE ${db}.rollups` });
    const caps = capabilitiesOf(String((await rows('SELECT version()'))[0]?.[0]));
    const create = MIGRATIONS.find((m) => m.name === 'rollups')?.statements(db, caps)[0] as string;
    await ch.command({ query: create.replace(/ORDER BY \([^)]*\)/, `ORDER BY (${old})`) });
    // With the tenant column, as migration 14 gave the databases made before it.
    await ch.command({ query: MIGRATIONS.find((m) => m.version === 14)?.statements(db, caps).find((q) => q.startsWith(`ALTER TABLE ${db}.rollups ADD`)) as string });
    expect(await keyOf()).toBe(old);
    await ch.command({ query: `SYSTEM STOP MERGES ${db}.rollups` });
    // Two widths, two series, versions of one bucket row (only the latest may count).
    const now = Math.floor(Date.now() / 60_000) * 60 - 600;
    for (const [series, width, count, version] of [[1, 60, 3, 1], [1, 60, 5, 2], [1, 10, 2, 1], [2, 60, 4, 1]] as const) {
      await ch.command({
        query:
          `INSERT INTO ${db}.rollups (series_id, metric, width_s, bucket_start, source_topic, source_partition, kind, correction_offset, correction_point, count, sum, min, max, last, last_ts_ms, sumsq, version) ` +
          `VALUES (${series}, 'm', ${width}, ${now}, 't', 0, 'bucket', 0, 0, ${count}, ${count * 2}, 2, 2, 2, ${now * 1000}, ${count * 4}, ${version})`,
      });
    }
    const merged = `SELECT series_id, width_s, count, sum FROM ${db}.rollups_merged ORDER BY series_id, width_s`;
    const before = await rows(merged);
    expect(before.map((r) => r.map(String))).toEqual([[1, 10, 2, 4], [1, 60, 5, 10], [2, 60, 4, 8]].map((r) => r.map(String)));
    const rawBefore = await rows(`SELECT count() FROM ${db}.rollups`);

    const rebuild = readmeStatements(1);
    expect(rebuild.length).toBeGreaterThan(0);
    for (const q of rebuild) await ch.command({ query: q.replaceAll('vigil.', `${db}.`) });

    expect(await keyOf()).toBe(current);
    expect(await rows(`SELECT count() FROM ${db}.rollups`)).toEqual(rawBefore);
    expect(await rows(merged)).toEqual(before);
    expect(await rows(`SELECT count() FROM system.tables WHERE database = '${db}' AND name LIKE 'rollups_%' AND name != 'rollups_merged'`)).toEqual([['0']]);
  });
});
