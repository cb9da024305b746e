import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../core/config/index.js';
import { clock, recap, storyLine } from '../../../cli/demo.js';
import type { AlertEvent } from '../../../sinks/alerts/event.js';

const event = (status: AlertEvent['status'], over: Partial<AlertEvent> = {}): AlertEvent => ({
  version: 1,
  id: `fp-${status}`,
  fingerprint: 'fp',
  status,
  rule: { id: 'cpu-high', name: 'HighCpuUsage', kind: 'threshold' },
  severity: 'warning',
  series: { metric: 'system.cpu.usage_total', tags: { host: 'demo-web-1', region: 'eu-west-1' } },
  tenant: '',
  value: 96.1,
  threshold: 90,
  score: null,
  startsAt: '2026-11-28T10:00:40.000Z',
  endsAt: status === 'resolved' ? '2026-11-28T10:01:20.000Z' : null,
  observedAt: '2026-11-28T10:01:22.000Z',
  explanation: {},
  labels: {},
  annotations: { summary: 'CPU at 96.1% on demo-web-1' },
  ...over,
});

describe('the demo story and recap', () => {
  it('tells a firing event at its start and a resolved one at its end', () => {
    expect(storyLine(event('firing'))).toBe(`${clock(Date.parse('2026-11-28T10:00:40Z'))} FIRING   HighCpuUsage (threshold) system.cpu.usage_total{host=demo-web-1,region=eu-west-1}: CPU at 96.1% on demo-web-1`);
    // A resolve shows the value that ended it, not the summary of why it fired.
    expect(storyLine(event('resolved', { value: 33.449 }))).toBe(`${clock(Date.parse('2026-11-28T10:01:20Z'))} RESOLVED HighCpuUsage (threshold) system.cpu.usage_total{host=demo-web-1,region=eu-west-1}: value 33.45`);
    expect(storyLine(event('resolved', { value: null }))).toBe(`${clock(Date.parse('2026-11-28T10:01:20Z'))} RESOLVED HighCpuUsage (threshold) system.cpu.usage_total{host=demo-web-1,region=eu-west-1}`);
  });

  it('recaps each alert once with both times, and where every output is, for the configured endpoints', () => {
    const config = loadConfig({ env: {}, overrides: { 'clickhouse.database': 'demo_db', 'kafka.alertsTopic': 'my-alerts', 'alerts.alertmanagerUrl': 'http://am.example:9093', 'http.port': 9999, 'infra.clickhouseTcpPort': 9100 } });
    const text = recap(config, [event('firing'), event('resolved'), event('firing', { fingerprint: 'other', rule: { id: 'host-silent', name: 'HostNotReporting', kind: 'absent' } })], true);
    expect(text).toContain('alert events: 2 fired, 1 resolved');
    expect(text).toMatch(/HighCpuUsage +demo-web-1 eu-west-1 +fired \d\d:\d\d:\d\d, resolved \d\d:\d\d:\d\d/);
    expect(text).toMatch(/HostNotReporting +demo-web-1 eu-west-1 +fired \d\d:\d\d:\d\d, still firing/);
    expect(text).toContain('clickhouse-client --port 9100 --query "SELECT starts_at, ends_at, status, rule_name, metric, tags.value FROM demo_db.alerts_dedup');
    expect(text).toContain('kcat -b 127.0.0.1:9092 -C -t my-alerts -e');
    expect(text).toContain('http://am.example:9093/#/alerts');
    expect(text).toContain('curl -s http://127.0.0.1:9999/metrics');
    // An external ClickHouse: its HTTP interface, without the password.
    const external = loadConfig({ env: {}, overrides: { 'clickhouse.url': 'http://u:secret@ch.example:8123', 'alerts.alertmanagerUrl': '' } });
    const text2 = recap(external, [], false);
    expect(text2).toContain(`curl -s 'http://u:***@ch.example:8123/' --data-binary "SELECT`);
    expect(text2).not.toContain('secret');
    expect(text2).toContain('not configured (alerts.alertmanagerUrl)');
  });
});
