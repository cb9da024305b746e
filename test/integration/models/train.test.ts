import { describe, expect, it } from 'vitest';
import { ClickHouseSink } from '../../../sinks/clickhouse/index.js';
import { readHistory } from '../../../models/train.js';
import { RollupEncoder } from '../../../workers/encode/rollups.js';
import { uniqueName, useResources } from '../../helpers/resources.js';

const res = useResources();

describe('vigil train: history read from ClickHouse (the real 18.16 server)', () => {
  // 18.16 takes no query parameters: `{width:UInt32}` made it answer "Unknown setting param_width".
  it('reads bucket means per series in time order, filtered by width, metric pattern (quotes too) and age', async () => {
    const db = uniqueName('train');
    res.own('database', db);
    const sink = new ClickHouseSink({ ...res.config.clickhouse, database: db });
    await sink.start();
    res.onClose(() => sink.close());
    const e = new RollupEncoder();
    const hour = 3_600_000;
    const now = Math.floor(Date.now() / 60_000) * 60_000;
    const row = (seriesId: bigint, metric: string, widthMs: number, startMs: number, mean: number) =>
      e.add({ seriesId, metric, tags: [], type: 0, widthMs, startMs, topic: 'm', partition: 0, kind: 1, correctionOffset: 0, correctionPoint: 0, count: 2, sum: 2 * mean, min: mean, max: mean, last: mean, lastTsMs: startMs, sumsq: 2 * mean * mean, version: 2 });
    // Inserted out of time order: the reader sorts.
    row(1n, "cpu's.load", 60_000, now - 2 * 60_000, 2);
    row(1n, "cpu's.load", 60_000, now - 3 * 60_000, 1);
    row(1n, "cpu's.load", 60_000, now - 10 * hour, 0.5);
    row(1n, "cpu's.load", 60_000, now - 60_000, 3);
    row(1n, "cpu's.load", 10_000, now - 60_000, 99);
    row(2n, 'mem.used', 60_000, now - 60_000, 7);
    await sink.insert('rollups', e.rows.finish(), false);

    const all = await readHistory(res.clickhouse(), { database: db, widthSeconds: 60 });
    expect([...all.entries()].map(([id, v]) => [id, [...v]]).sort()).toEqual([
      ['1', [0.5, 1, 2, 3]],
      ['2', [7]],
    ]);
    const cpu = await readHistory(res.clickhouse(), { database: db, widthSeconds: 60, metricLike: "cpu's%", hours: 1 });
    expect([...cpu.entries()].map(([id, v]) => [id, [...v]])).toEqual([['1', [1, 2, 3]]]);
    expect((await readHistory(res.clickhouse(), { database: db, widthSeconds: 60, maxSeries: 1 })).size).toBe(1);
    expect([...(await readHistory(res.clickhouse(), { database: db, widthSeconds: 10 })).values()].map((v) => [...v])).toEqual([[99]]);
  });
});
