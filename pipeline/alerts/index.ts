import type { ClickHouseClient } from '@clickhouse/client';
import type { Kafka, Producer } from 'kafkajs';
import { readTopicSince } from '../../sinks/kafka/tail.js';
import { AlertmanagerOutput } from '../../sinks/alertmanager/index.js';
import { WebhookOutput } from '../../sinks/webhook/index.js';
import type { AlertRulesSettings, Transition } from '../../workers/alerts/evaluator.js';
import type { VigilConfig } from '../../core/config/index.js';
import type { Logger } from '../../core/log.js';
import type { Metrics } from '../metrics.js';
import type { AlertEvent } from '../../sinks/alerts/event.js';
import { AlertLifecycle, noteTopicEvent, type TopicAlerts } from './lifecycle.js';
import { loadRuleBundle, type RuleSet } from '../../workers/alerts/rules.js';
import { watchRules } from './watch.js';
import { incidentTarget, incidentsOf } from '../../sinks/clickhouse/incidents.js';

export type { AlertEvent, AlertStatus, RuleKind, Severity } from '../../sinks/alerts/event.js';
export { AlertLifecycle } from './lifecycle.js';
export type { AlertSinks } from './lifecycle.js';

/**
 * Alerting as the pipeline runs it: the rules file (loaded, watched, shipped to the shard
 * threads when it changes), the lifecycle, and its outputs. The ingestor asks it for each shard
 * task's rule settings and hands it every task's transitions.
 */
export class Alerting {
  private rules: RuleSet;
  private readonly sentHash: string[];
  private restored: { fingerprint: string; startsAtMs: number }[] = [];
  private readonly restoredSent: boolean[];
  private readonly lifecycle: AlertLifecycle;
  private readonly producer: Producer;
  private readonly outputs: (AlertmanagerOutput | WebhookOutput)[] = [];
  private watcher: { close(): void } | undefined;
  private repeatTimer: NodeJS.Timeout | undefined;
  /** Events the watcher or repeat timer made, waiting for the next publish (they derive from no offset). */
  private loose: AlertEvent[] = [];
  private readonly listeners: ((events: readonly AlertEvent[]) => void)[] = [];
  readonly widthMs: number;

  constructor(
    private readonly config: VigilConfig,
    kafka: Kafka,
    private readonly clickhouse: ClickHouseClient,
    shards: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.widthMs = config.models.widthSeconds * 1000;
    this.rules = loadRuleBundle(config.alerts.rulesFile, config.alerts.tenantRulesDir);
    this.sentHash = new Array<string>(shards).fill('');
    this.restoredSent = new Array<boolean>(shards).fill(false);
    this.producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
    const stats = (sink: string) => ({
      onSent: (n: number) => metrics.alertsDelivered.inc({ sink }, n),
      onFailed: (code: string) => metrics.sinkErrors.inc({ sink, code }),
      onDropped: (n: number, reason: string) => metrics.alertsDropped.inc({ sink, reason }, n),
    });
    const { alertmanagerUrl, webhookUrl, alertmanagerToken, webhookToken } = config.alerts;
    if (alertmanagerUrl) this.outputs.push(new AlertmanagerOutput({ url: alertmanagerUrl, bearerToken: alertmanagerToken, stats: stats('alertmanager'), logger: log }));
    if (webhookUrl) this.outputs.push(new WebhookOutput({ url: webhookUrl, bearerToken: webhookToken, stats: stats('webhook'), logger: log }));
    const publishedSince = async (sinceMs: number): Promise<TopicAlerts> => {
      const seen: TopicAlerts = { ids: new Map(), last: new Map() };
      await readTopicSince(kafka, config.kafka.alertsTopic, sinceMs, (m) => {
        let event: AlertEvent;
        try {
          event = JSON.parse(m.value?.toString() ?? '') as AlertEvent;
        } catch {
          return; // Not an event of Vigil's: nothing to remember.
        }
        if (typeof event?.id !== 'string' || typeof event.fingerprint !== 'string' || typeof event.observedAt !== 'string' || typeof event.startsAt !== 'string') return;
        noteTopicEvent(seen, event, Number(m.timestamp));
      });
      return seen;
    };
    this.lifecycle = new AlertLifecycle({ producer: this.producer, topic: config.kafka.alertsTopic, clickhouse, database: config.clickhouse.database, others: this.outputs, publishedSince });
    this.lifecycle.setRules(this.rules);
  }

  get counts() {
    return { ...this.lifecycle.counts, active: this.lifecycle.firing };
  }

