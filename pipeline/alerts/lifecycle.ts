import type { ClickHouseClient } from '@clickhouse/client';
import type { Message, Producer } from 'kafkajs';
import { chunks } from '../../core/bytes.js';
import { isPermanentProduceError } from '../../sinks/kafka/errors.js';
import type { Transition } from '../../workers/alerts/evaluator.js';
import { eventTenant, type AlertEvent } from '../../sinks/alerts/event.js';
import { renderAnnotations, tagObject, type CompiledRule, type RuleSet } from '../../workers/alerts/rules.js';

/**
 * The alert lifecycle on the main thread (DESIGN.md §6). Shard threads report condition
 * transitions; this turns them into alert events with the Alertmanager-grade rules users expect:
 *
 * - one firing event per episode: a firing transition for a fingerprint already firing (a replay,
 *   or a restart whose worker state started cold) is dropped, as is a resolve for one not firing;
 * - a rate limit per rule (token bucket) on firing events; a suppressed firing is remembered so
 *   its resolve is suppressed too (nobody heard of it), while resolves of announced alerts are
 *   always delivered;
 * - a repeat of each firing event every `repeatInterval` while the episode lasts;
 * - alerts of a rule removed from the file resolve.
 *
 * The firing set is restored at start from the `alerts` table and topic (the last event of each
 * fingerprint), so a restart neither re-fires nor forgets what it must resolve. Event ids derive
 * from event time (fingerprint, status, episode start), so a replay re-derives the same ids: an
 * event whose id was already published (this process, or any member of the group in the last
 * PUBLISHED_MEMORY_MS, read from the table and topic at each restore) is not published again, even
 * when the episode it belongs to has ended since (a replay after kill -9 re-lives the whole
 * episode).
 */
export const PUBLISHED_MEMORY_MS = 86_400_000;

export interface AlertSinks {
  /** Kafka: the alerts topic (acks=all, key fingerprint). */
  producer: Producer;
  topic: string;
  clickhouse: ClickHouseClient;
  database: string;
  /** Best-effort outputs (Alertmanager, webhook): queued, never blocking. */
  /**
   * What the alerts topic holds since a moment: the topic is written first, so after a crash
   * between the topic and the table only it knows those events. Optional (tests).
   */
  publishedSince?: (sinceMs: number) => Promise<TopicAlerts>;
  others: { send(event: AlertEvent): void }[];
}

/** What orders the events of a fingerprint (isLater). */
export type EventOrder = Pick<AlertEvent, 'status' | 'observedAt' | 'startsAt'>;

/** The events of the alerts topic since a moment, as restore() needs them. */
export interface TopicAlerts {
  /** Every event id, with when it was produced. */
  ids: Map<string, number>;
  /** The last event of each fingerprint (isLater's order); the whole event only when it is a firing one. */
  last: Map<string, EventOrder & { event?: AlertEvent }>;
}

/**
 * Notes one event read from the alerts topic, produced at `atMs`: its id, and whether it is now its
 * fingerprint's last (a day of a storm's events: the whole event kept only while it is a firing one).
 */
export function noteTopicEvent(seen: TopicAlerts, event: AlertEvent, atMs: number): void {
  seen.ids.set(event.id, atMs);
  const last = seen.last.get(event.fingerprint);
  if (last && !isLater(event, last)) return;
  const { status, observedAt, startsAt } = event;
  seen.last.set(event.fingerprint, status === 'firing' ? { status, observedAt, startsAt, event } : { status, observedAt, startsAt });
}

/**
 * Which of two events of a fingerprint is its last, in the order restore() reads the table by:
 * when observed, then the episode (a later start wins), then the status (`resolved` > `firing`).
 */
export function isLater(a: EventOrder, b: EventOrder): boolean {
  const [x, y] = [Date.parse(a.observedAt), Date.parse(b.observedAt)];
  if (x !== y) return x > y;
  const [p, q] = [Date.parse(a.startsAt), Date.parse(b.startsAt)];
  if (p !== q) return p > q;
  return a.status === 'resolved' && b.status === 'firing';
}

interface Active {
  event: AlertEvent;
  lastSentMs: number;
}

