import { afterEach, describe, expect, it } from 'vitest';
import { isVigilError } from '../../../../core/errors.js';
import { AlertmanagerOutput, RESEND_ENDS_AT_FACTOR, type AlertmanagerAlert, type AlertmanagerOutputOptions } from '../../../../sinks/alertmanager/index.js';
import { WebhookOutput } from '../../../../sinks/webhook/index.js';
import { alertEvent, quietLogger, recordingStats, startReceiver, until, type Receiver } from '../../../helpers/receiver.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  cleanup.push(() => r.close());
  return r;
}

function alertmanager(options: AlertmanagerOutputOptions) {
  const { seen, stats } = recordingStats();
  const out = new AlertmanagerOutput({ retry: { initialMs: 20, maxMs: 100 }, logger: quietLogger, stats, ...options });
  cleanup.push(() => out.close(0));
  return { out, seen };
}

function posted(r: Receiver): AlertmanagerAlert[][] {
  return r.requests.map((q) => JSON.parse(q.body) as AlertmanagerAlert[]);
}

describe('alert output options', () => {
  it.each([
    [{ url: 'ftp://x' }, 'alertmanager.url'],
    [{ url: 'not a url' }, 'alertmanager.url'],
    [{ url: 'http://x', maxQueue: 0 }, 'alertmanager.maxQueue'],
    [{ url: 'http://x', timeoutMs: 1.5 }, 'alertmanager.timeoutMs'],
    [{ url: 'http://x', retry: { initialMs: 1000, maxMs: 10 } }, 'alertmanager.retry.maxMs'],
    [{ url: 'http://x', resendIntervalMs: 0 }, 'alertmanager.resendIntervalMs'],
  ])('rejects %j with VIGIL_ERR_CONFIG_INVALID naming %s', (options, key) => {
    let thrown: unknown;
    try {
      new AlertmanagerOutput(options);
    } catch (err) {
      thrown = err;
    }
    expect(isVigilError(thrown, 'VIGIL_ERR_CONFIG_INVALID')).toBe(true);
    expect((thrown as Error).message).toContain(key);
  });

  it('rejects a negative webhook maxAttempts', () => {
    expect(() => new WebhookOutput({ url: 'http://x', maxAttempts: -1 })).toThrow(/webhook\.maxAttempts/);
  });
});

describe('AlertmanagerOutput (local receiver)', () => {
  it('posts to {url}/api/v2/alerts, keeping a route prefix', async () => {
    const r = await receiver();
    const { out } = alertmanager({ url: `${r.url}/am/` });
    out.start();
    out.send(alertEvent());
    await until('a request', () => r.answered === 1);
    expect(r.requests[0]?.path).toBe('/am/api/v2/alerts');
  });

  it('sends only the latest queued state of a fingerprint, with endsAt set when it is posted', async () => {
    const r = await receiver();
    const resendIntervalMs = 10_000;
    const { out, seen } = alertmanager({ url: r.url, resendIntervalMs });
    const a = alertEvent();
    const b = alertEvent();
    const bResolved = { ...b, status: 'resolved', endsAt: new Date().toISOString() } as const;
    out.send(a);
    out.send({ ...a, value: 99 });
    out.send(b);
    out.send(bResolved);
    expect(out.queued).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const t0 = Date.now();
    out.start();
    await until('a request', () => r.answered === 1);
    const [batch] = posted(r);
    expect(batch?.map((x) => [x.labels['vigil_fingerprint'], x.annotations['value']])).toEqual([
      [a.fingerprint, '99'],
      [b.fingerprint, '93.1'],
    ]);
    const endsAt = Date.parse(batch?.[0]?.endsAt ?? '');
    expect(endsAt).toBeGreaterThanOrEqual(t0 + RESEND_ENDS_AT_FACTOR * resendIntervalMs);
    expect(batch?.[1]?.endsAt).toBe(bResolved.endsAt);
    expect(seen.sent).toBe(2);
    expect(out.firingAlerts).toBe(1);
  });

  it('re-sends firing alerts and, within resolvedRetentionMs, resolved ones', async () => {
    const r = await receiver();
    const { out } = alertmanager({ url: r.url, resendIntervalMs: 100, resolvedRetentionMs: 1000 });
    const firing = alertEvent();
    const resolved = alertEvent();
    out.send(firing);
    out.send(resolved);
    out.send({ ...resolved, status: 'resolved', endsAt: new Date().toISOString() });
    out.start();
    const fingerprints = () => posted(r).map((batch) => batch.map((x) => x.labels['vigil_fingerprint']));
    await until('two re-sends', () => r.answered >= 3);
    expect(fingerprints().slice(0, 2)).toEqual([
      [firing.fingerprint, resolved.fingerprint],
      [firing.fingerprint, resolved.fingerprint],
    ]);
    // After the retention, only the firing one is re-sent.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const n = r.answered;
    await until('another re-send', () => r.answered > n);
    expect(fingerprints().at(-1)).toEqual([firing.fingerprint]);
  });

  it('tracks at most maxQueue alerts: resolved ones make room first, then new firing ones are sent once and counted', async () => {
    const r = await receiver();
    const { out, seen } = alertmanager({ url: r.url, maxQueue: 2 });
    const [a, b, c] = [alertEvent(), alertEvent(), alertEvent()];
    out.send(a);
    out.send({ ...a, status: 'resolved' });
    out.send(b);
    expect(seen.dropped).toEqual({});
    // Tracking c evicts resolved a; the queue (a resolved, b) drops b, which the next re-send restores.
    out.send(c);
    expect(out.firingAlerts).toBe(2);
    expect(seen.dropped).toEqual({ queue_full: 1 });
    // Two firing alerts tracked already: d is queued (c makes room) but not tracked.
    out.send(alertEvent());
    expect(out.firingAlerts).toBe(2);
    expect(seen.dropped).toEqual({ queue_full: 2, untracked: 1 });
  });
});

