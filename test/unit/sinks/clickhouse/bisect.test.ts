import { describe, expect, it } from 'vitest';
import { bisect } from '../../../../sinks/clickhouse/bisect.js';

const refusal = new Error('refused');
const isRefusal = (err: unknown) => err === refusal;
const rowsOf = (...bytes: number[]) => bytes.map((b) => new Uint8Array([b]));

/** A server that refuses a body holding any byte in `bad`; what it stored, in order. */
function server(bad: (body: Uint8Array) => boolean) {
  const stored: number[] = [];
  return {
    stored,
    insert: async (body: Uint8Array) => {
      if (bad(body)) throw refusal;
      stored.push(...body);
    },
  };
}

describe('bisect', () => {
  it('stores every good row in order and refuses exactly the bad ones, with the error', async () => {
    const s = server((b) => b.includes(0));
    const rows = rowsOf(1, 0, 2, 3, 4, 0, 5, 6, 7);
    const r = await bisect(rows, refusal, s.insert, isRefusal);
    expect(s.stored).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(r.refused.map((x) => [...x.row])).toEqual([[0], [0]]);
    expect(r.refused.every((x) => x.error === refusal)).toBe(true);
  });

  it('hands each run of refused rows to setAside, and waits for it, before inserting any later row', async () => {
    const log: string[] = [];
    const insert = async (body: Uint8Array) => {
      if (body.includes(0)) throw refusal;
      log.push(`stored ${[...body].join(',')}`);
    };
    const r = await bisect(rowsOf(1, 0, 0, 2, 0), refusal, insert, isRefusal, async (run) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      log.push(`set aside ${run.map((x) => [...x.row].join('')).join(',')}`);
    });
    // Before every later insert attempt: each could store rows after the refused ones.
    expect(log).toEqual(['stored 1', 'set aside 0', 'set aside 0', 'stored 2', 'set aside 0']);
    expect(r.refused).toHaveLength(3);
  });

  it('costs O(bad · log n) inserts: one bad row in 1,024 takes at most 2·10 inserts', async () => {
    const rows = Array.from({ length: 1024 }, (_, i) => new Uint8Array([i === 700 ? 0 : 1]));
    const s = server((b) => b.includes(0));
    const r = await bisect(rows, refusal, s.insert, isRefusal);
    expect(r.refused).toHaveLength(1);
    expect(s.stored).toHaveLength(1023);
    expect(r.inserts).toBeLessThanOrEqual(20);
  });

  it('every row bad: each refused, 2n − 2 inserts after the first refusal', async () => {
    const s = server(() => true);
    const r = await bisect(rowsOf(1, 2, 3, 4, 5), refusal, s.insert, isRefusal);
    expect(r.refused.map((x) => [...x.row])).toEqual([[1], [2], [3], [4], [5]]);
    expect(r.inserts).toBe(8);
    expect(s.stored).toEqual([]);
  });

  it('a block refused for its size alone (too many partitions) is stored whole once its parts are small enough', async () => {
    // Refuses a body whose rows span more than 2 distinct values, like max_partitions_per_insert_block.
    const s = server((b) => new Set(b).size > 2);
    const rows = rowsOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
    const r = await bisect(rows, refusal, s.insert, isRefusal);
    expect(r.refused).toEqual([]);
    expect(s.stored).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('a lone refused row is refused without another insert; no rows, nothing to do', async () => {
    const s = server(() => true);
    expect(await bisect(rowsOf(9), refusal, s.insert, isRefusal)).toEqual({ refused: [{ row: new Uint8Array([9]), error: refusal }], inserts: 0 });
    expect(await bisect([], refusal, s.insert, isRefusal)).toEqual({ refused: [], inserts: 0 });
  });

  it('throws any other error (retries exhausted): the caller fails the batch', async () => {
    const other = new Error('down');
    let n = 0;
    const insert = async () => {
      if (n++ === 1) throw other;
      throw refusal;
    };
    await expect(bisect(rowsOf(1, 2, 3, 4), refusal, insert, isRefusal)).rejects.toBe(other);
  });
});
