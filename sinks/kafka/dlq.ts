import type { IHeaders, KafkaMessage } from 'kafkajs';
import { chunks } from '../../core/bytes.js';
import { VigilError, type ErrorCode } from '../../core/errors.js';
import { isPermanentProduceError } from './errors.js';
import { TopicProducer } from './producer.js';
import type { IngestReject } from '../../workers/ingest-task.js';
import { MAX_REJECTED_BYTES } from '../../workers/rejects.js';
import type { RefusedPoints } from '../../workers/shard-task.js';

/**
 * Dead letters (DESIGN.md §3): one per bad message. Its value is the message's bad lines or
 * elements, newline-joined (again valid line protocol or newline-delimited JSON), or the whole
 * message when the whole message is bad; its headers are the original key and headers plus
 * `vigil-error-code`, `vigil-error-reason` (the first reasons), `vigil-error-count` (bad items),
 * `vigil-source-topic`, `-partition`, `-offset` and, where it applies, `vigil-source-line` or
 * `vigil-source-element` (the first bad one). Produced with acks=all before the source offset is
 * committed; a retry after a failure may produce a dead letter twice (at-least-once).
 *
 * Sized to fit the broker: a value above MAX_DEAD_LETTER_BYTES is cut (`vigil-original-size`);
 * original headers above MAX_ORIGINAL_HEADER_BYTES and a key above MAX_KEY_BYTES are left out
 * (`vigil-headers-dropped`, `vigil-key-dropped` give their sizes). A letter the broker still refuses
 * for its size or content (a topic with a smaller `max.message.bytes`) is cut to
 * MIN_DEAD_LETTER_BYTES without its original headers and key, once; refused again, it is set
 * aside (counted and logged by the caller), never retried forever.
 */
export interface DeadLetter {
  key: Buffer | null;
  value: Buffer;
  headers: IHeaders;
}

export const DLQ_HEADERS = {
  code: 'vigil-error-code',
  reason: 'vigil-error-reason',
  topic: 'vigil-source-topic',
  partition: 'vigil-source-partition',
  offset: 'vigil-source-offset',
  line: 'vigil-source-line',
  element: 'vigil-source-element',
  originalSize: 'vigil-original-size',
  count: 'vigil-error-count',
  valueItems: 'vigil-value-items',
  headersDropped: 'vigil-headers-dropped',
  keyDropped: 'vigil-key-dropped',
  cut: 'vigil-cut',
  rawStored: 'vigil-raw-stored',
  /** The tenant whose own limit refused the points (VIGIL_ERR_LIMIT_TENANT_SERIES). */
  tenant: 'vigil-tenant',
  table: 'vigil-clickhouse-table',
} as const;

/** Below Kafka's default max.message.bytes (1 MiB) with room for key and headers; the workers fold bad items up to it. */
export const MAX_DEAD_LETTER_BYTES = MAX_REJECTED_BYTES;
/** Original headers above this many bytes (keys and values) are left out of a letter. */
export const MAX_ORIGINAL_HEADER_BYTES = 16 * 1024;
/** A key above this many bytes is left out of a letter. */
export const MAX_KEY_BYTES = 16 * 1024;
/** What is left of a letter the broker refused: its cause, its first bytes. */
export const MIN_DEAD_LETTER_BYTES = 1024;
/** Records per produce request are grouped up to about this many bytes. */
const MAX_REQUEST_BYTES = 256 * 1024;

/**
 * What a dead letter is made from: a bad message's folded rejects (workers/rejects.ts), or the
 * main thread's own (a message too large), which may carry any code.
 */
export type Rejected = Omit<IngestReject, 'message' | 'code'> & { code: ErrorCode };

function headerBytes(headers: IHeaders): number {
  let n = 0;
  for (const [k, v] of Object.entries(headers)) {
    n += Buffer.byteLength(k);
    for (const x of Array.isArray(v) ? v : [v]) if (x !== undefined) n += typeof x === 'string' ? Buffer.byteLength(x) : x.length;
  }
  return n;
}

