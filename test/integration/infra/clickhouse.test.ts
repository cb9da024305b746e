import { describe, expect, it } from 'vitest';
import { useResources } from '../../helpers/resources.js';

const res = useResources();

describe('local ClickHouse server', () => {
  it('inserts and selects through @clickhouse/client', async () => {
    const db = await res.database('smoke');
    const ch = res.clickhouse();
    await ch.command({ query: `CREATE TABLE ${db}.t (id UInt64, name String, v Float64) ENGINE = MergeTree() ORDER BY id` });
    const rows = Array.from({ length: 1000 }, (_, i) => ({ id: i, name: `n${i % 10}`, v: i / 2 }));
    await ch.insert({ table: `${db}.t`, values: rows, format: 'JSONEachRow' });
    const result = await ch.query({ query: `SELECT count() AS c, sum(v) AS s, uniqExact(name) AS u FROM ${db}.t`, format: 'JSONEachRow' });
    const [row] = await result.json<{ c: string; s: number; u: string }>();
    expect(Number(row?.c)).toBe(1000);
    expect(row?.s).toBe(rows.reduce((a, r) => a + r.v, 0));
    expect(Number(row?.u)).toBe(10);
  });
});
