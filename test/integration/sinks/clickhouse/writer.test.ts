import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { isVigilError } from '../../../../core/errors.js';
import { ClickHouseSink, INSERT_COLUMNS, insertTarget, rowsOf, splitRows, type InsertTable } from '../../../../sinks/clickhouse/index.js';
import { AnomalyEncoder } from '../../../../workers/encode/anomalies.js';
import { ForecastEncoder } from '../../../../workers/encode/forecasts.js';
import { PointsEncoder } from '../../../../workers/encode/points.js';
import { RollupEncoder } from '../../../../workers/encode/rollups.js';
import { StateEncoder } from '../../../../workers/encode/state.js';
import { uniqueName, useResources } from '../../../helpers/resources.js';

const res = useResources();

async function sink(): Promise<{ s: ClickHouseSink; db: string }> {
  const db = uniqueName('writer');
  res.own('database', db);
  const s = new ClickHouseSink({ ...res.config.clickhouse, database: db });
  await s.start();
  res.onClose(() => s.close());
  return { s, db };
}

describe('ClickHouse writer (the real server)', () => {
  it('stores a worker-encoded RowBinary body exactly, plain and gzip-compressed', async () => {
    const { s, db } = await sink();
    const e = new PointsEncoder(64);
    e.add(0xfedcba9876543210n, 'cpu', ['host', 'é'], 1, 1_700_000_000_123, -0.1, 'm', 3, 2 ** 40, 2);
    e.add(7n, 'mem', [], 0, 1_700_000_001_000, 1e300, 'm', 0, 5, 0);
    const body = e.rows.finish();
    await s.insert('points', body, false);
    await s.insert('points', new Uint8Array(gzipSync(body)), true);
    const rs = await res.clickhouse().query({
      query: `SELECT toString(series_id) AS id, metric, tags.key AS k, tags.value AS v, toString(type) AS type, toUInt32(ts) AS ts, ts_ms, value, source_partition, source_offset, point_index FROM ${db}.points ORDER BY series_id, value`,
      format: 'JSONEachRow',
    });
    const rows = await rs.json<Record<string, unknown>>();
    const cpu = { id: String(0xfedcba9876543210n), metric: 'cpu', k: ['host'], v: ['é'], type: 'counter', ts: 1_700_000_000, ts_ms: '1700000000123', value: -0.1, source_partition: 3, source_offset: String(2 ** 40), point_index: 2 };
    const mem = { id: '7', metric: 'mem', k: [], v: [], type: 'gauge', ts: 1_700_000_001, ts_ms: '1700000001000', value: 1e300, source_partition: 0, source_offset: '5', point_index: 0 };
    // On a cluster (clickhouse.cluster) the table is replicated and drops the second, identical
    // block: what makes a retried insert whose first attempt landed stored once.
    expect(rows).toEqual(res.config.clickhouse.cluster ? [mem, cpu] : [mem, mem, cpu, cpu]);
  });

  it('reads back the latest detector state per series of the asked partitions, settings and width, bytes intact', async () => {
    const { s } = await sink();
    const e = new StateEncoder();
    const bytes = (n: number) => new Uint8Array([n, 0, 255, 10, 13, 0x27, 0x5c]);
    e.add({ topic: "it's", partition: 0, seriesId: 1n, widthMs: 60_000, settings: 'k1', lastBucketMs: 60_000, version: 1, state: bytes(1) });
    e.add({ topic: "it's", partition: 0, seriesId: 1n, widthMs: 60_000, settings: 'k1', lastBucketMs: 120_000, version: 2, state: bytes(2) });
    e.add({ topic: "it's", partition: 1, seriesId: 2n, widthMs: 60_000, settings: 'k1', lastBucketMs: 60_000, version: 5, state: bytes(3) });
    e.add({ topic: "it's", partition: 2, seriesId: 3n, widthMs: 60_000, settings: 'k1', lastBucketMs: 60_000, version: 5, state: bytes(4) });
    e.add({ topic: "it's", partition: 0, seriesId: 4n, widthMs: 60_000, settings: 'other', lastBucketMs: 60_000, version: 5, state: bytes(5) });
    e.add({ topic: "it's", partition: 0, seriesId: 5n, widthMs: 10_000, settings: 'k1', lastBucketMs: 60_000, version: 5, state: bytes(6) });
    await s.insert('detector_state', e.rows.finish(), false);
    const got = await s.readDetectorState("it's", [0, 1], 60, 'k1');
    expect(got.sort((a, b) => Number(a.id - b.id)).map((r) => [r.id, [...r.state]])).toEqual([
      [1n, [...bytes(2)]],
      [2n, [...bytes(3)]],
    ]);
    expect(await s.readDetectorState("it's", [], 60, 'k1')).toEqual([]);
  });

  it('classifies a body the server rejects as VIGIL_ERR_CLICKHOUSE_INSERT and an unreachable server as VIGIL_ERR_CLICKHOUSE_UNAVAILABLE', async () => {
    const { s, db } = await sink();
    // Three bytes where a points row needs dozens: ClickHouse answers with an exception.
    const rejected = await s.insert('points', new Uint8Array([1, 2, 3]), false).then(
      () => null,
      (err: unknown) => err,
    );
    expect(isVigilError(rejected, 'VIGIL_ERR_CLICKHOUSE_INSERT'), String(rejected)).toBe(true);
    expect(await res.scalar(`SELECT count() FROM ${db}.points`)).toBe(0);

    const down = new ClickHouseSink({ ...res.config.clickhouse, url: 'http://127.0.0.1:1', database: db, requestTimeoutMs: 2000 });
    const unavailable = await down.insert('points', new Uint8Array([1]), false).then(
      () => null,
      (err: unknown) => err,
    );
    expect(isVigilError(unavailable, 'VIGIL_ERR_CLICKHOUSE_UNAVAILABLE'), String(unavailable)).toBe(true);
    await down.close();
  });

  it('classifies rows the server refuses for their values (a DEFAULT that throws) as VIGIL_ERR_CLICKHOUSE_REJECTED, not retryable, nothing stored', async () => {
    const { s, db } = await sink();
    // The table the insert names: points, or points_in on a cluster (schema.ts migration 10).
    await res.clickhouse().command({ query: `ALTER TABLE ${db}.${insertTarget('points', res.config.clickhouse.cluster)} ADD COLUMN guard UInt8 DEFAULT throwIf(value = 666)` });
    const e = new PointsEncoder(64);
    e.add(1n, 'cpu', [], 0, 1_700_000_000_000, 1, 'm', 0, 1, 0);
    e.add(1n, 'cpu', [], 0, 1_700_000_001_000, 666, 'm', 0, 2, 0);
    const err = await s.insert('points', e.rows.finish(), false).then(
      () => null,
      (x: unknown) => x,
    );
    expect(isVigilError(err, 'VIGIL_ERR_CLICKHOUSE_REJECTED'), String(err)).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(false);
    expect((err as Error).message).toContain('throwIf');
    expect(await res.scalar(`SELECT count() FROM ${db}.points`)).toBe(0);
  });

  // Parity of the reader (rows.ts) with the server: what ClickHouse itself writes as RowBinary
  // splits into as many rows as it holds, and each renders as the server's JSON shows it.
  it('reads RowBinary as the server writes it: every table, split row by row, rendered as the server renders the same rows', async () => {
    const { s, db } = await sink();
    const key = { seriesId: 0xfedcba9876543210n, metric: 'cpu', tags: ['dc', 'ä', 'host', 'a'], type: 1, widthMs: 60_000, startMs: 1_700_000_040_000 };
    const points = new PointsEncoder(64);
    points.add(key.seriesId, 'cpu', key.tags, 1, 1_700_000_000_123, -0.1, "it's", 3, 2 ** 40, 2);
    points.add(7n, 'mem', [], 0, 1_700_000_001_000, 1e300, 'm', 0, 5, 0);
    const rollups = new RollupEncoder();
    rollups.add({ ...key, topic: 'm', partition: 1, kind: 2, correctionOffset: 9, correctionPoint: 1, count: 3, sum: 6.5, min: -1, max: 4, last: 2, lastTsMs: 1_700_000_041_000, sumsq: 20.25, version: 4 });
    const anomalies = new AnomalyEncoder();
    anomalies.add({ ...key, value: 9, expected: 2, lower: 1, upper: 3, score: 0.97, anomaly: true, scores: { robust: 0.9, ewma: 0.5, seasonal: 0, iforest: 0.7, lstm: 0 }, explanation: '{"why":"spike"}', topic: 'm', partition: 2, version: 8 });
    const forecasts = new ForecastEncoder();
    forecasts.add({ ...key, startMs: 1_700_003_640_000, issuedMs: 1_700_000_100_000, value: 41.5, lower80: 40, upper80: 43, lower95: 39, upper95: 44, model: '{"alpha":0.1}' });
    forecasts.add({ ...key, startMs: 1_700_007_240_000, issuedMs: 1_700_000_100_000, value: -2e-300, lower80: -1, upper80: 1, lower95: -2, upper95: 2, model: '' });
    const state = new StateEncoder();
    state.add({ topic: 'm', partition: 0, seriesId: 5n, widthMs: 60_000, settings: 'k', lastBucketMs: 1_700_000_040_000, version: 3, state: new TextEncoder().encode('state') });
    const bodies: Record<InsertTable, { body: Uint8Array; rows: number }> = {
      points: { body: points.rows.finish(), rows: 2 },
      rollups: { body: rollups.rows.finish(), rows: 1 },
      anomalies: { body: anomalies.rows.finish(), rows: 1 },
      forecasts: { body: forecasts.rows.finish(), rows: 2 },
      detector_state: { body: state.rows.finish(), rows: 1 },
    };
    for (const [table, { body, rows }] of Object.entries(bodies) as [InsertTable, { body: Uint8Array; rows: number }][]) {
      await s.insert(table, body, false);
      expect(splitRows(table, body, false), table).toHaveLength(rows);
      expect(splitRows(table, new Uint8Array(gzipSync(body)), true), table).toHaveLength(rows);
      const columns = INSERT_COLUMNS[table].map(([n]) => (n.includes('.') ? `\`${n}\`` : n));
      const order = table === 'detector_state' ? 'series_id' : 'series_id, metric';
      const raw = await res.clickhouse().exec({ query: `SELECT ${columns.join(', ')} FROM ${db}.${table} ORDER BY ${order} FORMAT RowBinary` });
      const chunks: Buffer[] = [];
      for await (const c of raw.stream) chunks.push(c as Buffer);
      const serverRows = splitRows(table, new Uint8Array(Buffer.concat(chunks)), false).map((r) => rowsOf(table).render(r));
      // The server's JSON, with DateTime in UTC ISO form and the Nested tags as one object, as render() gives them.
      const json = INSERT_COLUMNS[table].map(([n, type]) => (type === 'DateTime' ? `concat(replaceOne(toString(${n}, 'UTC'), ' ', 'T'), '.000Z') AS ${n}` : n.includes('.') ? `\`${n}\`` : n));
      const rs = await res.clickhouse().query({ query: `SELECT ${json.join(', ')} FROM ${db}.${table} ORDER BY ${order}`, format: 'JSONEachRow' });
      const expected = (await rs.json<Record<string, unknown>>()).map((r) => {
        if (!('tags.key' in r)) return r;
        const { ['tags.key']: k, ['tags.value']: v, ...rest } = r as Record<string, unknown> & { 'tags.key': string[]; 'tags.value': string[] };
        return { ...rest, tags: Object.fromEntries(k.map((x, i) => [x, v[i]])) };
      });
      expect(serverRows, table).toEqual(expected);
    }
  });
});
