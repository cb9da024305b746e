import { eventTenant, type AlertEvent } from '../alerts/event.js';

/** One element of the body of Alertmanager's `POST /api/v2/alerts`. */
export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  /** Absent in a firing alert until it is sent (the output sets it to now + a margin per POST). */
  endsAt?: string;
  generatorURL?: string;
}

/** Labels Vigil sets itself; they win over series tags and rule labels of the same name. */
export const RESERVED_LABELS = ['alertname', 'severity', 'rule_id', 'rule_kind', 'vigil_fingerprint', 'metric', 'tenant'] as const;

/**
 * Alertmanager refuses the whole request (400) for one label or annotation name outside
 * `[a-zA-Z_][a-zA-Z0-9_]*`: every other character becomes `_`, and a leading digit gets a `_` prefix.
 */
export function sanitizeLabelName(name: string): string {
  const out = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(out) ? `_${out}` : out;
}

/**
 * Names in sorted order so that two source names that sanitise alike (`a-b`, `a.b`) give the same
 * winner in every event of an alert: Alertmanager identifies an alert by its whole label set.
 * Empty values are left out, as Alertmanager drops them.
 */
function putSanitized(into: Record<string, string>, from: Record<string, string>): void {
  for (const name of Object.keys(from).sort()) {
    const value = from[name];
    if (name === '' || value === undefined || value === '') continue;
    into[sanitizeLabelName(name)] = value;
  }
}

/**
 * Labels: series tags, then the event's rendered `labels` (rule labels), then Vigil's own:
 * `alertname` = rule name (what Alertmanager routes, groups, silences and inhibits by, like the
 * `alert:` name of a Prometheus rule; the rule id is `rule_id`), `severity`, `rule_id`,
 * `rule_kind`, `vigil_fingerprint`, `metric`, and `tenant` for a named tenant's series (what
 * Alertmanager routes a tenant's alerts by; none for the default tenant).
 */
export function alertmanagerLabels(event: AlertEvent): Record<string, string> {
  const labels: Record<string, string> = {};
  putSanitized(labels, event.series.tags);
  putSanitized(labels, event.labels);
  const own: Record<(typeof RESERVED_LABELS)[number], string> = {
    alertname: event.rule.name === '' ? event.rule.id : event.rule.name,
    severity: event.severity,
    rule_id: event.rule.id,
    rule_kind: event.rule.kind,
    vigil_fingerprint: event.fingerprint,
    metric: event.series.metric,
    tenant: eventTenant(event),
  };
  for (const name of RESERVED_LABELS) if (own[name] !== '') labels[name] = own[name];
  return labels;
}

/** Never throws: an `explanation` JSON cannot represent (BigInt, a cycle) is replaced by a note. */
function explanationJson(explanation: Record<string, unknown>): string {
  try {
    return JSON.stringify(explanation);
  } catch (err) {
    return JSON.stringify({ error: `explanation not serialisable: ${(err as Error).message}` });
  }
}

/** The event's annotations (names sanitised) plus `value`, `threshold`, `score` (when not null), `explanation` (JSON) and `incident` (an anomaly alert's incident id, when it has one). */
export function alertmanagerAnnotations(event: AlertEvent): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (const name of Object.keys(event.annotations).sort()) {
    const value = event.annotations[name];
    if (name !== '' && value !== undefined) annotations[sanitizeLabelName(name)] = value;
  }
  annotations['value'] = String(event.value);
  if (event.threshold !== null) annotations['threshold'] = String(event.threshold);
  if (event.score !== null) annotations['score'] = String(event.score);
  annotations['explanation'] = explanationJson(event.explanation);
  const incident = event.explanation['incident'];
  if (typeof incident === 'string') annotations['incident'] = incident;
  return annotations;
}

function isoTime(text: string | null, fallbackMs: number): string {
  const ms = text === null ? NaN : Date.parse(text);
  return new Date(Number.isNaN(ms) ? fallbackMs : ms).toISOString();
}

/**
 * The Alertmanager form of an event. A resolved alert has `endsAt` = the event's endsAt (else its
 * observedAt), never before startsAt (Alertmanager refuses that); a firing one gets endsAt when sent.
 */
export function toAlertmanagerAlert(event: AlertEvent, generatorURL?: string): AlertmanagerAlert {
  const now = Date.now();
  const startsAt = isoTime(event.startsAt, now);
  const alert: AlertmanagerAlert = { labels: alertmanagerLabels(event), annotations: alertmanagerAnnotations(event), startsAt };
  if (event.status === 'resolved') {
    const endsAt = isoTime(event.endsAt ?? event.observedAt, now);
    alert.endsAt = endsAt < startsAt ? startsAt : endsAt;
  }
  if (generatorURL !== undefined) alert.generatorURL = generatorURL;
  return alert;
}
