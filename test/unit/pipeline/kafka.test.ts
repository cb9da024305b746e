import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { mendRequestQueue } from '../../../pipeline/kafka.js';

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
