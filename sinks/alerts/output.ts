import { VigilError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { redactUrls } from '../../core/redact.js';

/**
 * What the alert outputs (Alertmanager, webhook) share: a bounded queue in which resolved alerts
 * outlive firing ones, batching into one JSON POST, retries with exponential backoff and jitter,
 * a flush with a deadline on close, and the stats callbacks the caller turns into counters.
 */

/**
 * Codes of failed POSTs. They are not in core/errors.ts yet; until they are, OutputSendError
 * carries them with the same shape as VigilError (`code`, `retryable`, `cause`).
 */
export type OutputErrorCode =
  | 'VIGIL_ERR_ALERTMANAGER_SEND'
  | 'VIGIL_ERR_ALERTMANAGER_REJECTED'
  | 'VIGIL_ERR_WEBHOOK_SEND'
  | 'VIGIL_ERR_WEBHOOK_REJECTED';

/** Why events were given up on (a low-cardinality metric label). */
export type DropReason =
  /** The queue held maxQueue events: the oldest firing one (or, if all are resolved, the oldest) went. */
  | 'queue_full'
  /** The receiver answered 4xx (not 408/429): the request would fail the same way again. */
  | 'rejected'
  /** maxAttempts failed POSTs. */
  | 'max_attempts'
  /** Still queued when close() reached its deadline, or sent after close(). */
  | 'shutdown'
  /** The event could not be encoded as JSON (e.g. a BigInt or a cycle in `explanation`). */
  | 'invalid'
  /** Alertmanager only: delivered once, but not re-sent because the output already tracks maxQueue alerts. */
  | 'untracked';

/** Counters the caller wires to prom-client (e.g. vigil_sink_errors_total{sink, code}). */
export interface OutputStats {
  /** `n` events acknowledged by the receiver (one successful POST). */
  onSent(n: number): void;
  /** One failed POST, retried or not. */
  onFailed(code: OutputErrorCode): void;
  /** `n` events given up on. */
  onDropped(n: number, reason: DropReason): void;
}

const NO_STATS: OutputStats = { onSent: () => undefined, onFailed: () => undefined, onDropped: () => undefined };

export class OutputSendError extends Error {
  readonly code: OutputErrorCode;
  readonly retryable: boolean;
  /** HTTP status, when the receiver answered. */
  readonly status: number | undefined;
  /** From a Retry-After header (429, 503). */
  readonly retryAfterMs: number | undefined;

  constructor(code: OutputErrorCode, message: string, options: { cause?: unknown; retryable: boolean; status?: number; retryAfterMs?: number }) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OutputSendError';
    this.code = code;
    this.retryable = options.retryable;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface RetryOptions {
  /** Delay before the first retry; doubled per consecutive failure. Default 500. */
  initialMs?: number;
  /** Cap of the delay (also of a Retry-After the receiver asks for). Default 30000. */
  maxMs?: number;
}

/** Options both outputs take; each documents its own defaults for maxBatch. */
export interface AlertsOutputOptions {
  /** Receiver URL (http or https). */
  url: string;
  /** Extra request headers; they win over the authorization below. Default none. */
  headers?: Record<string, string>;
  /** Sent as `Authorization: Bearer …`; without it, user info in `url` is sent as basic auth. */
  bearerToken?: string;
  /** Per-request timeout. Default 5000. */
  timeoutMs?: number;
  /** Events held (queued and in flight). Default 10000. */
  maxQueue?: number;
  /** Events per POST. */
  maxBatch?: number;
  retry?: RetryOptions;
  /** How long close() keeps trying to deliver what is queued. Default 5000. */
  closeTimeoutMs?: number;
  stats?: OutputStats;
  logger?: Logger;
}

export const OUTPUT_DEFAULTS = {
  timeoutMs: 5000,
  maxQueue: 10_000,
  retry: { initialMs: 500, maxMs: 30_000 },
  closeTimeoutMs: 5000,
} as const;

/** An integer option >= `min` (default 1), or its default; VIGIL_ERR_CONFIG_INVALID names the key. */
export function optionInt(key: string, value: number | undefined, fallback: number, min = 1): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min) throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `${key} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/**
 * The receiver URL without user info, and the basic-auth header that user info stands for: fetch()
 * refuses a URL carrying credentials, and a URL is what log lines and errors show.
 */
function httpUrl(key: string, value: string): { url: URL; authorization?: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch (err) {
    throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `${key} is not a URL: ${JSON.stringify(redactUrls(value))}`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `${key} must be http or https, got ${url.protocol}`);
  if (!url.username && !url.password) return { url };
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  url.username = '';
  url.password = '';
  return { url, authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}

export interface RetryingBatchSenderOptions<T> {
  url: URL;
  headers: Record<string, string>;
  timeoutMs: number;
  maxQueue: number;
  maxBatch: number;
  /** 0: retry while the queue has room (the bound is kept by dropping the oldest firing events). */
  maxAttempts: number;
  retry: { initialMs: number; maxMs: number };
  closeTimeoutMs: number;
  codes: { send: OutputErrorCode; rejected: OutputErrorCode };
  stats: OutputStats;
  log: Logger;
  /** Resolved alerts: kept over the others when the queue is full. */
  isPriority(item: T): boolean;
  /** Items with the same key replace each other while queued (Alertmanager takes states, not events). */
  key: ((item: T) => string) | undefined;
  /** The request body; called per attempt, so time-dependent fields are fresh on retries. */
  encode(items: readonly T[]): string;
}

interface Entry<T> {
  readonly seq: number;
  item: T;
  priority: boolean;
  readonly key: string | undefined;
  attempts: number;
}

/** What the pump does next: the next batch ('sent', 'dropped') or the same one after a backoff ('retry'). */
type Outcome = 'sent' | 'retry' | 'dropped';

/**
 * One POST at a time from the head of the queue. An entry leaves the queue only when the receiver
 * acknowledged it, rejected it, it ran out of attempts, or it was evicted for room, so the queue
 * length (in flight included) never exceeds maxQueue.
 */
export class RetryingBatchSender<T> {
  private readonly o: RetryingBatchSenderOptions<T>;
  /** Every held entry in arrival order (Map iteration order), the ones in flight first. */
  private readonly queue = new Map<number, Entry<T>>();
  /** The non-priority (firing) subset, oldest first: what makes room when the queue is full. */
  private readonly droppable = new Map<number, Entry<T>>();
  private readonly byKey = new Map<string, Entry<T>>();
  private seq = 0;
  private state: 'idle' | 'running' | 'closing' | 'closed' = 'idle';
  private pumping: Promise<void> | undefined;
  private scheduled = false;
  /** Consecutive retryable failures: the backoff exponent. */
  private failures = 0;
  private retryAfterMs: number | undefined;
  private lastOk = true;
  private full = false;
  private wake: (() => void) | undefined;
  private inFlight: AbortController | undefined;
  private idleWaiters: (() => void)[] = [];
  private closing: Promise<void> | undefined;

  constructor(o: RetryingBatchSenderOptions<T>) {
    this.o = o;
  }

  /** Events held: queued plus in flight. */
  get size(): number {
    return this.queue.size;
  }

  /** False from a failed or rejected POST until the next acknowledged one. */
  get healthy(): boolean {
    return this.lastOk && this.state !== 'closed';
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.schedule();
  }

  /** Never throws and never waits: the pipeline must not stall on a slow receiver. */
  enqueue(item: T): void {
    if (this.state === 'closed') {
      this.o.stats.onDropped(1, 'shutdown');
      return;
    }
    const priority = this.o.isPriority(item);
    const key = this.o.key?.(item);
    const queued = key === undefined ? undefined : this.byKey.get(key);
    if (queued) {
      // Replaced in place: it keeps its turn, and a copy in flight is not taken for the new state.
      queued.item = item;
      queued.attempts = 0;
      if (priority !== queued.priority) {
        queued.priority = priority;
        if (priority) this.droppable.delete(queued.seq);
        else this.droppable.set(queued.seq, queued);
      }
    } else {
      if (this.queue.size >= this.o.maxQueue && !this.makeRoom(priority)) return;
      const entry: Entry<T> = { seq: this.seq++, item, priority, key, attempts: 0 };
      this.queue.set(entry.seq, entry);
      if (!priority) this.droppable.set(entry.seq, entry);
      if (key !== undefined) this.byKey.set(key, entry);
    }
    this.schedule();
  }

  /**
   * Delivers what is held until the queue is empty or `timeoutMs` passed; then aborts the request
   * in flight and counts the rest as dropped ('shutdown').
   */
  close(timeoutMs = this.o.closeTimeoutMs): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    this.state = 'closing';
    this.schedule();
    this.wake?.();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    this.state = 'closed';
    this.inFlight?.abort(new Error('closed'));
    this.wake?.();
    await this.pumping;
    if (this.queue.size > 0) {
      this.o.log.warn({ dropped: this.queue.size, timeoutMs }, 'alerts not delivered before the close deadline');
      this.o.stats.onDropped(this.queue.size, 'shutdown');
      this.queue.clear();
      this.full = false;
      this.droppable.clear();
      this.byKey.clear();
    }
    this.notifyIdle();
  }

  /** Resolves when nothing is held or being sent. */
  idle(): Promise<void> {
    if (this.queue.size === 0 && !this.pumping && !this.scheduled) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Returns false when the new item itself is the one to drop. */
  private makeRoom(priority: boolean): boolean {
    if (!this.full) {
      this.full = true;
      this.o.log.warn({ maxQueue: this.o.maxQueue }, 'alert queue full: dropping the oldest firing alerts');
    }
    this.o.stats.onDropped(1, 'queue_full');
    const victim = this.droppable.values().next().value ?? (priority ? this.queue.values().next().value : undefined);
    if (!victim) return false;
    this.remove(victim);
    return true;
  }

  private remove(entry: Entry<T>): void {
    this.queue.delete(entry.seq);
    this.droppable.delete(entry.seq);
    if (entry.key !== undefined && this.byKey.get(entry.key) === entry) this.byKey.delete(entry.key);
  }

  private schedule(): void {
    if (this.state === 'idle' || this.state === 'closed' || this.pumping || this.scheduled || this.queue.size === 0) return;
    this.scheduled = true;
    // One turn of the event loop lets the events of one pipeline batch go out in one POST.
    setImmediate(() => {
      this.scheduled = false;
      this.pumping = this.pump().finally(() => {
        this.pumping = undefined;
        if (this.queue.size === 0) this.notifyIdle();
        else this.schedule();
      });
    });
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** A method, not a property read, so TypeScript does not keep its narrowing across an await. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private async pump(): Promise<void> {
    while (this.queue.size > 0 && !this.isClosed()) {
      const batch: { entry: Entry<T>; item: T }[] = [];
      for (const entry of this.queue.values()) {
        if (batch.length === this.o.maxBatch) break;
        batch.push({ entry, item: entry.item });
      }
      const outcome = await this.attempt(batch);
      if (outcome === 'retry' && !this.isClosed()) await this.sleep(this.backoffMs());
    }
  }

  private async attempt(batch: { entry: Entry<T>; item: T }[]): Promise<Outcome> {
    let error: OutputSendError | undefined;
    try {
      error = await this.post(this.o.encode(batch.map((b) => b.item)));
    } catch (err) {
      // encode() threw: nothing in this batch can ever be sent.
      this.o.log.error({ err }, 'could not encode alerts');
      return this.settle(batch, 'invalid');
    }
    // Aborted by close(): what is left is counted once, as 'shutdown'.
    if (error && this.isClosed()) return 'retry';
    if (!error) {
      if (!this.lastOk) this.o.log.info({ failures: this.failures }, 'alert receiver reachable again');
      this.lastOk = true;
      this.failures = 0;
      return this.settle(batch, 'sent');
    }
    this.o.stats.onFailed(error.code);
    const wasOk = this.lastOk;
    this.lastOk = false;
    if (!error.retryable) {
      this.o.log.error({ err: error, dropped: batch.length }, 'alert receiver rejected a batch; not retried');
      return this.settle(batch, 'rejected');
    }
    // One warning per outage; the retries of a receiver that stays down go to debug.
    if (wasOk) this.o.log.warn({ err: error }, 'could not deliver alerts; retrying');
    else this.o.log.debug({ err: error, failures: this.failures }, 'could not deliver alerts; retrying');
    this.failures++;
    this.retryAfterMs = error.retryAfterMs;
    if (this.o.maxAttempts > 0) {
      let dropped = 0;
      for (const { entry, item } of batch) {
        if (this.queue.get(entry.seq) === entry && entry.item === item && ++entry.attempts >= this.o.maxAttempts) {
          this.remove(entry);
          dropped++;
        }
      }
      if (dropped > 0) {
        this.o.log.error({ dropped, maxAttempts: this.o.maxAttempts }, 'alerts dropped after maxAttempts');
        this.o.stats.onDropped(dropped, 'max_attempts');
      }
    }
    return 'retry';
  }

  /** Removes the batch's entries that still hold what was sent (an entry replaced meanwhile stays). */
  private settle(batch: { entry: Entry<T>; item: T }[], how: 'sent' | 'rejected' | 'invalid'): Outcome {
    let n = 0;
    for (const { entry, item } of batch) {
      if (this.queue.get(entry.seq) !== entry || entry.item !== item) continue;
      this.remove(entry);
      n++;
    }
    if (this.full && this.queue.size < this.o.maxQueue) this.full = false;
    if (how === 'sent') {
      if (n > 0) this.o.stats.onSent(n);
      return 'sent';
    }
    if (n > 0) this.o.stats.onDropped(n, how);
    return 'dropped';
  }

  /** Equal jitter: half the exponential delay fixed, half random, so retries spread out but never hammer. */
  private backoffMs(): number {
    const { initialMs, maxMs } = this.o.retry;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.failures - 1, 30));
    const delay = base / 2 + Math.random() * (base / 2);
    return Math.max(delay, Math.min(this.retryAfterMs ?? 0, maxMs));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      // Unref'd: a pending retry does not keep the process alive; close() is what waits.
      const timer = setTimeout(done, ms).unref();
      this.wake = done;
    });
  }

  /** One POST; resolves to the failure (never rejects for HTTP or network errors). */
  private async post(body: string): Promise<OutputSendError | undefined> {
    const { url, timeoutMs, codes } = this.o;
    const ac = new AbortController();
    this.inFlight = ac;
    const timer = setTimeout(() => ac.abort(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      // A redirect followed would turn the POST into a GET on 301/302: it is answered as a rejection instead.
      const res = await fetch(url, { method: 'POST', headers: this.o.headers, body, signal: ac.signal, redirect: 'manual' });
      // Read to the end so the keep-alive connection is reused; the text only matters on errors.
      const text = await res.text();
      if (res.ok) return undefined;
      const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
      return new OutputSendError(retryable ? codes.send : codes.rejected, `${url.origin}${url.pathname} answered ${res.status}: ${text.slice(0, 300)}`, {
        retryable,
        status: res.status,
        retryAfterMs: retryAfterMs(res.headers.get('retry-after')),
      });
    } catch (err) {
      const reason = ac.signal.aborted ? (ac.signal.reason as Error).message : causeMessage(err);
      return new OutputSendError(codes.send, `${url.origin}${url.pathname}: ${reason}`, { cause: err, retryable: true });
    } finally {
      clearTimeout(timer);
      this.inFlight = undefined;
    }
  }
}

/** fetch() says only "fetch failed"; the cause says ECONNREFUSED and the like. */
function causeMessage(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

function retryAfterMs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** send() must never throw into the pipeline, not even through a stats callback. */
function guarded(stats: OutputStats, log: Logger): OutputStats {
  const call = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      log.error({ err }, 'alert output stats callback threw');
    }
  };
  return {
    onSent: (n) => call(() => stats.onSent(n)),
    onFailed: (code) => call(() => stats.onFailed(code)),
    onDropped: (n, reason) => call(() => stats.onDropped(n, reason)),
  };
}

/** Per-output settings for the shared base class. */
export interface OutputSpec<T> {
  /** Where the POST goes, from the validated base URL. */
  endpoint(url: URL): URL;
  maxBatch: number;
  maxAttempts: number;
  codes: RetryingBatchSenderOptions<T>['codes'];
  isPriority: RetryingBatchSenderOptions<T>['isPriority'];
  key?: RetryingBatchSenderOptions<T>['key'];
  encode: RetryingBatchSenderOptions<T>['encode'];
}

/** The lifecycle both outputs expose: `start()`, `close()`, `healthy`, `queued`. */
export abstract class AlertsOutput<T> {
  protected readonly sender: RetryingBatchSender<T>;
  protected readonly stats: OutputStats;
  protected readonly log: Logger;
  protected readonly maxQueue: number;

  protected constructor(name: string, options: AlertsOutputOptions, spec: OutputSpec<T>, log: Logger) {
    this.stats = guarded(options.stats ?? NO_STATS, log);
    this.log = log;
    const initialMs = optionInt(`${name}.retry.initialMs`, options.retry?.initialMs, OUTPUT_DEFAULTS.retry.initialMs);
    const maxQueue = optionInt(`${name}.maxQueue`, options.maxQueue, OUTPUT_DEFAULTS.maxQueue);
    this.maxQueue = maxQueue;
    const { url, authorization } = httpUrl(`${name}.url`, options.url);
    const auth = options.bearerToken ? `Bearer ${options.bearerToken}` : authorization;
    this.sender = new RetryingBatchSender<T>({
      url: spec.endpoint(url),
      // Lower-cased so that a caller's `Content-Type` replaces ours instead of joining it.
      headers: {
        'content-type': 'application/json',
        'user-agent': 'vigil',
        ...(auth ? { authorization: auth } : {}),
        ...Object.fromEntries(Object.entries(options.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
      },
      timeoutMs: optionInt(`${name}.timeoutMs`, options.timeoutMs, OUTPUT_DEFAULTS.timeoutMs),
      maxQueue,
      maxBatch: Math.min(maxQueue, optionInt(`${name}.maxBatch`, options.maxBatch, spec.maxBatch)),
      maxAttempts: optionInt(`${name}.maxAttempts`, spec.maxAttempts, 0, 0),
      retry: { initialMs, maxMs: optionInt(`${name}.retry.maxMs`, options.retry?.maxMs, OUTPUT_DEFAULTS.retry.maxMs, initialMs) },
      closeTimeoutMs: optionInt(`${name}.closeTimeoutMs`, options.closeTimeoutMs, OUTPUT_DEFAULTS.closeTimeoutMs, 0),
      codes: spec.codes,
      stats: this.stats,
      log,
      isPriority: spec.isPriority,
      key: spec.key,
      encode: spec.encode,
    });
  }

  /** False from a failed or rejected POST until the next acknowledged one, and after close(). */
  get healthy(): boolean {
    return this.sender.healthy;
  }

  /** Events held: queued plus in flight (at most maxQueue). */
  get queued(): number {
    return this.sender.size;
  }

  /** Starts sending; events given to send() before are queued. */
  start(): void {
    this.sender.start();
  }

  /** Resolves when nothing is held or being sent (tests, orderly shutdown). */
  idle(): Promise<void> {
    return this.sender.idle();
  }

  /** Delivers what is queued within `timeoutMs` (default closeTimeoutMs), then gives up on the rest. */
  close(timeoutMs?: number): Promise<void> {
    return this.sender.close(timeoutMs);
  }
}
