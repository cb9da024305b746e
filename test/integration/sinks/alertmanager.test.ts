import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../../sinks/alerts/event.js';
import { AlertmanagerOutput, RESEND_ENDS_AT_FACTOR, type AlertmanagerOutputOptions } from '../../../sinks/alertmanager/index.js';
import { testConfig, uniqueName } from '../../helpers/resources.js';
import { alertEvent, recordingStats, until } from '../../helpers/receiver.js';

/** The local Alertmanager of the test stack (Debian's 0.25). */
const amUrl = `http://127.0.0.1:${testConfig().infra.alertmanagerPort}`;

/** What GET /api/v2/alerts returns per alert. */
interface ListedAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  updatedAt: string;
  status: { state: string };
}

async function listed(fingerprint: string, query = ''): Promise<ListedAlert[]> {
  const res = await fetch(`${amUrl}/api/v2/alerts?filter=${encodeURIComponent(`vigil_fingerprint="${fingerprint}"`)}${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as ListedAlert[];
}

async function groupedCount(fingerprint: string): Promise<number> {
  const res = await fetch(`${amUrl}/api/v2/alerts/groups?filter=${encodeURIComponent(`vigil_fingerprint="${fingerprint}"`)}`);
  return ((await res.json()) as { alerts: unknown[] }[]).reduce((n, g) => n + g.alerts.length, 0);
}

/** `alertmanager_alerts_received_total{status, version="v2"}` from Alertmanager's /metrics. */
async function receivedTotal(status: 'firing' | 'resolved'): Promise<number> {
  const text = await (await fetch(`${amUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`alertmanager_alerts_received_total{status="${status}",version="v2"}`));
  return Number(line?.split(' ')[1] ?? NaN);
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function output(options: Partial<AlertmanagerOutputOptions> = {}) {
  const { seen, stats } = recordingStats();
  const out = new AlertmanagerOutput({ url: amUrl, retry: { initialMs: 50, maxMs: 500 }, stats, ...options });
  cleanup.push(() => out.close());
  return { out, seen };
}

/** A firing event with its own alertname and fingerprint, and tag names Alertmanager would refuse as they are. */
function firingEvent(overrides: Partial<AlertEvent> = {}): AlertEvent {
  return alertEvent({
    fingerprint: randomBytes(8).toString('hex'),
    rule: { id: 'cpu_high', name: uniqueName('VigilTest'), kind: 'threshold' },
    series: { metric: 'cpu.usage', tags: { host: 'web-1', 'dc.zone': 'eu-1', '9lives': 'yes', empty: '' } },
    labels: { team: 'sre', host: 'web-1' },
    annotations: { summary: 'CPU above 90%', 'runbook-url': 'https://runbooks.example/cpu' },
    explanation: { rule: 'cpu > 90 for 5m', heldForMs: 300000 },
    ...overrides,
  });
}

function resolvedOf(event: AlertEvent, overrides: Partial<AlertEvent> = {}): AlertEvent {
  const now = new Date().toISOString();
  return { ...event, id: `${event.id}-resolved`, status: 'resolved', endsAt: now, observedAt: now, value: 42, ...overrides };
}

describe('AlertmanagerOutput against Alertmanager', () => {
  it('shows a firing alert with its labels and annotations, and stops listing it once resolved', async () => {
    const { out, seen } = output();
    out.start();
    const event = firingEvent();
    const before = Date.now();
    out.send(event);

    const [alert] = await until('the alert to be listed', async () => {
      const alerts = await listed(event.fingerprint);
      return alerts.length > 0 && alerts;
    });
    expect(alert?.status.state).toBe('active');
    expect(alert?.labels).toEqual({
      alertname: event.rule.name,
      severity: 'critical',
      rule_id: 'cpu_high',
      rule_kind: 'threshold',
      vigil_fingerprint: event.fingerprint,
      metric: 'cpu.usage',
      host: 'web-1',
      dc_zone: 'eu-1',
      _9lives: 'yes',
      team: 'sre',
    });
    expect(alert?.annotations).toEqual({
      summary: 'CPU above 90%',
      runbook_url: 'https://runbooks.example/cpu',
      value: '93.1',
      threshold: '90',
      score: '0.97',
      explanation: JSON.stringify(event.explanation),
    });
    expect(Date.parse(alert?.startsAt ?? '')).toBe(Date.parse(event.startsAt));
    // endsAt = send time + 4 × the 60 s resend interval: far beyond this test.
    expect(Date.parse(alert?.endsAt ?? '')).toBeGreaterThanOrEqual(before + RESEND_ENDS_AT_FACTOR * 60_000 - 1000);
    expect(await groupedCount(event.fingerprint)).toBe(1);

    const resolvedBefore = await receivedTotal('resolved');
    out.send(resolvedOf(event));
    // Alertmanager 0.25 leaves resolved alerts out of GET /api/v2/alerts whatever the active,
    // silenced, inhibited and unprocessed filters say, and out of /api/v2/alerts/groups.
    await until('the resolved alert to leave the list', async () => (await listed(event.fingerprint)).length === 0);
    expect(await listed(event.fingerprint, '&active=true&silenced=true&inhibited=true&unprocessed=true')).toEqual([]);
    expect(await listed(event.fingerprint, '&active=false')).toEqual([]);
    expect(await groupedCount(event.fingerprint)).toBe(0);
    // It did take the alert as resolved (the only trace the API keeps); other tests may add to the count.
    expect(await receivedTotal('resolved')).toBeGreaterThan(resolvedBefore);
    expect(seen.failed).toEqual([]);
    expect(seen.sent).toBe(2);
    expect(out.firingAlerts).toBe(0);
  });

  it('resolves the alert it fired even when the resolved event carries other labels', async () => {
    const { out } = output();
    out.start();
    const event = firingEvent();
    out.send(event);
    await until('the alert to be listed', async () => (await listed(event.fingerprint)).length === 1);
    // Had the resolved alert been sent with these labels, Alertmanager would see a second alert
    // and keep the first one active until its endsAt, minutes away.
    out.send(resolvedOf(event, { labels: { team: 'platform' }, series: { metric: 'cpu.usage', tags: { host: 'web-1' } } }));
    await until('the alert to be resolved', async () => (await listed(event.fingerprint)).length === 0);
  });

  it('re-sends a firing alert every resendIntervalMs, so it outlives its first endsAt', async () => {
    const resendIntervalMs = 500;
    const { out, seen } = output({ resendIntervalMs });
    out.start();
    const event = firingEvent();
    out.send(event);
    const first = await until('the alert to be listed', async () => (await listed(event.fingerprint))[0]);
    const firstEndsAt = Date.parse(first.endsAt);
    expect(firstEndsAt - Date.parse(first.updatedAt)).toBeLessThanOrEqual(RESEND_ENDS_AT_FACTOR * resendIntervalMs + 100);

    const later = await until('endsAt to move forward', async () => {
      const a = (await listed(event.fingerprint))[0];
      return a !== undefined && Date.parse(a.endsAt) > firstEndsAt && a;
    });
    expect(later.status.state).toBe('active');
    expect(Date.parse(later.startsAt)).toBe(Date.parse(first.startsAt));

    // Past the first endsAt, Alertmanager would have resolved it had it not been re-sent.
    await until('the first endsAt to pass', () => Date.now() > firstEndsAt + 500);
    const [alive] = await listed(event.fingerprint);
    expect(alive?.status.state).toBe('active');
    expect(Date.parse(alive?.endsAt ?? '')).toBeGreaterThan(Date.now());
    expect(seen.sent).toBeGreaterThanOrEqual(3);

    out.send(resolvedOf(event));
    await until('the alert to be resolved', async () => (await listed(event.fingerprint)).length === 0);
  });
});
