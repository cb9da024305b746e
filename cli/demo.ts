import type { VigilConfig } from '../core/config/index.js';
import { redactUrls } from '../core/redact.js';
import type { AlertEvent } from '../sinks/alerts/event.js';

/**
 * What `vigil start` tells while the demo runs: a line per alert event as it reaches the alerts
 * topic, and on exit a recap of the alerts and of where each output can be seen.
 */

/** The demo's bucket width: the scripted incident's story fits in minutes of 10 s buckets. */
export const DEMO_WIDTH_SECONDS = 10;

/** `HH:MM:SS` of an epoch time, in local time (what the terminal's clock shows). */
export const clock = (ms: number): string => new Date(ms).toTimeString().slice(0, 8);

/** When an event happened in event time: a firing one at its start, a resolved one at its end. */
const eventAt = (e: AlertEvent): number => Date.parse(e.status === 'firing' ? e.startsAt : (e.endsAt ?? e.observedAt));

/** One alert event as the demo tells it: `12:01:05 FIRING   HighCpuUsage (threshold) system.cpu.usage_total{host=demo-web-1}: CPU at 96.1% on demo-web-1`. */
export function storyLine(e: AlertEvent): string {
  const at = eventAt(e);
  const tags = Object.entries(e.series.tags).map(([k, v]) => `${k}=${v}`).join(',');
  // The summary tells why an alert fires; rendered again at the resolve it can read as if it still
  // did (an absent rule's "no point for 30s"), so a resolve shows the value that ended it.
  const summary = e.status === 'firing' ? e.annotations['summary'] : e.value === null || Number.isNaN(e.value) ? undefined : `value ${+e.value.toFixed(2)}`;
  return `${clock(at)} ${e.status.toUpperCase().padEnd(8)} ${e.rule.name} (${e.rule.kind}) ${e.series.metric}{${tags}}${summary ? `: ${summary}` : ''}`;
}

/** What the demo did and where each output can be seen, printed on exit. */
export function recap(config: VigilConfig, story: readonly AlertEvent[], local: boolean): string {
  const db = config.clickhouse.database;
  const sql = (q: string) =>
    local ? `clickhouse-client${config.infra.clickhouseTcpPort === 9000 ? '' : ` --port ${config.infra.clickhouseTcpPort}`} --query "${q}"` : `curl -s '${redactUrls(config.clickhouse.url)}/' --data-binary "${q}"`;
  const byAlert = new Map<string, { e: AlertEvent; firing?: string; resolved?: string }>();
  for (const e of story) {
    const key = `${e.fingerprint}@${e.startsAt}`;
    const entry = byAlert.get(key) ?? { e };
    entry[e.status] = clock(eventAt(e));
    byAlert.set(key, entry);
  }
  const lines = [
    '',
    'Vigil demo recap',
    `  alert events: ${story.filter((e) => e.status === 'firing').length} fired, ${story.filter((e) => e.status === 'resolved').length} resolved (rules: ${config.alerts.rulesFile || 'none'})`,
    ...[...byAlert.values()].map(({ e, firing, resolved }) => `    ${e.rule.name.padEnd(24)} ${Object.values(e.series.tags).join(' ').padEnd(24)} fired ${firing ?? '(before this run)'}, ${resolved ? `resolved ${resolved}` : 'still firing'}`),
    '  where to see each output:',
    `    alert history   ${sql(`SELECT starts_at, ends_at, status, rule_name, metric, tags.value FROM ${db}.alerts_dedup ORDER BY observed_ms`)}`,
    `    anomalies       ${sql(`SELECT bucket_start, metric, tags.value, value, expected, lower, upper, score FROM ${db}.anomalies_dedup WHERE anomaly ORDER BY bucket_start`)}`,
    `    rollups         ${sql(`SELECT bucket_start, metric, tags.value, min, mean, max FROM ${db}.rollups_merged WHERE metric = 'system.cpu.usage_total' AND tags.value[indexOf(tags.key, 'host')] = 'demo-web-1' AND width_s = ${config.models.widthSeconds} ORDER BY bucket_start DESC LIMIT 20`)}`,
    `    alerts topic    kcat -b ${config.kafka.brokers[0] ?? '127.0.0.1:9092'} -C -t ${config.kafka.alertsTopic} -e`,
    `    Alertmanager    ${config.alerts.alertmanagerUrl ? `${redactUrls(config.alerts.alertmanagerUrl)}/#/alerts (what fires now; resolved alerts leave it)` : 'not configured (alerts.alertmanagerUrl)'}`,
    `    self-metrics    curl -s http://${config.http.host}:${config.http.port}/metrics | grep ^vigil_`,
    '',
  ];
  return lines.join('\n');
}