describe('WebhookOutput (local receiver)', () => {
  it('sends user info in the URL as basic auth (fetch refuses a URL with credentials: it never delivered), and a bearer token instead when one is set', async () => {
    const r = await startReceiver(() => 200);
    cleanup.push(() => r.close());
    const withUser = r.url.replace('http://', 'http://alice:s%3Acret@');
    const basic = new WebhookOutput({ url: withUser, logger: quietLogger });
    const bearer = new WebhookOutput({ url: withUser, bearerToken: 'tok', logger: quietLogger });
    cleanup.push(() => basic.close(0), () => bearer.close(0));
    basic.start();
    basic.send(alertEvent());
    await until('the basic-auth POST', () => r.requests.length === 1);
    bearer.start();
    bearer.send(alertEvent());
    await until('the bearer POST', () => r.requests.length === 2);
    expect(r.requests.map((q) => [q.status, q.headers.authorization])).toEqual([
      [200, `Basic ${Buffer.from('alice:s:cret').toString('base64')}`],
      [200, 'Bearer tok'],
    ]);
  });

  it('an invalid URL is reported without its password', () => {
    expect(() => new WebhookOutput({ url: 'ftp://u:hunter2@x', logger: quietLogger })).toThrow(/must be http or https/);
    expect(() => new WebhookOutput({ url: 'http://u:hunter2@exa mple', logger: quietLogger })).toThrow(/^(?!.*hunter2).*not a URL/);
  });

  it('does not follow a redirect (a 302 would turn the POST into a GET): it counts as rejected', async () => {
    const r = await startReceiver(() => 302);
    cleanup.push(() => r.close());
    const { seen, stats } = recordingStats();
    const out = new WebhookOutput({ url: r.url, logger: quietLogger, stats });
    cleanup.push(() => out.close(0));
    out.start();
    out.send(alertEvent());
    await until('the rejection', () => seen.dropped.rejected === 1);
    expect(r.requests.map((q) => q.method)).toEqual(['POST']);
    expect(seen.failed).toEqual(['VIGIL_ERR_WEBHOOK_REJECTED']);
  });

  it('send() does not throw when a stats callback does', () => {
    const boom = (): never => {
      throw new Error('boom');
    };
    const out = new WebhookOutput({ url: 'http://127.0.0.1:9', maxQueue: 1, logger: quietLogger, stats: { onSent: boom, onFailed: boom, onDropped: boom } });
    out.send(alertEvent());
    expect(() => out.send(alertEvent())).not.toThrow();
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => out.send(alertEvent({ explanation: cyclic }))).not.toThrow();
    expect(out.queued).toBe(1);
  });
});
