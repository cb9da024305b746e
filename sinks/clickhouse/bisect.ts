import { concat } from '../../core/bytes.js';

/** A row the server refused on its own, with the server's error. */
export interface RefusedRow {
  row: Uint8Array;
  error: Error;
}

export interface BisectResult {
  refused: RefusedRow[];
  /** Inserts sent (what the split cost). */
  inserts: number;
}

/**
 * Stores `rows` (plain RowBinary rows, in order) after their insert as one was refused with
 * `error`, an error that blames the rows (`isRefusal`): the rows are halved, each half inserted, and a refused half halved again, down to
 * single rows, which are refused on their own. Order is kept (left half before right). For b bad
 * rows among n it costs at most 2·b·log2(n) inserts (2n−1 when every row is bad). Any other error
 * (retries exhausted at the deadline) is thrown: what was stored stays stored, and the caller
 * fails the whole batch (a replay stores it again; the documented views hide the repeat).
 *
 * `setAside` makes refused rows durable elsewhere (dead letters): each run of refused rows is
 * handed to it, and awaited, before any later row is inserted and at the end. So every row before
 * the last one stored is stored or set aside: a replay that skips the stored points (their marks)
 * skips no row that is neither.
 */
export async function bisect(
  rows: readonly Uint8Array[],
  error: Error,
  insert: (body: Uint8Array) => Promise<void>,
  isRefusal: (err: unknown) => boolean,
  setAside: (refused: RefusedRow[]) => Promise<void> = async () => undefined,
): Promise<BisectResult> {
  const result: BisectResult = { refused: [], inserts: 0 };
  let pending: RefusedRow[] = [];
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const run = pending;
    pending = [];
    await setAside(run);
  };
  const refuse = (row: RefusedRow): void => {
    result.refused.push(row);
    pending.push(row);
  };
  const halve = async (lo: number, hi: number): Promise<void> => {
    const mid = lo + Math.floor((hi - lo) / 2);
    await store(lo, mid);
    await store(mid, hi);
  };
  const store = async (lo: number, hi: number): Promise<void> => {
    await flush();
    result.inserts++;
    try {
      await insert(concat(rows.slice(lo, hi)));
    } catch (err) {
      if (!isRefusal(err)) throw err;
      if (hi - lo === 1) refuse({ row: rows[lo] as Uint8Array, error: err as Error });
      else await halve(lo, hi);
    }
  };
  if (rows.length === 1) refuse({ row: rows[0] as Uint8Array, error });
  else if (rows.length > 1) await halve(0, rows.length);
  await flush();
  return result;
}
