import { Partitioners, type Kafka, type Message } from 'kafkajs';
import { encode, rng, seriesKey, type GenFormat, type Point, type SeriesSpec } from './generator.js';

/**
 * Labelled synthetic workloads (issue 6): per-series bucket values with a season, autocorrelated
 * noise and injected anomalies at recorded positions. The generator of `vigil produce` spreads
 * these bucket values over points; `vigil backtest` and bench/quality.ts score them directly.
 * Deterministic for a seed. Magnitudes are in units of the series' noise σ.
 */
export const ANOMALY_KINDS = ['spike', 'dip', 'level_shift', 'trend_change', 'variance_change', 'seasonality_break', 'dropout'] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

export interface AnomalyLabel {
  /** Index of the series in the workload. */
  series: number;
  kind: AnomalyKind;
  /**
   * First affected bucket start (inclusive) and the end (exclusive) of the event: the anomaly
   * plus, for the lasting kinds, a recovery of up to RECOVERY_BUCKETS after it. The return to
   * normal is a change of its own that detectors rightly react to; it belongs to the same event.
   */
  startMs: number;
  endMs: number;
  /** Size of the effect in noise σ (spike height, shift, final trend offset, variance factor). */
  magnitude: number;
}

export interface LabelledOptions {
  series: number;
  buckets: number;
  widthMs: number;
  startMs: number;
  seed: number;
  /** Season length (default one day); about a third of the series have no season. */
  periodMs: number;
  /** Anomalies per series, spread over the part after the warm-up. */
  anomaliesPerSeries: number;
  /** Buckets at the start kept clean (detectors warm up; default two periods). */
  cleanBuckets: number;
  kinds: readonly AnomalyKind[];
}

export interface LabelledSeries {
  base: number;
  amplitude: number;
  noise: number;
  /** Bucket values; NaN where the series is absent (dropout). */
  values: Float64Array;
}

export interface LabelledWorkload {
  options: LabelledOptions;
  series: LabelledSeries[];
  labels: AnomalyLabel[];
}

export function defaultLabelledOptions(overrides: Partial<LabelledOptions> = {}): LabelledOptions {
  const widthMs = overrides.widthMs ?? 60_000;
  const periodMs = overrides.periodMs ?? 86_400_000;
  return {
    series: 20,
    buckets: Math.round((5 * periodMs) / widthMs),
    widthMs,
    startMs: Date.UTC(2026, 0, 5),
    seed: 1,
    periodMs,
    anomaliesPerSeries: 6,
    cleanBuckets: Math.round((2 * periodMs) / widthMs) + 60,
    kinds: ANOMALY_KINDS,
    ...overrides,
  };
}

/** Buckets after a lasting anomaly (shift, trend, variance, season, dropout) that its label still covers. */
export const RECOVERY_BUCKETS = 20;

/** Buckets over which a seasonality break fades the season out and back in. */
const TAPER_BUCKETS = 30;

