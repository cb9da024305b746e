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
