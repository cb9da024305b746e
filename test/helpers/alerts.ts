import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kafka, Producer } from 'kafkajs';
import { expect } from 'vitest';
import type { AlertEvent } from '../../sinks/alerts/event.js';
import { fingerprint } from '../../workers/alerts/evaluator.js';
import { seriesId, sortTags } from '../../workers/series.js';
import { kcat } from './kcat.js';

export const MINUTE_MS = 60_000;

/** The fingerprint Vigil gives the alert of `ruleId` on the series `metric` + `tags`. */
export const fingerprintOf = (ruleId: string, metric: string, tags: Record<string, string>): string => fingerprint(ruleId, seriesId(metric, sortTags(Object.entries(tags).flat())));

/** One alert event as kcat (not Vigil's kafkajs) reads it off the alerts topic. */
export interface TopicAlert {
  key: string;
  /** Kafka message timestamp (the producer's create time), ms. */
  ts: number;
  offset: number;
  headers: Record<string, string>;
  event: AlertEvent;
}

interface KcatEnvelope {
  offset: number;
  ts: number;
  key: string | null;
  payload: string | null;
  headers?: string[];
}

/** Every message of the alerts topic, read from the beginning to its current end with kcat. */
export async function readAlertsTopic(broker: string, topic: string): Promise<TopicAlert[]> {
  const out = await kcat(['-b', broker, '-t', topic, '-C', '-J', '-o', 'beginning', '-e', '-q']);
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const m = JSON.parse(line) as KcatEnvelope;
      const headers: Record<string, string> = {};
      const h = m.headers ?? [];
      for (let i = 0; i + 1 < h.length; i += 2) headers[h[i] as string] = h[i + 1] as string;
      return { key: m.key ?? '', ts: m.ts, offset: m.offset, headers, event: JSON.parse(m.payload ?? 'null') as AlertEvent };
    });
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** The alert event contract of DESIGN.md §6 and sinks/alerts/event.ts, for one message. */
export function expectWellFormed(m: TopicAlert): void {
  const e = m.event;
  const where = `${e.rule.id} ${e.status} ${e.id}`;
  expect(Object.keys(e).sort(), where).toEqual(
    ['version', 'id', 'fingerprint', 'status', 'rule', 'severity', 'series', 'tenant', 'value', 'threshold', 'score', 'startsAt', 'endsAt', 'observedAt', 'explanation', 'labels', 'annotations'].sort(),
  );
  expect(e.version, where).toBe(1);
  expect(e.id, where).toMatch(/\S/);
  expect(e.fingerprint, where).toMatch(/^[0-9a-f]{16}$/);
  expect(m.key, `${where}: message key`).toBe(e.fingerprint);
  expect(m.headers['vigil-alert-status'], where).toBe(e.status);
  expect(['firing', 'resolved'], where).toContain(e.status);
  expect(Object.keys(e.rule).sort(), where).toEqual(['id', 'kind', 'name']);
  expect(['threshold', 'rate', 'anomaly', 'absent'], where).toContain(e.rule.kind);
  expect(['info', 'warning', 'critical'], where).toContain(e.severity);
  expect(typeof e.series.metric, where).toBe('string');
  expect(typeof e.tenant, where).toBe('string');
  for (const v of Object.values(e.series.tags)) expect(typeof v, where).toBe('string');
  for (const k of ['value', 'threshold', 'score'] as const) {
    const v = e[k];
    if (v !== null) expect(Number.isFinite(v), `${where}: ${k} = ${String(v)}`).toBe(true);
  }
  for (const t of [e.startsAt, e.observedAt]) expect(t, where).toMatch(RFC3339);
  if (e.status === 'firing') expect(e.endsAt, where).toBeNull();
  else {
    expect(e.endsAt, where).toMatch(RFC3339);
    expect(Date.parse(e.endsAt ?? '')).toBeGreaterThanOrEqual(Date.parse(e.startsAt));
  }
  expect(typeof e.explanation, where).toBe('object');
  expect(e.explanation, where).not.toBeNull();
  for (const v of [...Object.values(e.annotations), ...Object.values(e.labels)]) {
    expect(typeof v, where).toBe('string');
    // Rendered: no template syntax left.
    expect(v, where).not.toContain('{{');
  }
}

/** Groups the topic's events of one rule by fingerprint. */
export function byFingerprint(msgs: readonly TopicAlert[], ruleId: string): Map<string, TopicAlert[]> {
  const out = new Map<string, TopicAlert[]>();
  for (const m of msgs) {
    if (m.event.rule.id !== ruleId) continue;
    const list = out.get(m.event.fingerprint);
    if (list) list.push(m);
    else out.set(m.event.fingerprint, [m]);
  }
  return out;
}

/** The single firing/resolved pair of a rule's only fingerprint (fails on anything else). */
export function episodeOf(msgs: readonly TopicAlert[], ruleId: string): { firing: AlertEvent; resolved: AlertEvent | undefined } {
  const groups = byFingerprint(msgs, ruleId);
  expect([...groups.keys()], `fingerprints of ${ruleId}`).toHaveLength(1);
  const list = [...groups.values()][0] as TopicAlert[];
  const statuses = list.map((m) => m.event.status);
  expect(statuses.filter((s) => s === 'firing'), `${ruleId}: ${statuses.join(',')}`).toHaveLength(1);
  expect(statuses.filter((s) => s === 'resolved').length, `${ruleId}: ${statuses.join(',')}`).toBeLessThanOrEqual(1);
  expect(statuses[0], `${ruleId}: the firing event comes first`).toBe('firing');
  return { firing: (list[0] as TopicAlert).event, resolved: list[1]?.event };
}

export const iso = (ms: number): string => new Date(ms).toISOString();

/** A rules file in a directory of its own (watched by the pipeline), replaced by rename as editors do. */
export class RulesFile {
  readonly dir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
  readonly path = join(this.dir, 'rules.yaml');

  constructor(text: string) {
    writeFileSync(this.path, text);
  }

  write(text: string): void {
    const tmp = join(this.dir, `.rules-${randomBytes(4).toString('hex')}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, this.path);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Point {
  metric_id: string;
  value: number;
  timestamp: string;
  metric_type?: 'gauge' | 'counter';
  tags: Record<string, string>;
}

/**
 * Produces JSON points one message per event-time step (the watermark moves per message), with
 * kafkajs: the reading side of these tests is kcat.
 */
export class PointProducer {
  private producer: Producer | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly topic: string,
  ) {}

  async send(steps: readonly (readonly Point[])[]): Promise<void> {
    if (!this.producer) {
      this.producer = this.kafka.producer();
      await this.producer.connect();
    }
    const messages = steps.filter((s) => s.length > 0).map((points) => ({ value: JSON.stringify(points) }));
    if (messages.length > 0) await this.producer.send({ topic: this.topic, acks: -1, messages });
  }

  async close(): Promise<void> {
    await this.producer?.disconnect();
  }
}

/** What Alertmanager's `GET /api/v2/alerts` lists for one Vigil fingerprint. */
export interface ListedAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  status: { state: string };
}

export async function alertmanagerAlerts(url: string, fingerprint: string): Promise<ListedAlert[]> {
  const res = await fetch(`${url}/api/v2/alerts?filter=${encodeURIComponent(`vigil_fingerprint="${fingerprint}"`)}`);
  if (res.status !== 200) throw new Error(`Alertmanager answered ${res.status}`);
  return (await res.json()) as ListedAlert[];
}
