import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { kafkajsRecordDecoder, leanRecordDecoder, mendRequestQueue, type RecordDecoder } from '../../../pipeline/kafka.js';

// kafkajs's own request queue, mended on import of pipeline/kafka.ts, driven without a socket.
interface Queue {
  pending: unknown[];
  throttleCheckTimeoutId: unknown;
  maybeThrottle(ms: number): void;
  push(request: { entry: object; expectResponse: boolean; sendRequest: () => void }): void;
  fulfillRequest(response: { correlationId: number; payload: Buffer; size: number }): void;
  destroy(): void;
}
const RequestQueue = createRequire(import.meta.url)('kafkajs/src/network/requestQueue/index.js') as new (options: object) => Queue;
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function queue(maxInFlightRequests: number | null): { q: Queue; sent: number[]; answered: number[] } {
  const q = new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 't', broker: 'b:9092', logger: silent });
  return { q, sent: [], answered: [] };
}

function push(t: ReturnType<typeof queue>, correlationId: number): void {
  const entry = { correlationId, apiKey: 1, apiName: 'Fetch', apiVersion: 11, resolve: () => t.answered.push(correlationId), reject: () => {} };
  t.q.push({ entry, expectResponse: true, sendRequest: () => t.sent.push(correlationId) });
}

describe('kafkajs request queue, mended', () => {
  it('arms no timer once a response leaves nothing waiting and nothing throttled (kafkajs#1556: a 1 ms loop per connection)', () => {
    const t = queue(null);
    push(t, 1);
    t.q.fulfillRequest({ correlationId: 1, payload: Buffer.alloc(0), size: 0 });
    expect(t.answered).toEqual([1]);
    expect(t.q.throttleCheckTimeoutId).toBeNull();
  });

  it('still sends a request held behind the in-flight limit when the one ahead is answered', () => {
    const t = queue(1);
    push(t, 1);
    push(t, 2);
    expect(t.sent).toEqual([1]);
    t.q.fulfillRequest({ correlationId: 1, payload: Buffer.alloc(0), size: 0 });
    expect(t.sent).toEqual([1, 2]);
    t.q.destroy();
  });

  it('still sends a request held by a broker throttle once the throttle ends', async () => {
    const t = queue(null);
    t.q.maybeThrottle(30);
    push(t, 1);
    expect(t.sent).toEqual([]);
    expect(t.q.throttleCheckTimeoutId).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(t.sent).toEqual([1]);
    t.q.destroy();
  });

  it('is applied once, and leaves alone a queue without the method', () => {
    const proto = { pending: [], throttledUntil: -1, throttleCheckTimeoutId: null, scheduleCheckPendingRequests: () => {} };
    expect(mendRequestQueue(proto)).toBe(true);
    expect(mendRequestQueue(proto)).toBe(false);
    expect(mendRequestQueue({} as never)).toBe(false);
  });
});