export class AlertLifecycle {
  /** The current rules by id. */
  private rules = new Map<string, CompiledRule>();
  private readonly active = new Map<string, Active>();
  private readonly suppressed = new Set<string>();
  private readonly tokens = new Map<string, { left: number; refillAt: number }>();
  /** Ids of events published within PUBLISHED_MEMORY_MS, with when (pruned as they age). */
  private readonly published = new Map<string, number>();
  /** Events `handle` made (their ids entered `published` then), until published or withdrawn. */
  private readonly made = new WeakSet<AlertEvent>();
  /** Events already on the alerts topic (or refused by it for good): a retried publish does not produce them again. */
  private readonly produced = new WeakMap<AlertEvent, 'sent' | 'refused'>();
  private lastPruneMs = 0;
  /** Events produced so far, by status (for the summary line and tests). */
  readonly counts = { firing: 0, resolved: 0, suppressed: 0, repeats: 0 };

  constructor(
    private readonly sinks: AlertSinks,
    private readonly now: () => number = Date.now,
  ) {}

  get firing(): number {
    return this.active.size;
  }

  /**
   * The firing set as the alerts table and topic have it (the last event of each fingerprint), replacing
   * this process's own, as at a restart: after a rebalance another member may have resolved or
   * fired what this one remembers. Events this process published that are not in the table yet
   * belong to uncommitted work, which the shards replay: the transitions re-derive them (and
   * their ids keep them from being published twice). Returns the set for the shard threads, and
   * the resolves of alerts whose rule is gone (to publish).
   * The events of one publish share an `observed_ms`, so ties are broken by the episode (a later
   * start wins) and then the status (`resolved` > `firing`): a short episode fired and resolved in
   * one task restores as resolved, not at the server's whim.
   */
  async restore(): Promise<{ active: { fingerprint: string; startsAtMs: number }[]; resolved: AlertEvent[] }> {
    const since = this.now() - PUBLISHED_MEMORY_MS;
    // The firing ones, and the others whose last event is recent enough for the topic to have one.
    const rs = await this.sinks.clickhouse.query({
      query: `SELECT fingerprint, argMax(status, (observed_ms, starts_at, status)) AS last, argMax(event, (observed_ms, starts_at, status)) AS event FROM ${this.sinks.database}.alerts_dedup GROUP BY fingerprint HAVING last = 'firing' OR max(observed_ms) >= ${since}`,
      format: 'JSONEachRow',
    });
    const table = new Map<string, AlertEvent>();
    for (const row of await rs.json<{ fingerprint: string; event: string }>()) table.set(row.fingerprint, JSON.parse(row.event) as AlertEvent);
    const ids = await this.sinks.clickhouse.query({ query: `SELECT id, max(observed_ms) AS at FROM ${this.sinks.database}.alerts WHERE observed_ms >= ${since} GROUP BY id`, format: 'JSONEachRow' });
    for (const row of await ids.json<{ id: string; at: string | number }>()) this.published.set(row.id, Number(row.at));
    this.active.clear();
    for (const [fp, event] of table) if (event.status === 'firing') this.active.set(fp, { event, lastSentMs: this.now() });
    if (this.sinks.publishedSince) {
      const topic = await this.sinks.publishedSince(since);
      for (const [id, at] of topic.ids) this.published.set(id, Math.max(at, this.published.get(id) ?? at));
      // An event the topic has and the table missed (its publisher killed between the two writes)
      // is the fingerprint's last: a resolve there ends the episode the table still has firing, a
      // firing there starts one the table lacks. Nobody writes it to the table later (a replay
      // finds its id published), so every later restore needs it from the topic. The table can
      // have the later event too: one the broker refused for good goes to the table only.
      for (const [fp, last] of topic.last) {
        const stored = table.get(fp);
        if (stored && !isLater(last, stored)) continue;
        if (last.event) this.active.set(fp, { event: last.event, lastSentMs: this.now() });
        else this.active.delete(fp);
      }
    }
    // Alerts of rules removed while no member ran resolve now, as at a reload.
    const resolved = this.resolveRemoved();
    return { active: [...this.active].map(([fingerprint, a]) => ({ fingerprint, startsAtMs: Date.parse(a.event.startsAt) })), resolved };
  }

  /** New rules; alerts of rules that are gone resolve (returned for publishing). */
  setRules(rules: RuleSet): AlertEvent[] {
    this.rules = new Map(rules.rules.map((r) => [r.id, r]));
    return this.resolveRemoved();
  }

  private resolveRemoved(): AlertEvent[] {
    const out: AlertEvent[] = [];
    for (const [fp, a] of this.active) {
      if (this.rules.has(a.event.rule.id)) continue;
      this.active.delete(fp);
      out.push(this.resolvedOf(a.event, this.now(), { reason: 'rule removed' }));
    }
    return out;
  }

