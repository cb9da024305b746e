/**
 * Detection quality on labelled series, event-wise (the usual reading for streaming anomaly
 * detection, as in NAB): an anomaly counts as detected when a flagged bucket falls in its span or
 * within `graceBuckets` after it (a dropout is only visible when data resumes); a run of
 * consecutive flagged buckets outside every such window is one false alarm. Precision = detected
 * / (detected + false alarms); the false-positive rate is per normal bucket.
 */
export interface LabelSpan {
  /** Series the label belongs to (any key). */
  series: string;
  kind: string;
  startMs: number;
  endMs: number;
}

export interface ScoredBucket {
  series: string;
  tsMs: number;
  flagged: boolean;
}

export interface KindQuality {
  events: number;
  detected: number;
  recall: number;
  /** Mean buckets from the label's start to its first flag, over detected events. */
  meanDelayBuckets: number;
}

export interface Quality {
  events: number;
  detected: number;
  falseAlarms: number;
  falseBuckets: number;
  normalBuckets: number;
  precision: number;
  recall: number;
  f1: number;
  /** False-positive flagged buckets per 1,000 normal buckets. */
  fpPerThousand: number;
  meanDelayBuckets: number;
  byKind: Record<string, KindQuality>;
}

export function evaluate(buckets: readonly ScoredBucket[], labels: readonly LabelSpan[], widthMs: number, graceBuckets = 3): Quality {
  const bySeries = new Map<string, ScoredBucket[]>();
  for (const b of buckets) {
    let list = bySeries.get(b.series);
    if (!list) bySeries.set(b.series, (list = []));
    list.push(b);
  }
  const labelsBySeries = new Map<string, LabelSpan[]>();
  for (const l of labels) {
    let list = labelsBySeries.get(l.series);
    if (!list) labelsBySeries.set(l.series, (list = []));
    list.push(l);
  }
  const firstFlag = new Map<LabelSpan, number>();
  let falseAlarms = 0;
  let falseBuckets = 0;
  let normalBuckets = 0;
  for (const [series, list] of bySeries) {
    list.sort((a, b) => a.tsMs - b.tsMs);
    const spans = labelsBySeries.get(series) ?? [];
    let inAlarm = false;
    let prevTs = Number.NaN;
    for (const b of list) {
      const span = spans.find((l) => b.tsMs >= l.startMs && b.tsMs < l.endMs + graceBuckets * widthMs);
      if (span) {
        if (b.flagged && !firstFlag.has(span)) firstFlag.set(span, b.tsMs);
        inAlarm = false;
      } else {
        normalBuckets++;
        if (b.flagged) {
          falseBuckets++;
          // A gap in the series ends a run as much as an unflagged bucket does.
          if (!inAlarm || b.tsMs - prevTs > widthMs) falseAlarms++;
          inAlarm = true;
        } else {
          inAlarm = false;
        }
      }
      prevTs = b.tsMs;
    }
  }
  const byKind: Record<string, KindQuality> = {};
  let delaySum = 0;
  for (const l of labels) {
    const k = (byKind[l.kind] ??= { events: 0, detected: 0, recall: 0, meanDelayBuckets: 0 });
    k.events++;
    const at = firstFlag.get(l);
    if (at !== undefined) {
      k.detected++;
      const delay = Math.max(0, (at - l.startMs) / widthMs);
      k.meanDelayBuckets += delay;
      delaySum += delay;
    }
  }
  for (const k of Object.values(byKind)) {
    k.meanDelayBuckets = k.detected ? k.meanDelayBuckets / k.detected : Number.NaN;
    k.recall = k.events ? k.detected / k.events : Number.NaN;
  }
  const detected = firstFlag.size;
  const precision = detected + falseAlarms > 0 ? detected / (detected + falseAlarms) : 0;
  const recall = labels.length > 0 ? detected / labels.length : 0;
  return {
    events: labels.length,
    detected,
    falseAlarms,
    falseBuckets,
    normalBuckets,
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
    fpPerThousand: normalBuckets ? (1000 * falseBuckets) / normalBuckets : 0,
    meanDelayBuckets: detected ? delaySum / detected : Number.NaN,
    byKind,
  };
}

/**
 * The costs of a windowed event score (NAB's application profiles): what the first detection in
 * a window earns at most, what each detection outside every window costs, what a missed window
 * costs.
 */
export interface CostProfile {
  tp: number;
  fp: number;
  fn: number;
}

/** NAB's "reward low FP rate" and "reward low FN rate" profiles. */
export const COST_PROFILES = {
  fewFalsePositives: { tp: 1, fp: -0.22, fn: -1 },
  fewMisses: { tp: 1, fp: -0.11, fn: -2 },
} as const satisfies Record<string, CostProfile>;

/**
 * NAB's scaled sigmoid of a detection's place in its window, y from −1 (the window's start) to 0
 * (its end): ≈ 0.987 at the start, 0 at the end, so an early detection earns more than a late one.
 */
export const windowWeight = (y: number): number => 2 / (1 + Math.exp(5 * y)) - 1;

export interface WindowedScore {
  /** 100 · (raw − never) / (perfect − never): 100 detects every window at its start with no false detection, 0 is a detector that never flags. */
  score: number;
  raw: number;
  windows: number;
  detected: number;
  /** Flagged buckets outside every window (each one costs). */
  falseDetections: number;
}

/**
 * A windowed event score in the manner of the Numenta Anomaly Benchmark: each labelled anomaly is
 * a window (its span plus `graceBuckets` after it); only the first flagged bucket in a window
 * counts, weighted by how early it came (windowWeight); every flagged bucket outside the windows
 * costs `profile.fp`; a window without a flag costs `profile.fn`. Unlike NAB, a detection right
 * after a window costs as much as any other (no discount), and windows are the labels themselves,
 * not widened to a share of the data.
 */
export function windowedScore(buckets: readonly ScoredBucket[], labels: readonly LabelSpan[], widthMs: number, profile: CostProfile, graceBuckets = 3): WindowedScore {
  const windowsBySeries = new Map<string, { startMs: number; endMs: number; first: number }[]>();
  for (const l of labels) {
    let list = windowsBySeries.get(l.series);
    if (!list) windowsBySeries.set(l.series, (list = []));
    list.push({ startMs: l.startMs, endMs: l.endMs + graceBuckets * widthMs, first: Number.NaN });
  }
  let falseDetections = 0;
  for (const b of buckets) {
    if (!b.flagged) continue;
    const w = windowsBySeries.get(b.series)?.find((x) => b.tsMs >= x.startMs && b.tsMs < x.endMs);
    if (!w) falseDetections++;
    else if (!(w.first <= b.tsMs)) w.first = b.tsMs;
  }
  let raw = falseDetections * profile.fp;
  let detected = 0;
  let windows = 0;
  for (const list of windowsBySeries.values()) {
    for (const w of list) {
      windows++;
      if (Number.isNaN(w.first)) raw += profile.fn;
      else {
        detected++;
        raw += profile.tp * windowWeight((w.first - w.endMs) / (w.endMs - w.startMs));
      }
    }
  }
  const never = windows * profile.fn;
  const perfect = windows * profile.tp * windowWeight(-1);
  return { score: windows > 0 ? (100 * (raw - never)) / (perfect - never) : 0, raw, windows, detected, falseDetections };
}
