import { KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError, type KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import {
  refusedRowsLetter,
  deadLetterFor,
  DLQ_HEADERS,
  fitDeadLetter,
  MAX_DEAD_LETTER_BYTES,
  MAX_KEY_BYTES,
  MAX_ORIGINAL_HEADER_BYTES,
  MIN_DEAD_LETTER_BYTES,
  minimalDeadLetter,
} from '../../../../sinks/kafka/dlq.js';
import { isPermanentProduceError } from '../../../../sinks/kafka/errors.js';

function message(value: string, headers: KafkaMessage['headers'] = {}, key: Buffer | null = Buffer.from('k')): KafkaMessage {
  return { key, value: Buffer.from(value), headers, offset: '42', timestamp: '0', attributes: 0 } as KafkaMessage;
}

describe('deadLetterFor', () => {
  it('a message with bad lines: the lines as value, the original key and headers, the folded reject in headers', () => {
    const l = deadLetterFor(message('whole', { trace: 'abc' }), { code: 'VIGIL_ERR_DECODE_VALUE', reason: 'line 2: x', count: 3, line: 2, bytes: new TextEncoder().encode('a\nb'), items: 2 }, 'metrics', 5);
    expect(l.key?.toString()).toBe('k');
    expect(l.value.toString()).toBe('a\nb');
    expect(l.headers).toEqual({
      trace: 'abc',
      [DLQ_HEADERS.code]: 'VIGIL_ERR_DECODE_VALUE',
      [DLQ_HEADERS.reason]: 'line 2: x',
      [DLQ_HEADERS.count]: '3',
      [DLQ_HEADERS.topic]: 'metrics',
      [DLQ_HEADERS.partition]: '5',
      [DLQ_HEADERS.offset]: '42',
      [DLQ_HEADERS.line]: '2',
      [DLQ_HEADERS.valueItems]: '2',
    });
  });

  it('a whole bad message is its own value; no value-items header when every bad item is carried', () => {
    const l = deadLetterFor(message('{oops'), { code: 'VIGIL_ERR_DECODE_JSON', reason: 'not JSON', count: 1 }, 't', 0);
    expect(l.value.toString()).toBe('{oops');
    expect(l.headers[DLQ_HEADERS.valueItems]).toBeUndefined();
    expect(l.headers[DLQ_HEADERS.element]).toBeUndefined();
    const e = deadLetterFor(message('[1]'), { code: 'VIGIL_ERR_DECODE_SHAPE', reason: 'r', count: 1, element: 0, bytes: new TextEncoder().encode('1'), items: 1 }, 't', 0);
    expect(e.headers[DLQ_HEADERS.element]).toBe('0');
    expect(e.headers[DLQ_HEADERS.valueItems]).toBeUndefined();
  });

  it(`leaves out original headers above ${MAX_ORIGINAL_HEADER_BYTES} bytes and a key above ${MAX_KEY_BYTES} bytes, saying their sizes`, () => {
    const atLimit = { h: 'x'.repeat(MAX_ORIGINAL_HEADER_BYTES - 1) };
    expect(deadLetterFor(message('v', atLimit), { code: 'VIGIL_ERR_DECODE_JSON', reason: 'r', count: 1 }, 't', 0).headers['h']).toBe(atLimit.h);
    const over = { h: 'x'.repeat(MAX_ORIGINAL_HEADER_BYTES), list: [Buffer.alloc(10), 'ab'] };
    const key = Buffer.alloc(MAX_KEY_BYTES + 1);
    const l = deadLetterFor(message('v', over, key), { code: 'VIGIL_ERR_DECODE_JSON', reason: 'r', count: 1 }, 't', 0);
    expect(l.headers['h']).toBeUndefined();
    expect(l.headers['list']).toBeUndefined();
    expect(l.headers[DLQ_HEADERS.headersDropped]).toBe(String(1 + MAX_ORIGINAL_HEADER_BYTES + 4 + 12));
    expect(l.key).toBeNull();
    expect(l.headers[DLQ_HEADERS.keyDropped]).toBe(String(MAX_KEY_BYTES + 1));
    const keyAtLimit = Buffer.alloc(MAX_KEY_BYTES);
    expect(deadLetterFor(message('v', {}, keyAtLimit), { code: 'VIGIL_ERR_DECODE_JSON', reason: 'r', count: 1 }, 't', 0).key).toBe(keyAtLimit);
  });
});

describe('fitting a letter to the broker', () => {
  it(`cuts a value above ${MAX_DEAD_LETTER_BYTES} bytes and keeps the first original size through a second cut`, () => {
    const letter = { key: null, value: Buffer.alloc(MAX_DEAD_LETTER_BYTES + 1, 1), headers: { a: 'b' } };
    const atLimit = { ...letter, value: Buffer.alloc(MAX_DEAD_LETTER_BYTES) };
    expect(fitDeadLetter(atLimit)).toBe(atLimit);
    const fit = fitDeadLetter(letter);
    expect(fit.value.length).toBe(MAX_DEAD_LETTER_BYTES);
    expect(fit.headers).toEqual({ a: 'b', [DLQ_HEADERS.originalSize]: String(MAX_DEAD_LETTER_BYTES + 1) });
    const minimal = minimalDeadLetter(fit, 'refused');
    expect(minimal.value.length).toBe(MIN_DEAD_LETTER_BYTES);
    expect(minimal.headers).toEqual({ [DLQ_HEADERS.originalSize]: String(MAX_DEAD_LETTER_BYTES + 1), [DLQ_HEADERS.cut]: 'refused' });
  });

  it("the minimal letter keeps Vigil's headers (reason cut to 1 KiB), drops the key and the original headers", () => {
    const l = deadLetterFor(message('short', { trace: 't' }), { code: 'VIGIL_ERR_DECODE_NAME', reason: 'r'.repeat(3000), count: 2, line: 4, bytes: Buffer.from('x'), items: 1 }, 'src', 1);
    const m = minimalDeadLetter(l, 'why');
    expect(m.key).toBeNull();
    expect(m.value.toString()).toBe('x');
    expect(m.headers).toEqual({
      [DLQ_HEADERS.code]: 'VIGIL_ERR_DECODE_NAME',
      [DLQ_HEADERS.reason]: 'r'.repeat(MIN_DEAD_LETTER_BYTES),
      [DLQ_HEADERS.count]: '2',
      [DLQ_HEADERS.topic]: 'src',
      [DLQ_HEADERS.partition]: '1',
      [DLQ_HEADERS.offset]: '42',
      [DLQ_HEADERS.line]: '4',
      [DLQ_HEADERS.valueItems]: '1',
      [DLQ_HEADERS.cut]: 'why',
    });
  });
});

describe('isPermanentProduceError', () => {
  const tooLarge = () => new KafkaJSProtocolError({ type: 'MESSAGE_TOO_LARGE', code: 10, retriable: false, message: 'too large' } as never);
  it('finds a refusal of the records in the cause chain kafkajs wraps it in', () => {
    expect(isPermanentProduceError(tooLarge())).toBe(true);
    // kafkajs passes { cause } as a second constructor argument its typings leave out.
    const wrapped = (e: Error) => Object.assign(new KafkaJSNonRetriableError(e), { cause: e });
    expect(isPermanentProduceError(wrapped(tooLarge()))).toBe(true);
    expect(isPermanentProduceError(Object.assign(new KafkaJSNumberOfRetriesExceeded(wrapped(tooLarge()), { retryCount: 5, retryTime: 100 } as never), { cause: wrapped(tooLarge()) }))).toBe(true);
    for (const type of ['RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'INVALID_TIMESTAMP']) {
      expect(isPermanentProduceError(new KafkaJSProtocolError({ type, code: 1, retriable: false, message: type } as never))).toBe(true);
    }
  });
  it('a broker or leader away for a while is not permanent', () => {
    expect(isPermanentProduceError(new KafkaJSProtocolError({ type: 'LEADER_NOT_AVAILABLE', code: 5, retriable: true, message: 'x' } as never))).toBe(false);
    expect(isPermanentProduceError(new Error('Connection error: ECONNREFUSED'))).toBe(false);
    expect(isPermanentProduceError(null)).toBe(false);
    expect(isPermanentProduceError('MESSAGE_TOO_LARGE')).toBe(false);
  });
});

describe('refusedRowsLetter', () => {
  const row = (i: number) => ({ row: { series_id: '1', metric: 'cpu', tags: { host: 'a' }, value: 666, source_topic: 'm', source_partition: 3, source_offset: String(100 + i), pad: 'x'.repeat(1000) }, error: `Code: 395 … throwIf (${i % 7})` });

  it('one letter: the rows as JSON lines, distinct reasons (first 5), the count, the table, the first row\'s source', () => {
    const l = refusedRowsLetter('points', [row(0), row(1), row(7)]);
    expect(l.value.toString().split('\n').map((x) => JSON.parse(x).source_offset)).toEqual(['100', '101', '107']);
    expect(l.headers).toMatchObject({
      'vigil-error-code': 'VIGIL_ERR_CLICKHOUSE_REJECTED',
      'vigil-error-count': '3',
      'vigil-clickhouse-table': 'points',
      'vigil-source-topic': 'm',
      'vigil-source-partition': '3',
      'vigil-source-offset': '100',
    });
    expect(l.headers['vigil-error-reason']).toBe('ClickHouse refused 3 row(s) of points: Code: 395 … throwIf (0) | Code: 395 … throwIf (1)');
    expect(l.headers['vigil-value-items']).toBeUndefined();
    const many = refusedRowsLetter('points', Array.from({ length: 8 }, (_, i) => row(i)));
    expect(many.headers['vigil-error-reason']).toMatch(/\(4\) \(\+2 more\)$/);
  });

  it(`carries as many rows as fit in ${MAX_DEAD_LETTER_BYTES} bytes and says how many`, () => {
    const rows = Array.from({ length: 2000 }, (_, i) => row(i));
    const l = refusedRowsLetter('rollups', rows);
    const carried = l.value.toString().split('\n').length;
    expect(l.value.length).toBeLessThanOrEqual(MAX_DEAD_LETTER_BYTES);
    expect(carried).toBeGreaterThan(400);
    expect(carried).toBeLessThan(2000);
    expect(l.headers['vigil-value-items']).toBe(String(carried));
    expect(l.headers['vigil-error-count']).toBe('2000');
  });
});
