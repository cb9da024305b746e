import { concat } from '../../core/bytes.js';
import { isVigilError } from '../../core/errors.js';
import { retry } from '../../core/retry.js';
import { bisect, type RefusedRow } from './bisect.js';
import type { InsertTable } from './schema.js';
import { isAfter, type PointMark } from './writer.js';

/**
 * The ClickHouse output as the pipeline writes to it: `write(table, body, rows)` takes one
 * worker-encoded RowBinary body and resolves when it is stored. Bodies are grouped into inserts of
 * up to `maxRows` rows, sent at most every `lingerMs` (sooner when full), one insert in flight, in
 * arrival order; per flush, tables go in INSERT_ORDER, so a derived row is never stored before
 * what it derives from. A failed insert is retried with backoff until it succeeds or the deadline
 * passes; then it and everything queued behind it reject (nothing is retried forever).
 *
 * An insert refused for its rows (the writer's VIGIL_ERR_CLICKHOUSE_REJECTED) is split into its rows and bisected (bisect.ts): the rows the
 * server takes are stored, the ones it refuses are handed to `refused` (dead letters), and the
 * batch resolves once both are durable.
 */
export const INSERT_ORDER: readonly InsertTable[] = ['points', 'rollups', 'anomalies', 'forecasts', 'detector_state'];

export interface BatcherOptions {
  maxRows: number;
  lingerMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /**
   * Sends one insert body, given as the chunks it is made of (the writer: ClickHouseSink.insert
   * streams them, so the bodies of a batch are never copied into one): `plain` false for bodies
   * as the workers encoded them (maybe compressed), true for the plain rows of a split insert.
   */
  insert(table: InsertTable, body: readonly Uint8Array[], plain: boolean): Promise<void>;
  /** The plain RowBinary rows of a worker-encoded body (rows.ts splitRows). */
  rows(table: InsertTable, body: Uint8Array): Uint8Array[];
  /** Sets aside the rows ClickHouse refused (dead letters); resolves when that is durable. */
  refused(table: InsertTable, rows: readonly RefusedRow[]): Promise<void>;
  /** Wall time after which a failing insert is given up (Infinity: never). */
  deadline(): number;
  onRetry(err: unknown, retryInMs: number): void;
  onStored(table: InsertTable, rows: number, seconds: number): void;
  /**
   * Before a points insert is sent again after a failure without an answer: whether its first
   * attempt landed after all (the marks of its partitions reached its last points), so that it
   * is not stored twice. Absent: always sent again.
   */
  landed?(marks: ReadonlyMap<string, PointMark>): Promise<boolean>;
}

/** A points body's source partition (`topic/partition`) and last point. */
export interface BodyMark {
  key: string;
  point: PointMark;
}