  private rule(id: string): CompiledRule | undefined {
    return this.rules.get(id);
  }

  private allow(rule: CompiledRule): boolean {
    if (!rule.rateLimit) return true;
    const now = this.now();
    let t = this.tokens.get(rule.id);
    if (!t || now >= t.refillAt) this.tokens.set(rule.id, (t = { left: rule.rateLimit.max, refillAt: now + rule.rateLimit.perMs }));
    if (t.left <= 0) return false;
    t.left--;
    return true;
  }

  /** Alert events for the transitions of one task, in order. */
  handle(transitions: readonly Transition[]): AlertEvent[] {
    const out: AlertEvent[] = [];
    this.prune();
    for (const t of transitions) {
      const rule = this.rule(t.ruleId);
      if (t.status === 'firing') {
        if (this.active.has(t.fingerprint) || this.suppressed.has(t.fingerprint) || !rule) continue;
        // A replay of an episode already announced: firing again, but not published again.
        const known = this.published.has(firingId(t.fingerprint, t.startsAtMs));
        if (!known && !this.allow(rule)) {
          this.suppressed.add(t.fingerprint);
          this.counts.suppressed++;
          continue;
        }
        const event = this.firingOf(rule, t);
        this.active.set(t.fingerprint, { event, lastSentMs: this.now() });
        if (!known) out.push(event);
      } else {
        if (this.suppressed.delete(t.fingerprint)) continue;
        const a = this.active.get(t.fingerprint);
        if (!a) continue;
        this.active.delete(t.fingerprint);
        const resolved = this.resolvedOf(a.event, t.atMs, t.explanation, t.value, t.score);
        if (this.published.has(resolved.id)) continue;
        out.push(resolved);
      }
    }
    for (const e of out) {
      this.published.set(e.id, this.now());
      this.made.add(e);
    }
    return out;
  }

  /**
   * Events `handle` made that will not be published after all (their work belongs to a consumer
   * group generation that ended before their turn): forgotten as published, so that this process,
   * owning their series again, publishes them when it re-derives them. Those already on the topic
   * (a publish retried past its generation's end) stay known, as do repeats and other events not
   * made by `handle` (a repeat has its firing's id).
   */
  withdraw(events: readonly AlertEvent[]): void {
    for (const e of events) if (this.made.delete(e) && !this.produced.has(e)) this.published.delete(e.id);
  }

  private prune(): void {
    const now = this.now();
    if (now - this.lastPruneMs < 60_000) return;
    this.lastPruneMs = now;
    for (const [id, at] of this.published) if (at < now - PUBLISHED_MEMORY_MS) this.published.delete(id);
  }

  /** Firing events due for a repeat (the episode outlived the rule's repeat interval since the last send). */
  repeats(): AlertEvent[] {
    const now = this.now();
    const out: AlertEvent[] = [];
    for (const a of this.active.values()) {
      const interval = this.rule(a.event.rule.id)?.repeatIntervalMs ?? 0;
      if (interval <= 0 || now - a.lastSentMs < interval) continue;
      a.lastSentMs = now;
      a.event = { ...a.event, observedAt: new Date(now).toISOString() };
      out.push(a.event);
      this.counts.repeats++;
    }
    return out;
  }

  private firingOf(rule: CompiledRule, t: Transition): AlertEvent {
    const tags = tagObject(t.tags);
    const startsAt = new Date(t.startsAtMs).toISOString();
    const observedAt = new Date(this.now()).toISOString();
    const value = Number.isFinite(t.value) ? t.value : null;
    return {
      version: 1,
      id: firingId(t.fingerprint, t.startsAtMs),
      fingerprint: t.fingerprint,
      status: 'firing',
      rule: { id: rule.id, name: rule.name, kind: rule.kind },
      severity: rule.severity,
      series: { metric: t.metric, tags },
      tenant: t.tenant,
      value,
      threshold: rule.kind === 'absent' ? null : rule.threshold,
      score: t.score,
      startsAt,
      endsAt: null,
      observedAt,
      explanation: t.explanation,
      labels: { ...rule.labels },
      annotations: renderAnnotations(rule, { value, score: t.score, metric: t.metric, tags, status: 'firing', startsAt, observedAt, fingerprint: t.fingerprint, explanation: t.explanation }),
    };
  }

