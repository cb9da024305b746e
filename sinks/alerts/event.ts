/**
 * The alert event of DESIGN.md §6: what goes to the alerts topic (JSON, keyed by fingerprint),
 * the ClickHouse `alerts` table, Alertmanager and the webhook. One event per state change.
 */
export type AlertStatus = 'firing' | 'resolved';
export type RuleKind = 'threshold' | 'rate' | 'anomaly' | 'absent' | 'forecast';
export type Severity = 'info' | 'warning' | 'critical';

export interface AlertEvent {
  version: 1;
  /** Unique per event (fingerprint + status + startsAt/endsAt): consumers dedupe on it. */
  id: string;
  /** Stable per (rule, series): 16 hex digits. */
  fingerprint: string;
  status: AlertStatus;
  rule: { id: string; name: string; kind: RuleKind };
  severity: Severity;
  series: { metric: string; tags: Record<string, string> };
  /**
   * The series' tenant (issue 18); '' the default tenant. Events written before tenants existed
   * have none (`eventTenant` reads them as '').
   */
  tenant: string;
  value: number | null;
  threshold: number | null;
  score: number | null;
  /** RFC 3339. */
  startsAt: string;
  endsAt: string | null;
  observedAt: string;
  explanation: Record<string, unknown>;
  /** The rule's labels (the series tags are in `series.tags`) and its rendered annotations (summary, description, ...). */
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** An event's tenant, '' for events written before the field existed. */
export const eventTenant = (e: Pick<AlertEvent, 'tenant'>): string => (typeof e.tenant === 'string' ? e.tenant : '');