interface Pending {
  table: InsertTable;
  /** The body's chunks in order (one, or the shards' parts of a task). */
  body: readonly Uint8Array[];
  rows: number;
  /** The consumer group generation the body was made in (withdraw). */
  generation: number;
  /** A points body's last point: its source partition's mark once stored (landed). */
  mark: BodyMark | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class InsertBatcher {
  private queue: Pending[] = [];
  private rows = 0;
  private firstAt = 0;
  private wake: (() => void) | undefined;
  private closing = false;
  /** Set by drain(): every queued body is due at once. */
  private urgent = false;
  private readonly loop: Promise<void>;
  /** The insert being sent (resolved when none is). */
  private sending: Promise<unknown> = Promise.resolve();
  /** The generation of the last withdraw: points bodies of earlier ones are not sent again after a failure. */
  private generation = 0;

  constructor(private readonly o: BatcherOptions) {
    this.loop = this.run();
  }

  /** Bodies waiting for their insert (the one in flight excluded). */
  get pending(): number {
    return this.queue.length;
  }

  /** `body`: one RowBinary body, or the chunks one is made of, in order. */
  write(table: InsertTable, body: Uint8Array | readonly Uint8Array[], rows: number, generation = 0, mark?: BodyMark): Promise<void> {
    if (this.closing) return Promise.reject(new Error('the ClickHouse batcher is closed'));
    return new Promise<void>((resolve, reject) => {
      if (this.queue.length === 0) this.firstAt = performance.now();
      this.queue.push({ table, body: body instanceof Uint8Array ? [body] : body, rows, generation, mark, resolve, reject });
      this.rows += rows;
      if (this.rows >= this.o.maxRows) this.wake?.();
    });
  }

  /**
   * Takes back the queued, unsent bodies of `table` written in a generation before `generation`
   * (each resolves unsent: the consumer group's next owner of their partition writes them), then
   * waits for the insert in flight, so that nothing of an earlier generation lands later.
   */
  async withdraw(table: InsertTable, generation: number): Promise<number> {
    this.generation = Math.max(this.generation, generation);
    const kept: Pending[] = [];
    let withdrawn = 0;
    for (const p of this.queue) {
      if (p.table === table && p.generation < generation) {
        this.rows -= p.rows;
        withdrawn += p.rows;
        p.resolve();
      } else kept.push(p);
    }
    this.queue = kept;
    await this.sending.catch(() => undefined);
    return withdrawn;
  }

  /** From now on, sends what is queued without waiting for the linger (a shutdown drain). */
  drain(): void {
    this.urgent = true;
    this.wake?.();
  }

  /** Stores what is queued (until the deadline), then stops; what could not be stored rejects. */
  async close(): Promise<void> {
    this.closing = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { maxRows, lingerMs } = this.o;
    while (!(this.closing && this.queue.length === 0)) {
      const age = performance.now() - this.firstAt;
      const due = this.queue.length > 0 && (this.rows >= maxRows || age >= lingerMs || this.urgent || this.closing);
      if (!due) {
        const wait = this.queue.length > 0 ? Math.max(1, lingerMs - age) : lingerMs || 50;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.wake = () => (clearTimeout(t), resolve());
        });
        this.wake = undefined;
        continue;
      }
      let rows = 0;
      let take = 0;
      while (take < this.queue.length && (take === 0 || rows + (this.queue[take] as Pending).rows <= maxRows)) {
        rows += (this.queue[take] as Pending).rows;
        take++;
      }
      const batch = this.queue.splice(0, take);
      this.rows -= rows;
      if (this.queue.length > 0) this.firstAt = performance.now();
      try {
        const sent = this.send(batch);
        this.sending = sent;
        await sent;
      } catch (err) {
        for (const b of [...batch, ...this.queue.splice(0)]) b.reject(err as Error);
        this.rows = 0;
        if (this.closing) break;
        continue;
      }
      for (const b of batch) b.resolve();
    }
  }

  private async send(batch: readonly Pending[]): Promise<void> {
    for (const table of INSERT_ORDER) {
      const parts = batch.filter((b) => b.table === table);
      if (parts.length === 0) continue;
      const body = parts.flatMap((b) => b.body);
      const rows = parts.reduce((n, b) => n + b.rows, 0);
      const t0 = performance.now();
      let refused: RefusedRow[] = [];
      const landed = this.o.landed;
      const marks = table === 'points' && landed ? lastPoints(parts) : null;
      // A points insert of an earlier generation that failed is not sent again: the partitions'
      // owners now write those points from their marks, and a late copy would be a duplicate.
      const settled = async (): Promise<boolean> => (table === 'points' && parts.every((b) => b.generation < this.generation)) || (marks !== null && marks.size > 0 && (await (landed as NonNullable<typeof landed>)(marks)));
      try {
        await this.retried(() => this.o.insert(table, body, false), settled);
      } catch (err) {
        if (!isRefusal(err)) throw err;
        // Each run of refused rows is set aside before any later row is stored (bisect.ts).
        const split = await bisect(this.o.rows(table, concat(body)), err, (part) => this.retried(() => this.o.insert(table, [part], true)), isRefusal, (rows) => this.o.refused(table, rows));
        refused = split.refused;
      }
      this.o.onStored(table, rows - refused.length, (performance.now() - t0) / 1000);
    }
  }

  /**
   * Retries what can pass later (with backoff, until the deadline); a refusal is thrown at once.
   * With `settled`, each attempt after the first asks it first, and stops when it says the insert
   * needs sending no more (it landed after all, or is no longer this instance's to write).
   */
  private retried(op: () => Promise<void>, settled?: () => Promise<boolean>): Promise<void> {
    let tried = false;
    const attempt = async (): Promise<void> => {
      if (tried && settled && (await settled())) return;
      tried = true;
      await op();
    };
    return retry(attempt, {
      initialMs: this.o.retryInitialMs,
      maxMs: this.o.retryMaxMs,
      deadline: this.o.deadline,
      retryable: (err) => !isRefusal(err),
      onRetry: this.o.onRetry,
    });
  }
}

/** Per source partition, the furthest last point of a batch's points bodies. */
function lastPoints(parts: readonly Pending[]): Map<string, PointMark> {
  const marks = new Map<string, PointMark>();
  for (const { mark } of parts) {
    if (!mark || mark.point[0] < 0) continue;
    const seen = marks.get(mark.key);
    if (!seen || isAfter(mark.point, seen)) marks.set(mark.key, mark.point);
  }
  return marks;
}

/** An insert refused for its rows (the writer's code for what isRowRejection recognises). */
function isRefusal(err: unknown): err is Error {
  return isVigilError(err, 'VIGIL_ERR_CLICKHOUSE_REJECTED');
}