  async start(): Promise<void> {
    await this.producer.connect();
    this.restored = await this.restore();
    for (const o of this.outputs) o.start();
    const { rulesFile, tenantRulesDir } = this.config.alerts;
    this.log.info({ rules: this.rules.rules.length, file: rulesFile, tenantRulesDir, firing: this.restored.length }, 'alert rules loaded');
    this.watcher = watchRules(rulesFile, {
      current: this.rules,
      ...(tenantRulesDir ? { bundle: { load: () => loadRuleBundle(rulesFile, tenantRulesDir), directories: [tenantRulesDir] } } : {}),
      onReload: (rules) => {
        this.rules = rules;
        this.loose.push(...this.lifecycle.setRules(rules));
        this.metrics.rulesReloads.inc({ result: 'ok' });
        this.log.info({ rules: rules.rules.length }, 'alert rules reloaded');
      },
      onError: (err) => {
        this.metrics.rulesReloads.inc({ result: 'error' });
        this.log.error({ err }, 'alert rules file rejected; the previous rules stay');
      },
    });
    this.repeatTimer = setInterval(() => this.loose.push(...this.lifecycle.repeats()), 5000);
    this.repeatTimer.unref();
  }

  /**
   * The firing alerts after a consumer group (re)join: the lifecycle's, plus what the alerts
   * table says (another member may have fired or resolved them); the shard threads seed from it.
   */
  async restore(): Promise<{ fingerprint: string; startsAtMs: number }[]> {
    const { active, resolved } = await this.lifecycle.restore();
    this.loose.push(...resolved);
    return active;
  }

  /** Rule settings for the next task of `shard`: the text only when the shard has another version. */
  settingsFor(shard: number): AlertRulesSettings {
    const hash = this.rules.hash;
    const first = !this.restoredSent[shard];
    this.restoredSent[shard] = true;
    const text = this.sentHash[shard] === hash ? null : this.rules.text;
    this.sentHash[shard] = hash;
    return { hash, text, file: this.rules.file, active: first ? this.restored : null };
  }

  /** The alert events of one task's transitions (none: the idle tick), plus any waiting loose events. */
  handle(transitions: readonly Transition[]): AlertEvent[] {
    const events = this.lifecycle.handle(transitions);
    if (this.loose.length === 0) return events;
    const all = [...this.loose, ...events];
    this.loose = [];
    return all;
  }

  /** Events `handle` returned that will not be published (their generation ended first): see AlertLifecycle.withdraw. */
  withdraw(events: readonly AlertEvent[]): void {
    this.lifecycle.withdraw(events);
  }

  /** Calls `listener` with the events of every publish once they are on the alerts topic (the demo's story). */
  onPublished(listener: (events: readonly AlertEvent[]) => void): void {
    this.listeners.push(listener);
  }

  /**
   * `stored`: the insert of the anomaly rows the events' task wrote, which their incidents are
   * read with (a failed one is the task's to retry; the events go out regardless).
   */
  async publish(events: readonly AlertEvent[], stored?: Promise<unknown>): Promise<void> {
    await this.placeInIncidents(events, stored);
    const refused = await this.lifecycle.publish(events);
    for (const e of events) this.metrics.alertEvents.inc({ status: e.status });
    if (events.length > 0) for (const listener of this.listeners) listener(events);
    if (refused.length === 0) return;
    this.metrics.alertsDropped.inc({ sink: 'kafka', reason: 'refused' }, refused.length);
    for (const e of refused) {
      this.log.error({ id: e.id, rule: e.rule.id, bytes: JSON.stringify(e).length }, 'the broker refused an alert event for good (larger than the alerts topic allows); it is in the alerts table and the other outputs only');
    }
  }

  /**
   * Names in the explanation of each anomaly alert event the incident its series is part of
   * (`incident`: the `incidents` row's id, or null when the series has no anomaly onset in its
   * episode): the series' earliest onset from a window before the rule's streak began to the
   * bucket that fired it, grouped with the onsets in the table as the incidents pass groups them.
   * A firing event names the incident as it stands when published, its resolve as it stands then
   * (an earlier onset arriving late from a lagging partition can change an incident's id: the
   * resolve has the later word). Set once per event, so a retried publish reads nothing again.
   */
  private async placeInIncidents(events: readonly AlertEvent[], stored: Promise<unknown> | undefined): Promise<void> {
    const { incidents, models } = this.config;
    if (!models.enabled || !incidents.enabled) return;
    const pending = events.filter((e) => e.rule.kind === 'anomaly' && !('incident' in e.explanation));
    if (pending.length === 0) return;
    await stored?.catch(() => undefined);
    const width = models.widthSeconds;
    const targets = pending.map((e) => {
      const startsS = Math.floor(Date.parse(e.startsAt) / 1000);
      const buckets = this.rules.rules.find((r) => r.id === e.rule.id)?.buckets ?? 1;
      return incidentTarget(e.series.metric, e.series.tags, startsS - buckets * width - incidents.windowSeconds, startsS - width);
    });
    const ids = await incidentsOf(this.clickhouse, this.config.clickhouse.database, width, incidents.windowSeconds, incidents.lookbackSeconds, targets);
    pending.forEach((e, i) => (e.explanation['incident'] = ids[i] ?? null));
  }

  async close(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.repeatTimer);
    await Promise.allSettled([...this.outputs.map((o) => o.close()), this.producer.disconnect()]);
  }
}