/** Normal deviate (Box–Muller). */
function gauss(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

function between(rand: () => number, lo: number, hi: number): number {
  return lo + (hi - lo) * rand();
}

export function labelledWorkload(options: LabelledOptions): LabelledWorkload {
  const rand = rng(options.seed);
  const { buckets, widthMs, startMs, periodMs } = options;
  const perPeriod = periodMs / widthMs;
  const series: LabelledSeries[] = [];
  const labels: AnomalyLabel[] = [];
  for (let s = 0; s < options.series; s++) {
    const noise = between(rand, 0.5, 3);
    const seasonal = s % 3 !== 2;
    const amplitude = seasonal ? noise * between(rand, 5, 15) : 0;
    const base = noise * between(rand, 20, 60) + amplitude;
    const phi = between(rand, 0, 0.6);
    const phase = 2 * Math.PI * rand();
    // Anomalies: evenly spaced slots after the clean part, a kind each, no overlap.
    const kinds = options.kinds.filter((k) => seasonal || k !== 'seasonality_break');
    const span = (buckets - options.cleanBuckets) / options.anomaliesPerSeries;
    const plan: { kind: AnomalyKind; at: number; len: number; magnitude: number; sign: number }[] = [];
    for (let a = 0; a < options.anomaliesPerSeries && kinds.length > 0; a++) {
      const kind = kinds[(s + a) % kinds.length] as AnomalyKind;
      const room = Math.floor(span * 0.6);
      const len =
        kind === 'spike' || kind === 'dip'
          ? 1
          : kind === 'dropout'
            ? Math.round(between(rand, 5, 30))
            : kind === 'seasonality_break'
              ? Math.round(perPeriod / 4)
              : Math.round(between(rand, 20, 60));
      const at = options.cleanBuckets + Math.floor(a * span + between(rand, 0.1, 0.3) * span);
      if (len + Math.min(len, RECOVERY_BUCKETS) > room) continue;
      const magnitude =
        kind === 'spike' || kind === 'dip' ? between(rand, 7, 12) : kind === 'variance_change' ? between(rand, 4, 6) : kind === 'trend_change' ? between(rand, 8, 12) : between(rand, 5, 8);
      plan.push({ kind, at, len, magnitude, sign: rand() < 0.5 ? -1 : 1 });
      const recovery = len > 1 ? Math.min(len, RECOVERY_BUCKETS) : 0;
      labels.push({ series: s, kind, startMs: startMs + at * widthMs, endMs: startMs + (at + len + recovery) * widthMs, magnitude });
    }
    const values = new Float64Array(buckets);
    let ar = 0;
    for (let t = 0; t < buckets; t++) {
      let eps = gauss(rand);
      let season = amplitude * (Math.sin((2 * Math.PI * t) / perPeriod + phase) + 0.3 * Math.sin((4 * Math.PI * t) / perPeriod + 2 * phase));
      let offset = 0;
      let absent = false;
      for (const p of plan) {
        if (t < p.at || t >= p.at + p.len) continue;
        const k = t - p.at;
        switch (p.kind) {
          case 'spike':
            offset += p.magnitude * noise;
            break;
          case 'dip':
            offset -= p.magnitude * noise;
            break;
          case 'level_shift':
            offset += p.sign * p.magnitude * noise;
            break;
          case 'trend_change':
            offset += p.sign * p.magnitude * noise * ((k + 1) / p.len);
            break;
          case 'variance_change':
            eps *= p.magnitude;
            break;
          case 'seasonality_break': {
            // The season fades out and back in: a pattern that stops, not a step.
            const fade = Math.min(1, Math.min(k + 1, p.len - k) / TAPER_BUCKETS);
            season *= 1 - fade;
            break;
          }
          case 'dropout':
            absent = true;
            break;
        }
      }
      ar = phi * ar + Math.sqrt(1 - phi * phi) * eps;
      values[t] = absent ? Number.NaN : base + season + noise * ar + offset;
    }
    series.push({ base, amplitude, noise, values });
  }
  return { options, series, labels };
}

/** The workload as CSV rows for `vigil backtest`: series,timestamp,value,label. */
export function workloadCsv(w: LabelledWorkload): string {
  const rows = ['series,timestamp,value,label'];
  for (let s = 0; s < w.series.length; s++) {
    const values = (w.series[s] as LabelledSeries).values;
    const labels = w.labels.filter((l) => l.series === s);
    for (let t = 0; t < values.length; t++) {
      const v = values[t] as number;
      if (Number.isNaN(v)) continue;
      const ts = w.options.startMs + t * w.options.widthMs;
      const label = labels.find((l) => ts >= l.startMs && ts < l.endMs);
      rows.push(`s${s},${new Date(ts).toISOString()},${+v.toFixed(4)},${label ? label.kind : ''}`);
    }
  }
  return rows.join('\n') + '\n';
}

export interface LabelledProduceOptions {
  topic: string;
  workload: LabelledWorkload;
  /** Points per series and bucket (their mean is the bucket's value). */
  pointsPerBucket: number;
  format: GenFormat;
  /**
   * Messages keyed by series (the default), or unkeyed, each on a partition of `unkeyed`
   * partitions picked by a seeded generator (as Telegraf without routing_tag: every series
   * spread over every partition).
   */
  unkeyed?: { partitions: number; seed: number };
  /** The series' metric (default `synthetic.value`). */
  metric?: string;
}

/** The series a labelled workload's index stands for on the wire. */
export function labelledSeriesSpec(w: LabelledWorkload, i: number, metric = 'synthetic.value'): SeriesSpec {
  const s = w.series[i] as LabelledSeries;
  return { metric, tags: { series: `s${i}`, shape: s.amplitude > 0 ? 'seasonal' : 'flat' }, type: 'gauge', base: s.base, amplitude: s.amplitude, noise: s.noise };
}

/**
 * Produces a labelled workload to Kafka, bucket by bucket in event time: each series gets
 * `pointsPerBucket` points spread over the bucket, whose mean is exactly the bucket's value
 * (symmetric offsets), none where it drops out. One message per series and bucket, keyed by the
 * series: a series stays in one partition (detectors score it there) and every partition's event
 * time advances bucket by bucket (longer messages would make other series' points late).
 * Returns the labels with the series' wire keys.
 */
export async function produceLabelled(kafka: Kafka, o: LabelledProduceOptions): Promise<{ points: number; labels: (AnomalyLabel & { key: string })[] }> {
  const { workload: w } = o;
  const specs = w.series.map((_, i) => labelledSeriesSpec(w, i, o.metric));
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  let points = 0;
  let seed = (o.unkeyed?.seed ?? 1) >>> 0;
  const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  try {
    const { widthMs, startMs } = w.options;
    const step = widthMs / o.pointsPerBucket;
    let out: Message[] = [];
    let outBytes = 0;
    let pending: Point[] = [];
    // A produce request stays well under the broker's default 1 MiB record-batch limit.
    const flush = async (force: boolean): Promise<void> => {
      if (pending.length > 0) {
        const value = encode(pending, o.format);
        out.push(o.unkeyed ? { key: null, value, partition: Math.floor(random() * o.unkeyed.partitions) } : { key: seriesKey(pending[0]?.series as SeriesSpec), value });
        outBytes += value.length;
        pending = [];
      }
      if (out.length > 0 && (force || out.length >= 500 || outBytes >= 256 * 1024)) {
        await producer.send({ topic: o.topic, acks: -1, messages: out });
        out = [];
        outBytes = 0;
      }
    };
    for (let t = 0; t < w.options.buckets; t++) {
      for (let i = 0; i < specs.length; i++) {
        const v = (w.series[i] as LabelledSeries).values[t] as number;
        if (Number.isNaN(v)) continue;
        const spread = 0.1 * (w.series[i] as LabelledSeries).noise;
        for (let k = 0; k < o.pointsPerBucket; k++) {
          // Pairs of ±spread keep the mean exact; an odd last point sits on the value.
          const offset = k === o.pointsPerBucket - 1 && o.pointsPerBucket % 2 ? 0 : (k % 2 ? -1 : 1) * spread;
          pending.push({ series: specs[i] as SeriesSpec, value: Math.round((v + offset) * 1e6) / 1e6, tsMs: startMs + t * widthMs + Math.floor(k * step) });
          points++;
        }
        await flush(false);
      }
    }
    await flush(true);
  } finally {
    await producer.disconnect();
  }
  return { points, labels: w.labels.map((l) => ({ ...l, key: seriesKey(specs[l.series] as SeriesSpec, o.format) })) };
}
