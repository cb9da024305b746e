import { describe, expect, it } from 'vitest';
import { InsertBatcher, type BatcherOptions } from '../../../../sinks/clickhouse/batcher.js';
import type { InsertTable } from '../../../../sinks/clickhouse/schema.js';

function harness(overrides: Partial<BatcherOptions> = {}) {
  const sent: { table: InsertTable; body: number[] }[] = [];
  const stored: [InsertTable, number][] = [];
  const retries: number[] = [];
  let failures = 0;
  const b = new InsertBatcher({
    maxRows: 10,
    lingerMs: 60_000,
    retryInitialMs: 1,
    retryMaxMs: 2,
    insert: async (table, body) => {
      if (failures > 0) {
        failures--;
        throw new Error('ClickHouse down');
      }
      sent.push({ table, body: [...body] });
    },
    deadline: () => Infinity,
    onRetry: (_err, ms) => retries.push(ms),
    onStored: (table, rows) => stored.push([table, rows]),
    ...overrides,
  });
  return { b, sent, stored, retries, fail: (n: number) => (failures = n) };
}

const body = (...bytes: number[]) => new Uint8Array(bytes);

describe('InsertBatcher', () => {
  it('sends a full batch at once, tables in dependency order, and resolves each write once stored', async () => {
    const h = harness();
    const done: string[] = [];
    const writes = [
      h.b.write('anomalies', body(3), 2).then(() => done.push('a')),
      h.b.write('points', body(1), 4).then(() => done.push('p1')),
      h.b.write('detector_state', body(4), 1).then(() => done.push('s')),
      h.b.write('rollups', body(2), 1).then(() => done.push('r')),
      h.b.write('points', body(5), 2).then(() => done.push('p2')),
    ];
    // 10 rows: due without waiting for the linger.
    await Promise.all(writes);
    expect(h.sent).toEqual([
      { table: 'points', body: [1, 5] },
      { table: 'rollups', body: [2] },
      { table: 'anomalies', body: [3] },
      { table: 'detector_state', body: [4] },
    ]);
    expect(h.stored).toEqual([
      ['points', 6],
      ['rollups', 1],
      ['anomalies', 2],
      ['detector_state', 1],
    ]);
    expect(done.sort()).toEqual(['a', 'p1', 'p2', 'r', 's']);
    await h.b.close();
  });

  it('cuts inserts at maxRows, keeping arrival order, and holds a small batch for the linger until drained', async () => {
    const h = harness();
    const first = h.b.write('points', body(1), 6);
    const second = h.b.write('points', body(2), 6);
    await first;
    expect(h.sent).toEqual([{ table: 'points', body: [1] }]);
    let late = false;
    void second.then(() => (late = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(late).toBe(false);
    expect(h.b.pending).toBe(1);
    h.b.drain();
    await second;
    expect(h.sent).toEqual([
      { table: 'points', body: [1] },
      { table: 'points', body: [2] },
    ]);
    await h.b.close();
  });

  it('retries a failed insert with backoff and stores it once', async () => {
    const h = harness();
    h.fail(3);
    await h.b.write('points', body(7), 10);
    expect(h.retries).toEqual([1, 2, 2]);
    expect(h.sent).toEqual([{ table: 'points', body: [7] }]);
    await h.b.close();
  });

  it('gives up at the deadline: the failing insert and everything queued behind it reject, nothing is stored', async () => {
    let deadline = Infinity;
    const h = harness({ deadline: () => deadline });
    h.fail(1_000_000);
    const a = h.b.write('points', body(1), 10);
    const b = h.b.write('rollups', body(2), 1);
    await new Promise((r) => setTimeout(r, 20));
    deadline = 0;
    await expect(a).rejects.toThrow('ClickHouse down');
    await expect(b).rejects.toThrow('ClickHouse down');
    expect(h.sent).toEqual([]);
    expect(h.stored).toEqual([]);
    await h.b.close();
  });

  it('close() stores what is queued, then refuses new writes', async () => {
    const h = harness();
    const w = h.b.write('points', body(9), 1);
    await h.b.close();
    await w;
    expect(h.sent).toEqual([{ table: 'points', body: [9] }]);
    await expect(h.b.write('points', body(1), 1)).rejects.toThrow(/closed/);
  });
});
