import { describe, expect, it } from 'vitest';
import { alertmanagerAnnotations, alertmanagerLabels, sanitizeLabelName, toAlertmanagerAlert } from '../../../../sinks/alertmanager/index.js';
import { alertEvent } from '../../../helpers/receiver.js';

describe('Alertmanager mapping', () => {
  it('turns any name into [a-zA-Z_][a-zA-Z0-9_]*', () => {
    expect(sanitizeLabelName('host')).toBe('host');
    expect(sanitizeLabelName('dc.zone')).toBe('dc_zone');
    expect(sanitizeLabelName('runbook-url')).toBe('runbook_url');
    expect(sanitizeLabelName('9lives')).toBe('_9lives');
    expect(sanitizeLabelName('ключ')).toBe('____');
    expect(sanitizeLabelName('_ok_1')).toBe('_ok_1');
    for (const name of ['a b', '1', 'é', '__x', 'a:b']) expect(sanitizeLabelName(name)).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/);
  });

  it('labels: series tags, then rule labels, then Vigil’s own, which win', () => {
    const event = alertEvent({
      fingerprint: '0123456789abcdef',
      series: { metric: 'cpu.usage', tags: { host: 'web-1', severity: 'tag-severity', 'k8s.pod': 'p-1', blank: '' } },
      labels: { team: 'sre', host: 'web-1-from-rule', metric: 'not-this' },
    });
    expect(alertmanagerLabels(event)).toEqual({
      alertname: 'CpuHigh',
      severity: 'critical',
      rule_id: 'cpu_high',
      rule_kind: 'threshold',
      vigil_fingerprint: '0123456789abcdef',
      metric: 'cpu.usage',
      host: 'web-1-from-rule',
      k8s_pod: 'p-1',
      team: 'sre',
    });
  });

  it('gives the same label set whatever order the tags come in, when two names sanitise alike', () => {
    const a = alertEvent({ series: { metric: 'm', tags: { 'a-b': '1', 'a.b': '2' } } });
    const b = alertEvent({ fingerprint: a.fingerprint, series: { metric: 'm', tags: { 'a.b': '2', 'a-b': '1' } } });
    expect(alertmanagerLabels(a)).toEqual(alertmanagerLabels(b));
  });

  it('labels a named tenant\'s alert with its tenant, over a tag of that name; the default tenant\'s with none', () => {
    expect(alertmanagerLabels(alertEvent({ tenant: 'acme', series: { metric: 'cpu', tags: { tenant: 'other', host: 'a' } } }))).toMatchObject({ tenant: 'acme', host: 'a' });
    expect(alertmanagerLabels(alertEvent({ tenant: '' }))).not.toHaveProperty('tenant');
    // An event written before tenants existed has no field: the default tenant's.
    const old = alertEvent();
    delete (old as Partial<typeof old>).tenant;
    expect(alertmanagerLabels(old)).not.toHaveProperty('tenant');
  });

  it('uses the rule id as alertname when the rule has no name', () => {
    expect(alertmanagerLabels(alertEvent({ rule: { id: 'r1', name: '', kind: 'absent' } }))['alertname']).toBe('r1');
  });

  it('annotations: the event’s, plus value, threshold and score when set, and the explanation as JSON', () => {
    const event = alertEvent({ threshold: null, score: null, value: 0.5, annotations: { 'runbook-url': 'u', summary: 's' }, explanation: { a: [1, 2] } });
    expect(alertmanagerAnnotations(event)).toEqual({ runbook_url: 'u', summary: 's', value: '0.5', explanation: '{"a":[1,2]}' });
    // An anomaly alert's incident, when it has one, as an annotation of its own (not a label: it may change between firing and resolve).
    expect(alertmanagerAnnotations(alertEvent({ explanation: { incident: '00000000000000ff-1700000000' } }))['incident']).toBe('00000000000000ff-1700000000');
    expect(alertmanagerAnnotations(alertEvent({ explanation: { incident: null } }))).not.toHaveProperty('incident');
  });

  it('does not throw on an explanation JSON cannot represent', () => {
    const explanation: Record<string, unknown> = { big: 10n };
    expect(JSON.parse(alertmanagerAnnotations(alertEvent({ explanation }))['explanation'] ?? '')).toHaveProperty('error');
  });

  it('firing alerts have no endsAt until sent; resolved ones end at endsAt, else observedAt, never before startsAt', () => {
    const startsAt = '2026-01-01T00:00:00.000Z';
    expect(toAlertmanagerAlert(alertEvent({ startsAt }))).not.toHaveProperty('endsAt');
    expect(toAlertmanagerAlert(alertEvent({ startsAt, status: 'resolved', endsAt: '2026-01-01T00:05:00Z' })).endsAt).toBe('2026-01-01T00:05:00.000Z');
    expect(toAlertmanagerAlert(alertEvent({ startsAt, status: 'resolved', endsAt: null, observedAt: '2026-01-01T00:06:00Z' })).endsAt).toBe('2026-01-01T00:06:00.000Z');
    expect(toAlertmanagerAlert(alertEvent({ startsAt, status: 'resolved', endsAt: '2025-12-31T23:59:00Z' })).endsAt).toBe(startsAt);
    expect(toAlertmanagerAlert(alertEvent(), 'http://vigil/alerts').generatorURL).toBe('http://vigil/alerts');
  });
});
