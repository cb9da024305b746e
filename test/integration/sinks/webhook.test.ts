import { afterEach, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../../sinks/alerts/event.js';
import { WebhookOutput, type WebhookOutputOptions } from '../../../sinks/webhook/index.js';
import { alertEvent, freePort, quietLogger, recordingStats, startReceiver, until, type Receiver, type Respond } from '../../helpers/receiver.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function receiver(respond?: Respond, port?: number): Promise<Receiver> {
  const r = await startReceiver(respond, port);
  cleanup.push(() => r.close());
  return r;
}

function output(options: WebhookOutputOptions) {
  const { seen, stats } = recordingStats();
  const out = new WebhookOutput({ retry: { initialMs: 20, maxMs: 100 }, logger: quietLogger, stats, ...options });
  cleanup.push(() => out.close(0));
  return { out, seen };
}

/** Events of every 2xx body, in arrival order. */
function delivered(r: Receiver): AlertEvent[] {
  return r.accepted().flatMap((b) => (b as { alerts: AlertEvent[] }).alerts);
}

describe('WebhookOutput', () => {
  it('retries 503s and delivers every event exactly once, while send() never waits for the receiver', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const failures = 3;
    const r = await receiver(async (n) => {
      if (n === 1) await held;
      return n <= failures ? 503 : 200;
    });
    const { out, seen } = output({ url: `${r.url}/hook`, headers: { Authorization: 'Bearer t0ken' } });
    out.start();
    const first = alertEvent();
    out.send(first);
    await until('the first request to reach the receiver', () => r.requests.length === 1);

    // The receiver holds the first request: every send() returns while nothing has been answered.
    const events = [first];
    for (let i = 0; i < 1000; i++) {
      const e = alertEvent({ status: i % 10 === 9 ? 'resolved' : 'firing' });
      events.push(e);
      expect(out.send(e)).toBeUndefined();
    }
    expect(r.answered).toBe(0);
    expect(out.queued).toBe(1001);

    release();
    await until('every event to be acknowledged', () => out.queued === 0);
    await out.idle();
    const got = delivered(r);
    expect(got.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort());
    expect(new Set(got.map((e) => e.id)).size).toBe(got.length);
    expect(got[0]).toEqual(first);
    expect(seen.failed).toEqual(Array(failures).fill('VIGIL_ERR_WEBHOOK_SEND'));
    expect(seen.sent).toBe(1001);
    expect(seen.dropped).toEqual({});
    expect(out.healthy).toBe(true);

    const request = r.requests[failures];
    expect(request?.path).toBe('/hook');
    expect(request?.headers['authorization']).toBe('Bearer t0ken');
    expect(request?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request?.body ?? '')).toMatchObject({ version: 1, alerts: expect.any(Array) });
  });

  it('does not retry a 400: the batch is counted as rejected and dropped', async () => {
    const r = await receiver(() => 400);
    const { out, seen } = output({ url: r.url });
    out.start();
    out.send(alertEvent());
    await until('the rejection to be counted', () => seen.dropped.rejected === 1);
    out.send(alertEvent());
    await until('the second rejection', () => seen.dropped.rejected === 2);
    // Two events, two requests: neither was sent again (retries would come after 20-100 ms).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.requests).toHaveLength(2);
    expect(seen.failed).toEqual(['VIGIL_ERR_WEBHOOK_REJECTED', 'VIGIL_ERR_WEBHOOK_REJECTED']);
    expect(seen.sent).toBe(0);
    expect(out.healthy).toBe(false);
  });

  it('retries a 429 and a 408 like a 5xx', async () => {
    const r = await receiver((n) => [429, 408][n - 1] ?? 200);
    const { out, seen } = output({ url: r.url });
    out.start();
    const e = alertEvent();
    out.send(e);
    await until('delivery', () => seen.sent === 1);
    expect(delivered(r)).toEqual([e]);
    expect(seen.failed).toEqual(['VIGIL_ERR_WEBHOOK_SEND', 'VIGIL_ERR_WEBHOOK_SEND']);
  });

  it('keeps at most maxQueue events while the receiver is down, dropping the oldest firing ones, never the resolved one', async () => {
    const port = await freePort();
    const { out, seen } = output({ url: `http://127.0.0.1:${port}`, maxQueue: 10 });
    out.start();
    const resolved = alertEvent({ status: 'resolved' });
    out.send(resolved);
    const firing = Array.from({ length: 15 }, () => alertEvent());
    for (const e of firing) out.send(e);
    expect(out.queued).toBe(10);
    expect(seen.dropped).toEqual({ queue_full: 6 });

    await until('a failed attempt', () => seen.failed.length > 0);
    expect(seen.failed[0]).toBe('VIGIL_ERR_WEBHOOK_SEND');
    expect(out.healthy).toBe(false);
    expect(out.queued).toBe(10);

    const r = await receiver(() => 200, port);
    await until('the queue to drain', () => out.queued === 0);
    expect(delivered(r).map((e) => e.id)).toEqual([resolved, ...firing.slice(6)].map((e) => e.id));
    expect(seen.sent).toBe(10);
    expect(out.healthy).toBe(true);
  });

  it('with only resolved events queued, drops a new firing event, and for a new resolved one the oldest resolved', async () => {
    const port = await freePort();
    const { out, seen } = output({ url: `http://127.0.0.1:${port}`, maxQueue: 3 });
    const resolved = Array.from({ length: 4 }, () => alertEvent({ status: 'resolved' }));
    for (const e of resolved.slice(0, 3)) out.send(e);
    out.send(alertEvent());
    out.send(resolved[3] as AlertEvent);
    expect(seen.dropped).toEqual({ queue_full: 2 });
    const r = await receiver(() => 200, port);
    out.start();
    await until('the queue to drain', () => out.queued === 0);
    expect(delivered(r).map((e) => e.id)).toEqual(resolved.slice(1).map((e) => e.id));
  });

  it('drops an event after maxAttempts failed POSTs', async () => {
    const r = await receiver(() => 503);
    const { out, seen } = output({ url: r.url, maxAttempts: 3 });
    out.start();
    out.send(alertEvent());
    await until('the drop', () => seen.dropped.max_attempts === 1);
    expect(r.requests).toHaveLength(3);
    expect(out.queued).toBe(0);
  });

  it('close() flushes what is queued, even before start()', async () => {
    const r = await receiver();
    const { out, seen } = output({ url: r.url });
    const events = [alertEvent(), alertEvent({ status: 'resolved' })];
    for (const e of events) out.send(e);
    await out.close();
    expect(delivered(r)).toEqual(events);
    expect(seen.sent).toBe(2);
  });

  it('close() gives up at its deadline and counts what is left as dropped', async () => {
    const port = await freePort();
    // Nothing listens: the first POST fails and the next retry is a minute away. Without its
    // deadline, close() would wait for that retry; the test timeout is well below it.
    const { out, seen } = output({ url: `http://127.0.0.1:${port}`, retry: { initialMs: 60_000, maxMs: 60_000 } });
    out.start();
    for (let i = 0; i < 5; i++) out.send(alertEvent());
    await until('the first POST to fail', () => seen.failed.length > 0);
    await out.close(300);
    expect(seen.dropped).toEqual({ shutdown: 5 });
    out.send(alertEvent());
    expect(seen.dropped).toEqual({ shutdown: 6 });
    expect(out.queued).toBe(0);
  });

  it('aborts a request that takes longer than timeoutMs and retries it', async () => {
    const r = await receiver(async (n) => {
      if (n === 1) await new Promise((resolve) => setTimeout(resolve, 1000));
      return 200;
    });
    const { out, seen } = output({ url: r.url, timeoutMs: 100 });
    out.start();
    out.send(alertEvent());
    await until('delivery', () => seen.sent === 1);
    expect(seen.failed).toEqual(['VIGIL_ERR_WEBHOOK_SEND']);
  });
});
