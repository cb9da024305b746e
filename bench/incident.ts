import { Partitioners, type Kafka, type Message } from 'kafkajs';
import { setTimeout as sleep } from 'node:timers/promises';
import { encode, rng, type Point, type SeriesSpec } from './generator.js';

/**
 * The demo's scripted incident (`vigil start`, issue 16): four series of two hosts and a key,
 * normal for two hours of history, then live, one message a second, through a script that makes
 * each kind of the demo rules (rules/demo.yaml) fire and then resolve within about two minutes:
 *
 * | seconds after the start | what happens | rule |
 * |---|---|---|
 * | 10–50 | demo-web-1's CPU at about 96 % | `cpu-high` (threshold, above 90 for 30 s) |
 * | 20–30 | 20 unauthorized accesses to demo-key | `auth-failures` (rate, more than 10 in 30 s) |
 * | 30–70 | demo-db-1 stops reporting | `host-silent` (absent for 30 s) |
 * | 50–80 | demo-key read ten times as often | `key-access-anomaly` (ensemble score ≥ 0.8, 2 buckets) |
 *
 * With 10 s buckets closed 2 s after their end, they fire at about 32 (auth), 42 (cpu), 62
 * (absent) and 72 s (anomaly), and resolve by about 122 s (the anomaly last: the detectors score
 * the return to normal high for two more buckets).
 *
 * The start is the first 10 s boundary after the live part begins, so the script's edges fall on
 * bucket edges. Every message has the key `demo-incident`: the four series share one partition,
 * whose watermark the others move while demo-db-1 is silent. Deterministic for a seed.
 */
export const INCIDENT_KEY = 'demo-incident';

export const INCIDENT_SCRIPT = {
  cpuHigh: [10, 50],
  authBurst: [20, 30],
  hostSilent: [30, 70],
  accessSurge: [50, 80],
} as const satisfies Record<string, readonly [number, number]>;

/** Seconds after the start by which every scripted alert has fired and resolved (with 10 s buckets). */
export const INCIDENT_SECONDS = 130;

export const INCIDENT_SERIES = {
  webCpu: { metric: 'system.cpu.usage_total', type: 'gauge', tags: { host: 'demo-web-1', region: 'eu-west-1' }, base: 35, amplitude: 5, noise: 2, decimals: 1 },
  dbCpu: { metric: 'system.cpu.usage_total', type: 'gauge', tags: { host: 'demo-db-1', region: 'eu-west-1' }, base: 25, amplitude: 3, noise: 2, decimals: 1 },
  authFailures: { metric: 'crypto.key.unauthorized_access', type: 'counter', tags: { key_id: 'demo-key', key_type: 'signing' }, base: 0, amplitude: 0, noise: 0 },
  keyAccess: { metric: 'crypto.key.access_count', type: 'counter', tags: { key_id: 'demo-key', key_type: 'signing' }, base: 20, amplitude: 0, noise: 3 },
} as const satisfies Record<string, SeriesSpec>;

const within = (t: number, [from, to]: readonly [number, number]): boolean => t >= from && t < to;

/**
 * The incident's state: counters accumulate across calls, so steps must come in time order.
 * `step(tsMs, seconds, t)`: the points of one message covering `seconds` of time ending at
 * `tsMs`, `t` the seconds since the script's start (negative: before it, normal).
 */
export class Incident {
  private readonly rand: () => number;
  private auth = 0;
  private access = 0;

  constructor(seed = 1) {
    this.rand = rng(seed);
  }

  step(tsMs: number, seconds: number, t: number): Point[] {
    const s = INCIDENT_SERIES;
    const noise = (n: number) => n * (this.rand() * 2 - 1);
    const phase = (2 * Math.PI * tsMs) / 600_000;
    const round1 = (v: number) => Math.round(v * 10) / 10;
    const web = within(t, INCIDENT_SCRIPT.cpuHigh) ? 96 + noise(1.5) : s.webCpu.base + s.webCpu.amplitude * Math.sin(phase) + noise(s.webCpu.noise);
    if (within(t, INCIDENT_SCRIPT.authBurst)) this.auth += 2 * seconds;
    const surge = within(t, INCIDENT_SCRIPT.accessSurge);
    for (let i = 0; i < seconds; i++) this.access += Math.round(surge ? 200 + noise(10) : s.keyAccess.base + noise(s.keyAccess.noise));
    const points: Point[] = [
      { series: s.webCpu, value: round1(web), tsMs },
      { series: s.authFailures, value: this.auth, tsMs },
      { series: s.keyAccess, value: this.access, tsMs },
    ];
    if (!within(t, INCIDENT_SCRIPT.hostSilent)) points.push({ series: s.dbCpu, value: round1(s.dbCpu.base + s.dbCpu.amplitude * Math.sin(phase + 1) + noise(s.dbCpu.noise)), tsMs });
    return points;
  }
}

export interface IncidentOptions {
  topic: string;
  /** Normal history before the live part, one message per 10 s (the detectors' learning period). */
  historyMs: number;
  seed?: number;
  signal?: AbortSignal;
  /** Called once with the script's start (epoch ms), when the live part begins. */
  onStart?: (startMs: number) => void;
}

/**
 * Produces the history at full speed, then one message a second (event time = now) until
 * `signal`: the script once, then normal values.
 */
export async function produceIncident(kafka: Kafka, o: IncidentOptions): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const incident = new Incident(o.seed ?? 1);
  const message = (points: Point[]): Message => ({ key: INCIDENT_KEY, value: encode(points, 'json') });
  try {
    const now = Date.now();
    const historyStart = Math.floor((now - o.historyMs) / 10_000) * 10_000;
    let batch: Message[] = [];
    let last = historyStart - 10_000;
    for (let ts = historyStart; ts < now - 10_000; ts += 10_000) {
      batch.push(message(incident.step(ts, 10, -Infinity)));
      last = ts;
      if (batch.length >= 500) {
        await producer.send({ topic: o.topic, acks: -1, messages: batch });
        batch = [];
      }
    }
    if (batch.length > 0) await producer.send({ topic: o.topic, acks: -1, messages: batch });
    const startMs = Math.ceil((Date.now() + 1000) / 10_000) * 10_000;
    o.onStart?.(startMs);
    // Live: one message a second on the wall clock, for the second that just began.
    for (let next = Math.floor(Date.now() / 1000) * 1000; !o.signal?.aborted; next += 1000) {
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait, undefined, { signal: o.signal }).catch(() => undefined);
      if (o.signal?.aborted) break;
      const seconds = Math.max(1, Math.round((next - last) / 1000));
      last = next;
      await producer.send({ topic: o.topic, acks: -1, messages: [message(incident.step(next, seconds, (next - startMs) / 1000))] });
    }
  } finally {
    await producer.disconnect();
  }
}
