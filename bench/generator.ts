import { mulberry32 } from '../models/random.js';
import { Partitioners, type Kafka, type Message } from 'kafkajs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Realistic metric streams (the original brief's host, service and crypto-key metrics) encoded
 * in any of Vigil's input formats. Values follow smooth daily-ish cycles with noise; counters
 * only grow. Deterministic for a given seed, so a run can be reproduced and checked.
 */
/** `ndjson`: JSON objects one per line (what JSONEachRow readers such as clickhouse-client take). */
export type GenFormat = 'json' | 'ndjson' | 'influx' | 'prometheus';

export interface SeriesSpec {
  metric: string;
  tags: Record<string, string>;
  type: 'gauge' | 'counter';
  base: number;
  amplitude: number;
  noise: number;
  /**
   * Decimals a gauge's value keeps (default 3): the resolution its source reports. Noise below
   * it is information no codec can remove, so it sets the bytes per point a table needs.
   */
  decimals?: number;
}

/**
 * Gauges at the resolution agents report them (issue 19): percentages to 0.1 (as top, sar and
 * Telegraf's rounded fields show them), latency to 0.1 ms; counters are integers.
 */
const METRICS: Omit<SeriesSpec, 'tags'>[] = [
  { metric: 'system.cpu.usage_total', type: 'gauge', base: 45, amplitude: 25, noise: 5, decimals: 1 },
  { metric: 'system.memory.usage_percent', type: 'gauge', base: 60, amplitude: 10, noise: 2, decimals: 1 },
  { metric: 'http.server.requests', type: 'counter', base: 50, amplitude: 20, noise: 5 },
  { metric: 'http.server.latency_ms', type: 'gauge', base: 120, amplitude: 40, noise: 15, decimals: 1 },
  { metric: 'crypto.key.access_count', type: 'counter', base: 10, amplitude: 5, noise: 2 },
  { metric: 'crypto.key.unauthorized_access', type: 'counter', base: 0.05, amplitude: 0, noise: 0.05 },
];

/** Small deterministic PRNG (models/random.ts). */
export const rng = mulberry32;

export function makeSeries(count: number): SeriesSpec[] {
  return Array.from({ length: count }, (_, i) => {
    const m = METRICS[i % METRICS.length] as Omit<SeriesSpec, 'tags'>;
    const n = Math.floor(i / METRICS.length);
    const tags: Record<string, string> = m.metric.startsWith('crypto.')
      ? { key_id: `key-${n}`, key_type: n % 2 ? 'signing' : 'encryption' }
      : m.metric.startsWith('http.')
        ? { service: `svc-${n % 50}`, instance: `i-${n}` }
        : { host: `host-${n}`, region: ['eu-west-1', 'us-east-1', 'ap-south-1'][n % 3] as string };
    return { ...m, tags };
  });
}

/**
 * The tenant of generated series `i` among `tenants`: `t0` is the noisy one, with every other
 * series (half the points, produced round-robin over the series); the rest share the others.
 */
export function tenantOf(i: number, tenants: number): string {
  if (tenants <= 1) return 't0';
  return i % 2 === 0 ? 't0' : `t${1 + (((i - 1) / 2) % (tenants - 1))}`;
}

/** Series with their `tenant` tag (none when `tenants` is 0). */
export function withTenants(series: SeriesSpec[], tenants: number): SeriesSpec[] {
  return tenants > 0 ? series.map((s, i) => ({ ...s, tags: { ...s.tags, tenant: tenantOf(i, tenants) } })) : series;
}

export interface Point {
  series: SeriesSpec;
  value: number;
  tsMs: number;
}

function roundTo(v: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(v * f) / f;
}

/**
 * Point `step` of series `i`: a gauge on its daily-ish cycle with noise, rounded to its decimals;
 * a counter grows from `counter` by the same curve, rounded to an integer.
 */
export function nextValue(s: SeriesSpec, i: number, step: number, rand: () => number, counter: number): number {
  const phase = (2 * Math.PI * step) / 360;
  const raw = Math.max(0, s.base + s.amplitude * Math.sin(phase + i) + s.noise * (rand() * 2 - 1));
  return s.type === 'counter' ? counter + Math.round(raw) : roundTo(raw, s.decimals ?? 3);
}