/** The dead letter for one bad message (before fitDeadLetter cuts its value). */
export function deadLetterFor(message: Pick<KafkaMessage, 'key' | 'value' | 'headers' | 'offset'>, r: Rejected, topic: string, partition: number): DeadLetter {
  const original = message.headers ?? {};
  const originalBytes = headerBytes(original);
  const keyBytes = message.key?.length ?? 0;
  const headers: IHeaders = {
    ...(originalBytes <= MAX_ORIGINAL_HEADER_BYTES ? original : {}),
    [DLQ_HEADERS.code]: r.code,
    [DLQ_HEADERS.reason]: r.reason,
    [DLQ_HEADERS.count]: String(r.count),
    [DLQ_HEADERS.topic]: topic,
    [DLQ_HEADERS.partition]: String(partition),
    [DLQ_HEADERS.offset]: message.offset,
  };
  if (r.line !== undefined) headers[DLQ_HEADERS.line] = String(r.line);
  if (r.element !== undefined) headers[DLQ_HEADERS.element] = String(r.element);
  if (r.bytes && r.items !== undefined && r.items < r.count) headers[DLQ_HEADERS.valueItems] = String(r.items);
  if (originalBytes > MAX_ORIGINAL_HEADER_BYTES) headers[DLQ_HEADERS.headersDropped] = String(originalBytes);
  if (keyBytes > MAX_KEY_BYTES) headers[DLQ_HEADERS.keyDropped] = String(keyBytes);
  const value = r.bytes ? Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength) : (message.value ?? Buffer.alloc(0));
  return { key: keyBytes > MAX_KEY_BYTES ? null : message.key, value, headers };
}

/**
 * The letter for points a shard refused at its series limit: their raw rows are stored, so it is a
 * record of what skipped rollups, scoring and alerting (do not replay it into the same pipeline:
 * the raw rows would be stored twice). Value: the first refused points as JSON lines.
 */
export function cardinalityLetter(refused: RefusedPoints, shard: number, limit: number, topic: string, partition: number): DeadLetter {
  const tenant = refused.tenant;
  return {
    key: null,
    value: Buffer.from(refused.sample),
    headers: {
      [DLQ_HEADERS.code]: tenant === undefined ? 'VIGIL_ERR_LIMIT_CARDINALITY' : 'VIGIL_ERR_LIMIT_TENANT_SERIES',
      [DLQ_HEADERS.reason]:
        tenant === undefined
          ? `shard ${shard} holds its limit of ${limit} series (limits.maxSeriesPerShard): ${refused.points} points of ${refused.series} new series were stored raw but not aggregated, scored or alerted on`
          : `shard ${shard} holds tenant ${JSON.stringify(tenant)}'s limit of ${limit} series (tenants.maxSeriesPerShard): ${refused.points} points of ${refused.series} new series of the tenant were stored raw but not aggregated, scored or alerted on`,
      ...(tenant === undefined ? {} : { [DLQ_HEADERS.tenant]: tenant }),
      [DLQ_HEADERS.count]: String(refused.points),
      [DLQ_HEADERS.topic]: topic,
      [DLQ_HEADERS.partition]: String(partition),
      [DLQ_HEADERS.offset]: String(refused.firstOffset),
      [DLQ_HEADERS.rawStored]: 'true',
    },
  };
}

/** Distinct server messages named in a refused-rows letter's reason. */
const MAX_REASONS = 5;

/**
 * The letter for rows ClickHouse refused (sinks/clickhouse/bisect.ts), one per refused insert:
 * the rows as JSON lines (their columns, tags as an object; as many as fit), the server's
 * distinct messages as the reason, the table, and the source coordinates of the first row that
 * has them (points rows carry their source offset; derived rows only their source partition).
 */
export function refusedRowsLetter(table: string, rows: readonly { row: Record<string, unknown>; error: string }[]): DeadLetter {
  const reasons = [...new Set(rows.map((r) => r.error.slice(0, MIN_DEAD_LETTER_BYTES)))];
  const lines: string[] = [];
  let bytes = 0;
  for (const { row } of rows) {
    const line = JSON.stringify(row);
    const n = Buffer.byteLength(line) + 1;
    if (lines.length > 0 && bytes + n > MAX_DEAD_LETTER_BYTES) break;
    lines.push(line);
    bytes += n;
  }
  const headers: IHeaders = {
    [DLQ_HEADERS.code]: 'VIGIL_ERR_CLICKHOUSE_REJECTED',
    [DLQ_HEADERS.reason]: `ClickHouse refused ${rows.length} row(s) of ${table}: ${reasons.slice(0, MAX_REASONS).join(' | ')}${reasons.length > MAX_REASONS ? ` (+${reasons.length - MAX_REASONS} more)` : ''}`,
    [DLQ_HEADERS.count]: String(rows.length),
    [DLQ_HEADERS.table]: table,
  };
  const source = rows.find((r) => r.row['source_topic'] !== undefined)?.row;
  if (source) {
    headers[DLQ_HEADERS.topic] = String(source['source_topic']);
    if (source['source_partition'] !== undefined) headers[DLQ_HEADERS.partition] = String(source['source_partition']);
    if (source['source_offset'] !== undefined) headers[DLQ_HEADERS.offset] = String(source['source_offset']);
  }
  if (lines.length < rows.length) headers[DLQ_HEADERS.valueItems] = String(lines.length);
  return { key: null, value: Buffer.from(lines.join('\n')), headers };
}

