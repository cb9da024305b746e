import type { AnomalyLabel, LabelledWorkload } from './anomalies.js';

/**
 * Correlated incidents injected into a labelled workload, and how well incidents found in it
 * group them (issue 17; bench:incidents scores the pipeline's grouping code offline, `vigil bench
 * --anomalies N` the incidents a running pipeline wrote). At each incident a few series shift
 * together by 6–9 σ for `buckets` buckets, each up to `maxLag` buckets after the first.
 */
export interface InjectedIncident {
  /** Bucket index of the first member's shift. */
  at: number;
  /** Series index → its lag in buckets. */
  members: Map<number, number>;
}

export interface InjectOptions {
  count: number;
  /** Bucket index of the first incident, and the spacing of the next ones. */
  firstAt: number;
  spacing: number;
  /** Up to this many buckets added to each incident's start at random. */
  jitter: number;
  maxLag: number;
  /** Members per incident: from `minSize` to `maxSize` series (at most the workload's). */
  minSize: number;
  maxSize: number;
  buckets: number;
  /** Also label each member's shift in the workload (so detection quality counts it as an event). */
  label: boolean;
}

export function injectIncidents(w: LabelledWorkload, rand: () => number, o: InjectOptions): InjectedIncident[] {
  const injected: InjectedIncident[] = [];
  const n = w.options.series;
  const { startMs, widthMs } = w.options;
  for (let k = 0; k < o.count; k++) {
    const at = o.firstAt + k * o.spacing + Math.floor(rand() * o.jitter);
    const members = new Map<number, number>();
    const size = Math.min(n, o.minSize + Math.floor(rand() * (o.maxSize - o.minSize + 1)));
    while (members.size < size) members.set(Math.floor(rand() * n), Math.floor(rand() * (o.maxLag + 1)));
    for (const [s, lag] of members) {
      const series = w.series[s];
      if (!series) continue;
      const magnitude = 6 + 3 * rand();
      const shift = magnitude * series.noise * (rand() < 0.5 ? -1 : 1);
      const end = Math.min(series.values.length, at + lag + o.buckets);
      for (let t = at + lag; t < end; t++) series.values[t] = (series.values[t] as number) + shift;
      if (o.label) w.labels.push({ series: s, kind: 'level_shift', startMs: startMs + (at + lag) * widthMs, endMs: startMs + end * widthMs, magnitude } satisfies AnomalyLabel);
    }
    injected.push({ at, members });
  }
  return injected;
}

/** An incident found, its members as series indexes of the workload (null: a series outside it) at their onsets. */
export interface FoundIncident {
  id: string;
  members: { series: number | null; t: number }[];
}

export interface GroupingScore {
  /** Injected incidents with at least two members flagged within their shift. */
  seen: number;
  /** Of those, the ones whose flagged members are all in one incident. */
  right: number;
  /** Mean share of that incident's members that are the injected incident's (over `right`). */
  purity: number;
  /** Injected members flagged within their shift, of all injected members. */
  flagged: number;
  /** Onsets outside the injected incidents, and the share of them in an incident of 2+ series. */
  others: number;
  joined: number;
  incidents: number;
}

/** How `found` groups the injected incidents of a workload of `widthMs` buckets from `startMs` (members' onsets in s). */
export function scoreGrouping(found: readonly FoundIncident[], injected: readonly InjectedIncident[], startMs: number, widthMs: number, buckets: number): GroupingScore {
  let seen = 0;
  let right = 0;
  let purity = 0;
  let flagged = 0;
  let memberCount = 0;
  const injectedMembers = new Set<string>();
  for (const inj of injected) {
    const startS = (startMs + inj.at * widthMs) / 1000;
    const w = widthMs / 1000;
    // A member counts as flagged when its first onset falls within its shift.
    const hits = new Map<number, string>();
    for (const i of found) {
      for (const m of i.members) {
        const lag = m.series === null ? undefined : inj.members.get(m.series);
        if (m.series === null || lag === undefined || m.t < startS + lag * w || m.t >= startS + (lag + buckets) * w) continue;
        if (!hits.has(m.series)) hits.set(m.series, i.id);
        injectedMembers.add(`${i.id}/${m.series}/${m.t}`);
      }
    }
    memberCount += inj.members.size;
    flagged += hits.size;
    if (hits.size < 2) continue;
    seen++;
    const ids = new Set(hits.values());
    if (ids.size !== 1) continue;
    right++;
    const id = [...ids][0] as string;
    const group = found.find((i) => i.id === id);
    purity += hits.size / (group?.members.length ?? hits.size);
  }
  let others = 0;
  let joined = 0;
  for (const i of found) {
    for (const m of i.members) {
      if (injectedMembers.has(`${i.id}/${m.series}/${m.t}`)) continue;
      others++;
      if (i.members.length >= 2) joined++;
    }
  }
  return { seen, right, purity: right > 0 ? purity / right : Number.NaN, flagged: memberCount > 0 ? flagged / memberCount : Number.NaN, others, joined: joined / Math.max(1, others), incidents: found.length };
}