function fmtValue(v: number): string {
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

function escInflux(s: string, extra: string): string {
  return s.replace(new RegExp(`[,\\\\${extra}]`, 'g'), (c) => `\\${c}`);
}

/** Encodes one message's worth of points in `format`. */
export function encode(points: readonly Point[], format: GenFormat): string {
  switch (format) {
    case 'influx':
      return points
        .map((p) => {
          const { metric, tags } = p.series;
          const tagText = Object.entries(tags)
            .map(([k, v]) => `,${escInflux(k, '= ')}=${escInflux(v, '= ')}`)
            .join('');
          return `${escInflux(metric, ' ')}${tagText} value=${fmtValue(p.value)} ${p.tsMs}000000`;
        })
        .join('\n');
    case 'prometheus':
      return points
        .map((p) => {
          const name = wireName(p.series, 'prometheus');
          return JSON.stringify({ timestamp: new Date(p.tsMs).toISOString(), value: String(p.value), name, labels: { __name__: name, ...p.series.tags } });
        })
        .join('\n');
    case 'ndjson':
    case 'json': {
      const objs = points.map((p) => ({
        metric_id: p.series.metric,
        value: p.value,
        timestamp: new Date(p.tsMs).toISOString(),
        metric_type: p.series.type,
        tags: p.series.tags,
      }));
      if (format === 'ndjson') return objs.map((o) => JSON.stringify(o)).join('\n');
      return JSON.stringify(objs.length === 1 ? objs[0] : objs);
    }
  }
}

export interface ProduceOptions {
  topic: string;
  series: number;
  pointsPerMessage: number;
  format: GenFormat;
  /** Points per second; 0 means as fast as possible. */
  rate: number;
  /** Stop after this many points (0: no limit). */
  points: number;
  /** Stop after this long (0: no limit). */
  durationMs: number;
  /** Event-time spacing of successive points of one series. */
  intervalMs: number;
  /**
   * Tenants (issue 18): each series gets a `tenant` tag (`tenantOf`); 0: none. The bench runs the
   * pipeline with `tenants.tag` = tenant.
   */
  tenants?: number;
  startMs: number;
  seed: number;
  /** Series numbering starts here, so several runs can produce disjoint series. */
  seriesOffset?: number;
  /**
   * An idempotent producer: a send retried after a broker restart cannot write a message twice
   * (tests that count exactly what reached the topic need it; one request in flight).
   */
  idempotent?: boolean;
  signal?: AbortSignal;
  onProgress?: (sent: number) => void;
}

export interface ProduceSummary {
  points: number;
  messages: number;
  valueSum: number;
  perSeries: Map<string, number>;
  elapsedMs: number;
}

/** The metric name a format puts on the wire (Prometheus names use underscores and `_total`). */
export function wireName(s: SeriesSpec, format: GenFormat): string {
  return format === 'prometheus' ? s.metric.replaceAll('.', '_') + (s.type === 'counter' ? '_total' : '') : s.metric;
}

/** Vigil's canonical series text (workers/series.ts) of a generated series as sent in `format`. */
export function seriesKey(s: SeriesSpec, format: GenFormat = 'json'): string {
  return JSON.stringify([wireName(s, format), Object.entries(s.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
}

/** Produces the workload with acks=all; returns what was sent (for exact checks). */
export async function produce(kafka: Kafka, o: ProduceOptions): Promise<ProduceSummary> {
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner, ...(o.idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {}) });
  await producer.connect();
  const series = withTenants(makeSeries(o.series + (o.seriesOffset ?? 0)).slice(o.seriesOffset ?? 0), o.tenants ?? 0);
  const rand = rng(o.seed);
  const counters = new Float64Array(series.length);
  const perSeries = new Map<string, number>();
  let sent = 0;
  let messages = 0;
  let valueSum = 0;
  let tick = 0;
  const t0 = Date.now();
  // A produce request stays well under the broker's default 1 MiB record-batch limit.
  const batchMessages = 500;
  const batchBytes = 512 * 1024;
  let outBytes = 0;
  try {
    while (!o.signal?.aborted) {
      if (o.points > 0 && sent >= o.points) break;
      if (o.durationMs > 0 && Date.now() - t0 >= o.durationMs) break;
      const out: Message[] = [];
      outBytes = 0;
      let pending: Point[] = [];
      while (out.length < batchMessages && outBytes < batchBytes && !(o.points > 0 && sent + pending.length >= o.points)) {
        const i = tick % series.length;
        const s = series[i] as SeriesSpec;
        const step = Math.floor(tick / series.length);
        const tsMs = o.startMs + step * o.intervalMs;
        const value = nextValue(s, i, step, rand, counters[i] as number);
        if (s.type === 'counter') counters[i] = value;
        pending.push({ series: s, value, tsMs });
        tick++;
        if (pending.length >= o.pointsPerMessage) {
          const value = encode(pending, o.format);
          outBytes += value.length;
          out.push({ key: seriesKey(pending[0]?.series as SeriesSpec), value });
          for (const p of pending) {
            valueSum += p.value;
            const k = seriesKey(p.series, o.format);
            perSeries.set(k, (perSeries.get(k) ?? 0) + 1);
          }
          sent += pending.length;
          pending = [];
        }
      }
      if (pending.length > 0) {
        out.push({ key: seriesKey(pending[0]?.series as SeriesSpec), value: encode(pending, o.format) });
        for (const p of pending) {
          valueSum += p.value;
          const k = seriesKey(p.series, o.format);
          perSeries.set(k, (perSeries.get(k) ?? 0) + 1);
        }
        sent += pending.length;
      }
      if (out.length === 0) break;
      await producer.send({ topic: o.topic, acks: -1, messages: out });
      messages += out.length;
      o.onProgress?.(sent);
      if (o.rate > 0) {
        const ahead = (sent / o.rate) * 1000 - (Date.now() - t0);
        if (ahead > 0) await sleep(ahead);
      }
    }
  } finally {
    await producer.disconnect();
  }
  return { points: sent, messages, valueSum, perSeries, elapsedMs: Date.now() - t0 };
}