  private resolvedOf(firing: AlertEvent, atMs: number, explanation: Record<string, unknown>, value = Number.NaN, score: number | null = null): AlertEvent {
    const endsAt = new Date(Math.max(atMs, Date.parse(firing.startsAt))).toISOString();
    const rule = this.rule(firing.rule.id);
    const observedAt = new Date(this.now()).toISOString();
    const v = Number.isFinite(value) ? value : null;
    return {
      ...firing,
      id: resolvedId(firing.fingerprint, Date.parse(firing.startsAt)),
      status: 'resolved',
      value: v,
      score,
      endsAt,
      observedAt,
      explanation,
      annotations: rule
        ? renderAnnotations(rule, { value: v, score, metric: firing.series.metric, tags: firing.series.tags, status: 'resolved', startsAt: firing.startsAt, observedAt, fingerprint: firing.fingerprint, explanation })
        : firing.annotations,
    };
  }

  /**
   * Makes events durable: the alerts topic (acks=all) and the `alerts` table; only then are they
   * handed to the best-effort outputs. Throws on a Kafka or ClickHouse failure (the caller retries:
   * an offset is not committed past a task whose alerts are not durable). Events go to Kafka in
   * requests of at most MAX_ALERT_REQUEST_BYTES (a storm of thousands of events would pass the
   * broker's request limit in one); an event the broker refuses for good (larger than the topic's
   * `max.message.bytes`) is set aside, returned, and still written to the table and the outputs.
   */
  async publish(events: readonly AlertEvent[]): Promise<AlertEvent[]> {
    if (events.length === 0) return [];
    // A retry after the table insert failed: what reached the topic the first time stays there once.
    const records = events.filter((e) => !this.produced.has(e)).map((e) => ({ event: e, message: { key: e.fingerprint, value: JSON.stringify(e), headers: { 'vigil-alert-status': e.status } } }));
    for (const chunk of chunks(records, (r) => r.message.value.length + r.message.key.length + 64, MAX_ALERT_REQUEST_BYTES)) {
      await this.produce(chunk);
    }
    await this.sinks.clickhouse.insert({ table: `${this.sinks.database}.alerts`, values: events.map(row), format: 'JSONEachRow' });
    for (const e of events) {
      this.made.delete(e);
      if (e.status === 'firing') this.counts.firing++;
      else this.counts.resolved++;
      for (const o of this.sinks.others) o.send(e);
    }
    return events.filter((e) => this.produced.get(e) === 'refused');
  }

  private async produce(records: readonly { event: AlertEvent; message: Message }[]): Promise<void> {
    try {
      await this.sinks.producer.send({ topic: this.sinks.topic, acks: -1, messages: records.map((r) => r.message) });
      for (const r of records) this.produced.set(r.event, 'sent');
    } catch (err) {
      if (!isPermanentProduceError(err)) throw err;
      if (records.length === 1) this.produced.set((records[0] as { event: AlertEvent }).event, 'refused');
      else for (const r of records) await this.produce([r]);
    }
  }
}

/** Kafka's default request and record limits are 1 MiB; half leaves room for the protocol. */
export const MAX_ALERT_REQUEST_BYTES = 512 * 1024;

const firingId = (fingerprint: string, startsAtMs: number): string => `${fingerprint}-firing-${startsAtMs}`;
const resolvedId = (fingerprint: string, startsAtMs: number): string => `${fingerprint}-resolved-${startsAtMs}`;

const seconds = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

function row(e: AlertEvent): Record<string, unknown> {
  return {
    id: e.id,
    fingerprint: e.fingerprint,
    status: e.status,
    rule_id: e.rule.id,
    rule_name: e.rule.name,
    rule_kind: e.rule.kind,
    severity: e.severity,
    metric: e.series.metric,
    'tags.key': Object.keys(e.series.tags),
    'tags.value': Object.values(e.series.tags),
    tenant: eventTenant(e),
    value: e.value,
    threshold: e.threshold,
    score: e.score,
    starts_at: seconds(e.startsAt),
    ends_at: e.endsAt ? seconds(e.endsAt) : null,
    observed_at: seconds(e.observedAt),
    observed_ms: Date.parse(e.observedAt),
    explanation: JSON.stringify(e.explanation),
    labels: JSON.stringify(e.labels),
    annotations: JSON.stringify(e.annotations),
    event: JSON.stringify(e),
  };
}
