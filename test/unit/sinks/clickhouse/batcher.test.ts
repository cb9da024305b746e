import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { concat } from '../../../../core/bytes.js';
import { VigilError } from '../../../../core/errors.js';
import { InsertBatcher, type BatcherOptions } from '../../../../sinks/clickhouse/batcher.js';
import type { RefusedRow } from '../../../../sinks/clickhouse/bisect.js';
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
      sent.push({ table, body: [...concat(body)] });
    },
    deadline: () => Infinity,
    onRetry: (_err, ms) => retries.push(ms),
    onStored: (table, rows) => stored.push([table, rows]),
    // A byte is a row in these tests.
    rows: (_table, b) => [...b].map((x) => new Uint8Array([x])),
    refused: async () => {},
    ...overrides,
  });
  return { b, sent, stored, retries, fail: (n: number) => (failures = n) };
}

const body = (...bytes: number[]) => new Uint8Array(bytes);

describe('InsertBatcher', () => {
  it('a points insert whose answer was lost is not sent again when its partitions\' marks show it landed; asked with the furthest point per partition', async () => {
    const asked: [string, readonly [number, number]][][] = [];
    let attempts = 0;
    let landedAnswer = false;
    const h = harness({
      maxRows: 3,
      insert: async () => {
        attempts++;
        // The server stored it, the answer never came.
        if (attempts === 1) throw new Error('socket hang up');
      },
      landed: async (marks) => {
        asked.push([...marks]);
        return landedAnswer;
      },
    });
    landedAnswer = true;
    await Promise.all([
      h.b.write('points', body(1), 1, 0, { key: 't/0', point: [5, 2] }),
      h.b.write('points', body(2), 1, 0, { key: 't/1', point: [9, 0] }),
      h.b.write('points', body(3), 1, 0, { key: 't/0', point: [7, 1] }),
    ]);
    expect(attempts).toBe(1);
    expect(asked).toEqual([[['t/0', [7, 1]], ['t/1', [9, 0]]]]);
    // Not landed: sent again.
    landedAnswer = false;
    attempts = 0;
    await h.b.write('points', body(4), 3, 0, { key: 't/0', point: [8, 0] });
    expect(attempts).toBe(2);
  });

  it('a failed points insert of an earlier generation is not sent again once a new one began; other tables are', async () => {
    let attempts = 0;
    let fail = true;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const h = harness({
      maxRows: 1,
      retryInitialMs: 20,
      retryMaxMs: 20,
      insert: async () => {
        attempts++;
        if (fail) {
          await gate;
          throw new Error('socket hang up');
        }
      },
    });
    const old = h.b.write('points', body(1), 1, 1);
    await new Promise((r) => setTimeout(r, 5));
    const withdrawn = h.b.withdraw('points', 2);
    release();
    await Promise.all([old, withdrawn]);
    expect(attempts).toBe(1);
    // A rollup body of that generation is still retried until stored.
    attempts = 0;
    const rollup = h.b.write('rollups', body(2), 1, 1);
    await new Promise((r) => setTimeout(r, 30));
    fail = false;
    await rollup;
    expect(attempts).toBeGreaterThan(1);
  });

  it('withdraw takes back the unsent points bodies of earlier generations (resolved, never sent), keeps the rest, and waits for the insert in flight', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const sent: number[][] = [];
    const h = harness({
      maxRows: 2,
      insert: async (_table, b) => {
        if (calls++ === 0) await gate;
        sent.push([...concat(b)]);
      },
    });
    const first = h.b.write('points', body(1), 2, 1);
    // The first insert is in flight (held at the gate) when the generation changes.
    await new Promise((r) => setTimeout(r, 5));
    const old = h.b.write('points', body(2), 1, 1);
    const rollup = h.b.write('rollups', body(3), 1, 1);
    const current = h.b.write('points', body(4), 1, 2);
    let withdrawn: number | undefined;
    const w = h.b.withdraw('points', 2).then((n) => (withdrawn = n));
    await new Promise((r) => setTimeout(r, 5));
    expect(withdrawn).toBeUndefined();
    release();
    await Promise.all([w, first, old, rollup, current]);
    expect(withdrawn).toBe(1);
    expect(sent).toEqual([[1], [4], [3]]);
  });

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

  it('sends a batch as the chunks its bodies were written as, in order, none copied', async () => {
    const chunks: Uint8Array[] = [];
    const h = harness({ maxRows: 6, insert: async (_table, b) => void chunks.push(...b) });
    const parts = [body(1, 2), body(3), body(4, 5)];
    const last = body(6);
    await Promise.all([h.b.write('rollups', parts, 3), h.b.write('rollups', last, 3)]);
    expect(chunks).toHaveLength(4);
    for (const [i, c] of [...parts, last].entries()) expect(chunks[i]).toBe(c);
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

// The linger and the insert durations on a fake clock (setTimeout, performance.now and Date).
describe('InsertBatcher on a fake clock', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sends a batch below maxRows when lingerMs has passed since its first write, not its last', async () => {
    const h = harness({ lingerMs: 1_000 });
    await vi.advanceTimersByTimeAsync(300);
    const first = h.b.write('points', body(1), 1);
    await vi.advanceTimersByTimeAsync(600);
    const second = h.b.write('points', body(2), 1);
    await vi.advanceTimersByTimeAsync(399); // 1,299 ms: 999 ms after the first write
    expect(h.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sent).toEqual([{ table: 'points', body: [1, 2] }]);
    await Promise.all([first, second]);
    await h.b.close();
  });

  it('the rest of a batch cut at maxRows waits a full linger after that insert', async () => {
    const h = harness({ lingerMs: 1_000 });
    const first = h.b.write('points', body(1), 6);
    await vi.advanceTimersByTimeAsync(500);
    const second = h.b.write('points', body(2), 6); // 12 rows: the first 6 go now
    await first;
    expect(h.sent).toEqual([{ table: 'points', body: [1] }]);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1); // 1,000 ms after the first insert
    expect(h.sent).toEqual([
      { table: 'points', body: [1] },
      { table: 'points', body: [2] },
    ]);
    await second;
    await h.b.close();
  });

  it('sends a body with more rows than maxRows alone, at once', async () => {
    const h = harness({ lingerMs: 1_000 });
    const big = h.b.write('points', body(1), 25);
    const small = h.b.write('points', body(2), 1);
    await big;
    expect(h.sent).toEqual([{ table: 'points', body: [1] }]);
    expect(h.stored).toEqual([['points', 25]]);
    expect(h.b.pending).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    await small;
    expect(h.stored).toEqual([
      ['points', 25],
      ['points', 1],
    ]);
    await h.b.close();
  });

  it('reports how long each table insert took, in seconds', async () => {
    const seconds: [InsertTable, number][] = [];
    const h = harness({
      insert: (table) => new Promise((resolve) => setTimeout(resolve, table === 'points' ? 1_500 : 250)),
      onStored: (table, _rows, s) => seconds.push([table, s]),
    });
    const writes = [h.b.write('points', body(1), 5), h.b.write('rollups', body(2), 5)];
    await vi.advanceTimersByTimeAsync(1_750);
    await Promise.all(writes);
    expect(seconds).toEqual([
      ['points', 1.5],
      ['rollups', 0.25],
    ]);
    await h.b.close();
  });

  it('goes on after giving up on an insert: the rejected rows no longer count towards maxRows, a later small write waits for the linger', async () => {
    const h = harness({ lingerMs: 1_000, deadline: () => 0 });
    h.fail(1);
    const failed = h.b.write('points', body(1), 10);
    const behind = h.b.write('points', body(2), 9);
    await expect(failed).rejects.toThrow('ClickHouse down');
    await expect(behind).rejects.toThrow('ClickHouse down');
    const later = h.b.write('points', body(3), 2);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sent).toEqual([{ table: 'points', body: [3] }]);
    await later;
    await h.b.close();
  });

  it('idles between batches: after an insert with nothing queued, the next small write still waits its full linger', async () => {
    const h = harness({ lingerMs: 1_000 });
    await h.b.write('points', body(1), 10);
    await vi.advanceTimersByTimeAsync(5_500);
    const later = h.b.write('points', body(2), 1);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sent).toEqual([
      { table: 'points', body: [1] },
      { table: 'points', body: [2] },
    ]);
    await later;
    await h.b.close();
  });

  it('with lingerMs 0, an idle batcher looks for bodies every 50 ms rather than spinning: a write goes at the next look', async () => {
    const h = harness({ lingerMs: 0 });
    await vi.advanceTimersByTimeAsync(10);
    const w = h.b.write('points', body(1), 1);
    await vi.advanceTimersByTimeAsync(39);
    expect(h.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1); // 50 ms: the idle loop's look
    expect(h.sent).toEqual([{ table: 'points', body: [1] }]);
    await w;
    await h.b.close();
  });

  /** A harness whose inserts take 100 ms, recording the bodies in the order they are stored. */
  function slow(overrides: Partial<BatcherOptions> = {}) {
    const stored: number[][] = [];
    const h = harness({
      lingerMs: 1_000,
      insert: async (_table, b) => {
        await new Promise((resolve) => setTimeout(resolve, 100));
        stored.push([...concat(b)]);
      },
      ...overrides,
    });
    return { b: h.b, stored };
  }

  it('a write that fills a batch while an insert is in flight goes as soon as that insert is stored', async () => {
    const h = slow();
    const first = h.b.write('points', body(1), 10); // insert from 0 to 100 ms
    await vi.advanceTimersByTimeAsync(10);
    const full = h.b.write('points', body(2), 10);
    await vi.advanceTimersByTimeAsync(189);
    await first;
    expect(h.stored).toEqual([[1]]);
    await vi.advanceTimersByTimeAsync(1); // 200 ms: the second insert took 100 ms from the first's end
    await full;
    expect(h.stored).toEqual([[1], [2]]);
    await h.b.close();
  });

  it('drain() during an insert sends what is queued right after it, without waiting for the linger', async () => {
    const h = slow();
    void h.b.write('points', body(1), 10);
    await vi.advanceTimersByTimeAsync(10);
    const small = h.b.write('points', body(2), 1);
    await vi.advanceTimersByTimeAsync(10);
    h.b.drain();
    await vi.advanceTimersByTimeAsync(180); // 200 ms
    await small;
    expect(h.stored).toEqual([[1], [2]]);
    await h.b.close();
  });

  it('close() during an insert waits for it, then stores what is queued behind it', async () => {
    const h = slow();
    const first = h.b.write('points', body(1), 10);
    await vi.advanceTimersByTimeAsync(10);
    const small = h.b.write('points', body(2), 1);
    await vi.advanceTimersByTimeAsync(10);
    const closed = h.b.close();
    await vi.advanceTimersByTimeAsync(180);
    await closed;
    await Promise.all([first, small]);
    expect(h.stored).toEqual([[1], [2]]);
  });

  describe('an insert refused for its rows (VIGIL_ERR_CLICKHOUSE_REJECTED)', () => {
    const refusal = () => new VigilError('VIGIL_ERR_CLICKHOUSE_REJECTED', "Code: 395, DB::Exception: Value passed to 'throwIf' function is non zero", { retryable: false });

    /** A server that refuses any insert holding the byte 0xff, recording what it stored. */
    function picky(overrides: Partial<BatcherOptions> = {}) {
      const stored: number[] = [];
      const calls: { body: number[]; plain: boolean }[] = [];
      const refused: { table: InsertTable; rows: number[][] }[] = [];
      const h = harness({
        insert: async (_table, b, plain) => {
          calls.push({ body: [...concat(b)], plain });
          if (concat(b).includes(0xff)) throw refusal();
          stored.push(...concat(b));
        },
        refused: async (table, rows: readonly RefusedRow[]) => {
          refused.push({ table, rows: rows.map((r) => [...r.row]) });
          for (const r of rows) expect(r.error.message).toContain('throwIf');
        },
        ...overrides,
      });
      return { ...h, storedBytes: stored, calls, refusedRows: refused };
    }

    it('stores every other row of the batch in order, hands each run of refused rows over before any later row is stored, and counts only the stored rows', async () => {
      const h = picky();
      const a = h.b.write('points', body(1, 2, 0xff, 3), 4);
      const c = h.b.write('points', body(4, 0xff, 5, 6), 4);
      await h.b.close();
      await Promise.all([a, c]);
      expect(h.storedBytes).toEqual([1, 2, 3, 4, 5, 6]);
      expect(h.refusedRows).toEqual([
        { table: 'points', rows: [[0xff]] },
        { table: 'points', rows: [[0xff]] },
      ]);
      expect(h.stored).toEqual([['points', 6]]);
      // The whole batch went first as the workers encoded it; only its parts are plain rows.
      expect(h.calls[0]).toEqual({ body: [1, 2, 0xff, 3, 4, 0xff, 5, 6], plain: false });
      expect(h.calls.slice(1).every((c) => c.plain)).toBe(true);
      expect(h.retries).toEqual([]);
    });

    it('stores no row after a refused one until its dead letter is durable, and resolves the writes after (their offsets commit after the letters)', async () => {
      let release!: () => void;
      const h = picky({ refused: () => new Promise<void>((resolve) => (release = resolve)) });
      let done = false;
      const w = h.b.write('points', body(0xff, 1), 10).then(() => (done = true));
      await vi.advanceTimersByTimeAsync(10);
      // A replay skips every point up to the partition's mark: the row after the refused one must
      // not raise the mark before the refused one is set aside.
      expect(h.storedBytes).toEqual([]);
      expect(done).toBe(false);
      release();
      await w;
      expect(h.storedBytes).toEqual([1]);
      expect(done).toBe(true);
      await h.b.close();
    });

    it('fails the batch (not the rows alone) when the refused rows cannot be set aside', async () => {
      const h = picky({ refused: () => Promise.reject(new Error('dead-letter topic gone')) });
      const w = h.b.write('points', body(0xff, 1), 10);
      await expect(w).rejects.toThrow('dead-letter topic gone');
      await h.b.close();
    });

    it('retries a part that fails for a reason of the server (retryable) and does not split it for that', async () => {
      let downOnce = true;
      const h = picky({
        insert: async (_table, b, plain) => {
          if (concat(b).includes(0xff)) throw refusal();
          if (plain && downOnce) {
            downOnce = false;
            throw new VigilError('VIGIL_ERR_CLICKHOUSE_UNAVAILABLE', 'connection reset', { retryable: true });
          }
          h.storedBytes.push(...concat(b));
        },
      });
      await Promise.all([h.b.write('points', body(1, 2, 3, 0xff), 10), h.b.close()]);
      expect(h.storedBytes).toEqual([1, 2, 3]);
      expect(h.retries).toHaveLength(1);
      expect(h.refusedRows).toEqual([{ table: 'points', rows: [[0xff]] }]);
    });

    it('refuses a lone row without another insert', async () => {
      const h = picky();
      await Promise.all([h.b.write('anomalies', body(0xff), 1), h.b.close()]);
      expect(h.calls).toHaveLength(1);
      expect(h.refusedRows).toEqual([{ table: 'anomalies', rows: [[0xff]] }]);
      expect(h.stored).toEqual([['anomalies', 0]]);
    });
  });
});