/** Cuts an oversized value and records its original size. */
export function fitDeadLetter(letter: DeadLetter, maxBytes = MAX_DEAD_LETTER_BYTES): DeadLetter {
  if (letter.value.length <= maxBytes) return letter;
  return {
    key: letter.key,
    value: letter.value.subarray(0, maxBytes),
    headers: { ...letter.headers, [DLQ_HEADERS.originalSize]: String(letter.headers[DLQ_HEADERS.originalSize] ?? letter.value.length) },
  };
}

/** The last resort for a letter the broker refused: Vigil's headers and the value's first bytes. */
export function minimalDeadLetter(letter: DeadLetter, why: string): DeadLetter {
  const headers: IHeaders = {};
  for (const name of Object.values(DLQ_HEADERS)) {
    const v = letter.headers[name];
    if (v !== undefined) headers[name] = name === DLQ_HEADERS.reason ? String(v).slice(0, MIN_DEAD_LETTER_BYTES) : v;
  }
  headers[DLQ_HEADERS.cut] = why.slice(0, MIN_DEAD_LETTER_BYTES);
  return fitDeadLetter({ key: null, value: letter.value, headers }, MIN_DEAD_LETTER_BYTES);
}

function approxSize(l: DeadLetter): number {
  return l.value.length + (l.key?.length ?? 0) + 64 + headerBytes(l.headers);
}

/** What a send did with letters the broker refused for good. */
export interface DeadLetterOutcome {
  /** Produced only after being cut to MIN_DEAD_LETTER_BYTES. */
  cut: number;
  /** Refused even then: set aside (the caller counts and logs them). */
  dropped: DeadLetter[];
}

export class DeadLetterProducer extends TopicProducer {
  /**
   * Produces the letters, grouped into requests of about MAX_REQUEST_BYTES. Rejects with a
   * retryable VIGIL_ERR_KAFKA_PRODUCE when the broker is unavailable (the caller retries all of
   * them: at-least-once); a permanent refusal is handled here, letter by letter.
   */
  async send(letters: readonly DeadLetter[]): Promise<DeadLetterOutcome> {
    const outcome: DeadLetterOutcome = { cut: 0, dropped: [] };
    try {
      for (const chunk of chunks(letters.map((l) => fitDeadLetter(l)), approxSize, MAX_REQUEST_BYTES)) await this.produceChunk(chunk, outcome);
    } catch (err) {
      throw new VigilError('VIGIL_ERR_KAFKA_PRODUCE', `producing ${letters.length} dead letters to ${this.topic} failed: ${(err as Error).message}`, {
        cause: err,
        retryable: true,
      });
    }
    return outcome;
  }

  private async produce(letters: readonly DeadLetter[]): Promise<void> {
    await this.producer.send({ topic: this.topic, acks: -1, messages: letters.map((l) => ({ key: l.key, value: l.value, headers: l.headers })) });
  }

  /** A refused request is retried one letter at a time; a refused letter is cut once, then set aside. */
  private async produceChunk(letters: readonly DeadLetter[], outcome: DeadLetterOutcome): Promise<void> {
    try {
      await this.produce(letters);
      return;
    } catch (err) {
      if (!isPermanentProduceError(err)) throw err;
      if (letters.length > 1) {
        for (const letter of letters) await this.produceChunk([letter], outcome);
        return;
      }
      const letter = letters[0] as DeadLetter;
      if (letter.headers[DLQ_HEADERS.cut] !== undefined) {
        outcome.dropped.push(letter);
        return;
      }
      outcome.cut++;
      await this.produceChunk([minimalDeadLetter(letter, `the broker refused the letter: ${(err as Error).message}`)], outcome);
    }
  }
}