// kafkajs' record encoder and decoder, to check the lean record decoder against its output.
const requireKafkajs = createRequire(import.meta.url);
const Decoder = requireKafkajs('kafkajs/src/protocol/decoder.js') as new (b: Buffer) => Parameters<RecordDecoder>[0];
const encodeRecord = requireKafkajs('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: object) => { buffer: Buffer };
const Long = requireKafkajs('kafkajs/src/utils/long.js') as { fromString(s: string): unknown; fromNumber(n: number): unknown };

/** A record's body as kafkajs' batch decoder hands it to the record decoder (its length read off). */
function recordBody(bytes: Buffer): Buffer {
  return new Decoder(bytes).readVarIntBytes() as Buffer;
}

/** Both decoders on the same bytes: the same value or the same error, and the same bytes consumed. */
function decodeBoth(lean: RecordDecoder, body: Buffer, context: object): void {
  const a = new Decoder(body);
  const b = new Decoder(body);
  let leanOut: unknown;
  let kafkajsOut: unknown;
  try {
    leanOut = lean(a, context);
  } catch (err) {
    leanOut = { threw: (err as Error).constructor.name };
  }
  try {
    kafkajsOut = kafkajsRecordDecoder(b, context);
  } catch (err) {
    kafkajsOut = { threw: (err as Error).constructor.name };
  }
  expect(leanOut).toStrictEqual(kafkajsOut);
  expect(Object.keys(leanOut as object)).toEqual(Object.keys(kafkajsOut as object));
  expect(a.offset).toBe(b.offset);
}

describe('the lean kafkajs record decoder', () => {
  const contexts = [
    { firstOffset: '0', firstTimestamp: '1700000000000', magicByte: 2, timestampType: 0, maxTimestamp: '1700000000999' },
    { firstOffset: '123456789012', firstTimestamp: '-1', magicByte: 2, isControlBatch: true, timestampType: 0, maxTimestamp: '-1' },
    { firstOffset: '5', firstTimestamp: '1700000000000', magicByte: 2, timestampType: 1, maxTimestamp: '1700000000999' },
    // Sums past 2^53, and offsets that are no safe integer: kafkajs' Long arithmetic decides.
    { firstOffset: '9007199254740990', firstTimestamp: '1700000000000', magicByte: 2, timestampType: 0, maxTimestamp: '0' },
    { firstOffset: '9223372036854775800', firstTimestamp: '9223372036854775000', magicByte: 2, timestampType: 0, maxTimestamp: '0' },
    { firstOffset: '007', firstTimestamp: '1700000000000', magicByte: 2, timestampType: 0, maxTimestamp: '0' },
    {},
  ];
  const records: object[] = [
    { offsetDelta: 0, timestampDelta: 0, key: null, value: Buffer.from('{"name":"cpu","value":1}') },
    { offsetDelta: 7, timestampDelta: -250, key: Buffer.from('host-1'), value: Buffer.from('x') },
    { offsetDelta: 2 ** 31 - 1, timestampDelta: 86_400_000, key: Buffer.alloc(0), value: null },
    { offsetDelta: 3, timestampDelta: Long.fromString('562949953421312'), key: null, value: Buffer.from('v') },
    { offsetDelta: 3, timestampDelta: Long.fromString('-9000000000000000000'), key: null, value: Buffer.from('v') },
    { offsetDelta: 1, timestampDelta: 5, key: null, value: Buffer.from('h'), headers: { a: Buffer.from('1'), b: [Buffer.from('2'), Buffer.from('3')], __proto__x: Buffer.from('p') } },
    { offsetDelta: 1, timestampDelta: 5, key: null, value: Buffer.from('h'), headers: { toString: Buffer.from('t') } },
  ];

  it("gives kafkajs' own record for every record and batch context: numbers, nulls, headers, deltas and offsets past 2^53, log-append time", () => {
    const lean = leanRecordDecoder(kafkajsRecordDecoder);
    for (const context of contexts) for (const r of records) decodeBoth(lean, recordBody(encodeRecord(r).buffer), context);
  });

  it("gives kafkajs' result, record or error, for 20,000 truncated and mutated records", () => {
    const lean = leanRecordDecoder(kafkajsRecordDecoder);
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const bodies = records.map((r) => recordBody(encodeRecord(r).buffer));
    for (let i = 0; i < 20_000; i++) {
      const body = Buffer.from(bodies[rand(bodies.length)] as Buffer);
      for (let k = rand(4); k > 0; k--) body[rand(body.length)] = rand(256);
      decodeBoth(lean, body.subarray(0, body.length - rand(3)), contexts[rand(contexts.length)] as object);
    }
  });

  it("decodes a plain record itself, without kafkajs' decoder (which a metrics stream would otherwise run per message)", () => {
    let calls = 0;
    const lean = leanRecordDecoder((d, c) => (calls++, kafkajsRecordDecoder(d, c)));
    const body = recordBody(encodeRecord(records[1] as object).buffer);
    const out = lean(new Decoder(body), contexts[0]) as { offset: string; timestamp: string };
    expect([calls, out.offset, out.timestamp]).toEqual([0, '7', '1699999999750']);
  });

  it('is the decoder kafkajs loads for its fetch responses once pipeline/kafka.ts is imported', () => {
    const loaded = requireKafkajs('kafkajs/src/protocol/recordBatch/record/v0/decoder.js') as { vigilOriginal?: unknown };
    expect(loaded.vigilOriginal).toBe(kafkajsRecordDecoder);
  });
});
