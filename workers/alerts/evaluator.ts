import { compare, matchesSeries, parseRulesText, shouldResolve, tagObject, type CompiledRule, type RuleSet } from './rules.js';
import type { EnsembleScore } from '../../models/ensemble.js';
import type { Crossing } from '../../models/forecast.js';
import type { ClosedBucket } from '../rollup.js';

/**
 * Rule evaluation in the shard threads (DESIGN.md §6): every closed bucket of the rules' width is
 * checked against the rules matching its series, and the per (rule, series) condition state lives
 * here, next to the series' other state. What leaves the thread is a transition — the condition
 * started firing or resolved — never a per-bucket verdict. The main thread (pipeline/alerts/)
 * owns what needs the whole picture: dedupe across restarts, rate limits, repeats, outputs.
 *
 * Time is event time: `for` is measured in bucket time, so a replay gives the same transitions.
 */
export interface AlertRulesSettings {
  /** Content hash of the rules file; the text only travels when the thread has another hash. */
  hash: string;
  text: string | null;
  file: string;
  /**
   * Alerts firing when the pipeline started (restored state): their conditions start as firing,
   * and buckets up to the episode's start (a replay from before it) cannot resolve them.
   */
  active: { fingerprint: string; startsAtMs: number }[] | null;
}

export interface Transition {
  fingerprint: string;
  ruleId: string;
  status: 'firing' | 'resolved';
  metric: string;
  /** Flat key, value pairs. */
  tags: string[];
  /** The series' tenant ('' the default tenant). */
  tenant: string;
  value: number;
  score: number | null;
  /** Event time the episode started (the bucket end that completed `for`). */
  startsAtMs: number;
  /** Event time of this transition (end of the deciding bucket, or the watermark for absent). */
  atMs: number;
  explanation: Record<string, unknown>;
}

interface RuleState {
  rule: CompiledRule;
  fingerprint: string;
  metric: string;
  tags: string[];
  tenant: string;
  firing: boolean;
  /** Start of the current run of buckets meeting the condition (NaN: none). */
  since: number;
  /** End of the last bucket where the alert could not resolve (keep-firing-for counts from it). */
  lastBad: number;
  startsAt: number;
  /** Consecutive buckets at or above the level (anomaly rules). */
  streak: number;
  /** threshold and rate: how long the condition has held, as of the last bucket. */
  heldMs: number;
  /** Restored as firing: the episode's start; buckets ending by then cannot resolve it (-Infinity: not restored). */
  seededAt: number;
  /** Rate rules: per-bucket [sum, count, max, increase] over the window, a ring by bucket index. */
  ring: Float64Array | null;
  ringStart: number;
  /** Absent rules: end of the series' last bucket. */
  lastEnd: number;
  topic: string;
  partition: number;
}

/** The changing part of a rule state: what `detector_state` carries; the rule and series are re-attached by id. */
export type RuleSnapshot = Pick<RuleState, 'firing' | 'since' | 'lastBad' | 'startsAt' | 'streak' | 'heldMs' | 'seededAt' | 'ring' | 'ringStart' | 'lastEnd'> & { ruleId: string };

/** Whether a rule applies to a tenant's series: rules without a tenant apply to every tenant's. */
const forTenant = (rule: CompiledRule, tenant: string): boolean => rule.tenant === null || rule.tenant === tenant;

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK = 0xffffffffffffffffn;

/** Stable per (rule id, series id): FNV-1a 64 over the id's UTF-16 units, then the series id's bytes. 16 hex digits. */
export function fingerprint(ruleId: string, seriesId: bigint): string {
  let h = FNV_OFFSET;
  for (let i = 0; i < ruleId.length; i++) h = ((h ^ BigInt(ruleId.charCodeAt(i))) * FNV_PRIME) & MASK;
  for (let i = 0n; i < 64n; i += 8n) h = ((h ^ ((seriesId >> i) & 0xffn)) * FNV_PRIME) & MASK;
  return h.toString(16).padStart(16, '0');
}

export class RuleEvaluator {
  private rules: RuleSet | null = null;
  private hash = '';
  /** Per series: the states of the rules matching it (computed once per series and rule set). */
  private readonly bySeries = new Map<bigint, RuleState[]>();
  /** States of series whose rules were reloaded, kept until the series is matched again. */
  private readonly carried = new Map<bigint, RuleState[]>();
  /** Snapshots restored at a new generation, applied when the series' states are made. */
  private readonly restored = new Map<bigint, RuleSnapshot[]>();
  /** Absent-rule states by source partition, checked against that partition's watermark. */
  private readonly absent = new Map<string, Set<RuleState>>();
  private readonly seeded = new Map<string, number>();
  /** The anomaly score of the bucket being evaluated (anomaly rules explain with it). */
  private anomaly: EnsembleScore | null = null;
  /** forecast rules: where the forecast of the bucket being evaluated crosses (null: it does not). */
  private crossing: Crossing | null = null;
  private crossingFromMs = 0;
  /** Grows when a rules file with another hash is read: the shard then asks again which series forecast rules need forecasts for. */
  generation = 0;
  private readonly lastAbsentCheck = new Map<string, number>();
  transitions: Transition[] = [];

  get ruleCount(): number {
    return this.rules?.rules.length ?? 0;
  }

  configure(settings: AlertRulesSettings): void {
    if (settings.active) for (const a of settings.active) this.seeded.set(a.fingerprint, a.startsAtMs);
    if (settings.hash === this.hash || settings.text === null) return;
    this.rules = parseRulesText(settings.text, settings.file);
    this.hash = settings.hash;
    this.generation++;
    // States of rules that still exist (same id) carry over; the others go, and the main thread
    // resolves their alerts (it knows which rules disappeared).
    const keep = new Map<string, CompiledRule>(this.rules.rules.map((r) => [r.id, r]));
    for (const [id, states] of this.bySeries) {
      const kept = states.filter((s) => keep.has(s.rule.id));
      for (const s of kept) s.rule = keep.get(s.rule.id) as CompiledRule;
      // Re-matched lazily at the series' next bucket (a new rule may match it), surviving states kept.
      this.bySeries.delete(id);
      if (kept.length > 0) this.carried.set(id, kept);
    }
    for (const set of this.absent.values()) for (const s of set) if (!keep.has(s.rule.id)) set.delete(s);
  }

  private states(b: ClosedBucket): RuleState[] {
    let list = this.bySeries.get(b.seriesId);
    if (list) return list;
    list = [];
    const rules = this.rules;
    if (rules) {
      const tags = tagObject(b.series.tags);
      const carried = this.carried.get(b.seriesId);
      const candidates = [...(rules.byExactMetric.get(b.series.metric) ?? []), ...rules.patterned];
      const restored = this.restored.get(b.seriesId);
      for (const rule of candidates) {
        if (!forTenant(rule, b.series.tenant) || !matchesSeries(rule, b.series.metric, tags)) continue;
        const old = carried?.find((s) => s.rule.id === rule.id);
        if (old) {
          list.push(old);
          continue;
        }
        const s = this.newState(rule, b);
        // The snapshot is as of the series' last judged bucket: it supersedes the seeded firing set.
        const snap = restored?.find((r) => r.ruleId === rule.id);
        if (snap) {
          const { ruleId: _id, ...dynamic } = snap;
          Object.assign(s, dynamic);
        }
        list.push(s);
      }
      this.carried.delete(b.seriesId);
      this.restored.delete(b.seriesId);
    }
    this.bySeries.set(b.seriesId, list);
    return list;
  }

  private newState(rule: CompiledRule, b: ClosedBucket): RuleState {
    const fp = fingerprint(rule.id, b.seriesId);
    const seededAt = this.seeded.get(fp);
    const firing = seededAt !== undefined;
    this.seeded.delete(fp);
    const n = rule.kind === 'rate' ? Math.max(1, Math.ceil(rule.windowMs / b.widthMs)) : 0;
    const s: RuleState = {
      rule,
      fingerprint: fp,
      metric: b.series.metric,
      tags: [...b.series.tags],
      tenant: b.series.tenant,
      firing,
      since: Number.NaN,
      lastBad: b.startMs,
      startsAt: seededAt ?? Number.NaN,
      seededAt: seededAt ?? -Infinity,
      streak: 0,
      heldMs: 0,
      ring: n > 0 ? new Float64Array(n * 4) : null,
      ringStart: Number.NaN,
      lastEnd: b.startMs + b.widthMs,
      topic: b.topic,
      partition: b.partition,
    };
    if (rule.kind === 'absent') {
      const key = `${b.topic}\u0000${b.partition}`;
      let set = this.absent.get(key);
      if (!set) this.absent.set(key, (set = new Set()));
      set.add(s);
    }
    return s;
  }

  /** Whether a `forecast` rule matches the series: it needs the series forecast (models/forecast.ts). */
  wantsForecast(metric: string, tags: Readonly<Record<string, string>>, tenant = ''): boolean {
    return this.rules?.rules.some((r) => r.kind === 'forecast' && forTenant(r, tenant) && matchesSeries(r, metric, tags)) ?? false;
  }

  /**
   * Evaluates one closed bucket of the rules' width (with its anomaly score when scored, and for
   * forecast rules `crossing`: where the series' forecast from this bucket first meets a
   * condition within a horizon; null when the series has no forecast yet).
   */
  onBucket(b: ClosedBucket, anomaly: EnsembleScore | null, crossing: ((withinMs: number, met: (value: number) => boolean) => Crossing | null) | null = null): void {
    if (!this.rules) return;
    const end = b.startMs + b.widthMs;
    const mean = b.sum / b.count;
    this.anomaly = anomaly;
    for (const s of this.states(b)) {
      const rule = s.rule;
      switch (rule.kind) {
        case 'threshold': {
          const v = rule.of === 'mean' ? mean : rule.of === 'count' ? b.count : b[rule.of];
          this.held(s, b, end, compare(rule.op, v, rule.threshold), shouldResolve(rule, v), v);
          break;
        }
        case 'rate': {
          const v = this.windowValue(s, b, mean);
          this.held(s, b, end, compare(rule.op, v, rule.threshold), shouldResolve(rule, v), v);
          break;
        }
        case 'anomaly': {
          if (!anomaly) break;
          const score = anomaly.score;
          s.streak = compare(rule.op, score, rule.threshold) ? s.streak + 1 : 0;
          this.decide(s, end, s.streak >= rule.buckets, shouldResolve(rule, score), mean, score);
          break;
        }
        case 'forecast': {
          // No forecast yet (models off, or the series still warming up): nothing to judge.
          if (!crossing) break;
          // The bucket itself past the value holds too ("within" starts now). Against flapping at
          // the horizon's edge, a firing alert resolves only once the forecast no longer crosses
          // within half as long again.
          const now = compare(rule.op, mean, rule.threshold);
          const c = now ? { atMs: end, value: mean, lower95: mean, upper95: mean } : crossing(s.firing ? 1.5 * rule.withinMs : rule.withinMs, (v) => compare(rule.op, v, rule.threshold));
          const met = c !== null && (s.firing || c.atMs - end <= rule.withinMs);
          this.crossing = c;
          this.crossingFromMs = end;
          this.held(s, b, end, met, c === null, mean);
          break;
        }
        case 'absent': {
          // A gap the watermark check did not see (replayed or backfilled data closes fast) is
          // judged here too, from the bucket times alone: a replay decides the same.
          if (!s.firing && b.startMs - s.lastEnd >= rule.forMs) {
            s.startsAt = s.lastEnd + rule.forMs;
            this.emit(s, 'firing', s.startsAt, Number.NaN, null);
          }
          s.lastEnd = end;
          if (s.firing) this.emit(s, 'resolved', end, mean, null);
          break;
        }
      }
    }
  }

  /** threshold and rate: the condition must hold for `for` of bucket time before firing. */
  private held(s: RuleState, b: ClosedBucket, end: number, met: boolean, resolvable: boolean, v: number): void {
    if (met) {
      if (Number.isNaN(s.since)) s.since = b.startMs;
    } else s.since = Number.NaN;
    const heldMs = met ? end - s.since : 0;
    s.heldMs = heldMs;
    this.decide(s, end, met && heldMs >= s.rule.forMs, resolvable, v, null);
  }

  private decide(s: RuleState, end: number, fire: boolean, resolvable: boolean, v: number, score: number | null): void {
    if (!s.firing) {
      if (fire) {
        s.startsAt = end;
        this.emit(s, 'firing', end, v, score);
      }
      s.lastBad = end;
      return;
    }
    // Firing: resolve once the value has been resolvable for longer than keep-firing-for.
    if (!resolvable || end <= s.seededAt) s.lastBad = end;
    else if (end - s.lastBad > s.rule.keepFiringForMs) this.emit(s, 'resolved', end, v, score);
  }

  /** Rate rules: the window aggregate after adding this bucket (missing buckets count as empty). */
  private windowValue(s: RuleState, b: ClosedBucket, mean: number): number {
    const ring = s.ring as Float64Array;
    const n = ring.length / 4;
    const idx = Math.floor(b.startMs / b.widthMs);
    if (Number.isNaN(s.ringStart) || idx - s.ringStart >= 2 * n) ring.fill(0);
    else for (let k = s.ringStart + 1; k < idx && k <= s.ringStart + n; k++) ring.fill(0, (k % n) * 4, (k % n) * 4 + 4);
    if (!Number.isNaN(s.ringStart) && idx <= s.ringStart - n) return Number.NaN;
    s.ringStart = Math.max(Number.isNaN(s.ringStart) ? idx : s.ringStart, idx);
    const o = (idx % n) * 4;
    ring[o] = b.sum;
    ring[o + 1] = b.count;
    ring[o + 2] = b.max;
    ring[o + 3] = (mean * b.widthMs) / 1000;
    let sum = 0;
    let count = 0;
    let max = -Infinity;
    let increase = 0;
    for (let i = 0; i < n; i++) {
      if (ring[i * 4 + 1] === 0) continue;
      sum += ring[i * 4] as number;
      count += ring[i * 4 + 1] as number;
      max = Math.max(max, ring[i * 4 + 2] as number);
      increase += ring[i * 4 + 3] as number;
    }
    switch (s.rule.aggregate) {
      case 'increase':
        return increase;
      case 'rate':
        return increase / (s.rule.windowMs / 1000);
      case 'sum':
        return sum;
      case 'count':
        return count;
      case 'mean':
        return count ? sum / count : 0;
      case 'max':
        return max;
    }
  }

  /** Absent rules of one partition against its watermark (at most once a second of wall time). */
  checkAbsent(topic: string, partition: number, watermarkMs: number, nowMs: number): void {
    const key = `${topic}\u0000${partition}`;
    const set = this.absent.get(key);
    if (!set || set.size === 0 || nowMs - (this.lastAbsentCheck.get(key) ?? 0) < 1000) return;
    this.lastAbsentCheck.set(key, nowMs);
    for (const s of set) {
      if (s.firing || watermarkMs - s.lastEnd < s.rule.forMs) continue;
      s.startsAt = s.lastEnd + s.rule.forMs;
      this.emit(s, 'firing', s.startsAt, Number.NaN, null, { watermarkMs });
    }
  }

  /** What the explanation says beyond value and threshold, by rule kind (built only for transitions). */
  private details(s: RuleState): Record<string, unknown> {
    const r = s.rule;
    switch (r.kind) {
      case 'threshold':
        return { of: r.of, op: r.op, heldMs: s.heldMs, forMs: r.forMs };
      case 'rate':
        return { aggregate: r.aggregate, op: r.op, windowMs: r.windowMs, heldMs: s.heldMs };
      case 'anomaly': {
        const a = this.anomaly;
        return a ? { expected: a.expected, lower: a.lower, upper: a.upper, scores: a.scores, ...a.explanation, streak: s.streak } : { streak: s.streak };
      }
      case 'absent':
        return { lastDataMs: s.lastEnd, forMs: r.forMs };
      case 'forecast': {
        const c = this.crossing;
        return { op: r.op, withinMs: r.withinMs, heldMs: s.heldMs, forMs: r.forMs, ...(c ? { predictedAtMs: c.atMs, predictedInMs: c.atMs - this.crossingFromMs, predictedValue: c.value, predictedLower95: c.lower95, predictedUpper95: c.upper95 } : {}) };
      }
    }
  }

  private emit(s: RuleState, status: Transition['status'], atMs: number, value: number, score: number | null, extra: Record<string, unknown> = {}): void {
    const details = { ...this.details(s), ...extra };
    s.firing = status === 'firing';
    if (status === 'resolved') {
      s.since = Number.NaN;
      s.streak = 0;
    }
    this.transitions.push({
      fingerprint: s.fingerprint,
      ruleId: s.rule.id,
      status,
      metric: s.metric,
      tags: s.tags,
      tenant: s.tenant,
      value,
      score,
      startsAtMs: s.startsAt,
      atMs,
      explanation: { rule: { id: s.rule.id, kind: s.rule.kind }, threshold: s.rule.kind === 'absent' ? null : s.rule.threshold, value, ...details },
    });
  }

  /**
   * Forgets every series' state (a new consumer group generation re-reads every partition); the
   * rules stay, and the given firing alerts seed the states made from here on.
   */
  reset(seeds: readonly { fingerprint: string; startsAtMs: number }[]): void {
    this.bySeries.clear();
    this.carried.clear();
    this.restored.clear();
    this.absent.clear();
    this.lastAbsentCheck.clear();
    this.seeded.clear();
    for (const a of seeds) this.seeded.set(a.fingerprint, a.startsAtMs);
    this.anomaly = null;
    this.transitions = [];
  }

  /** The changing part of a series' rule states (null: none), for `detector_state`. */
  snapshot(seriesId: bigint): RuleSnapshot[] | null {
    const list = this.bySeries.get(seriesId) ?? this.carried.get(seriesId);
    if (!list || list.length === 0) return null;
    return list.map((s) => ({
      ruleId: s.rule.id,
      firing: s.firing,
      since: s.since,
      lastBad: s.lastBad,
      startsAt: s.startsAt,
      streak: s.streak,
      heldMs: s.heldMs,
      seededAt: s.seededAt,
      ring: s.ring ? s.ring.slice() : null,
      ringStart: s.ringStart,
      lastEnd: s.lastEnd,
    }));
  }

  /** Rule states of a series as a snapshot left them (applied when its next bucket makes its states). */
  restoreSeries(seriesId: bigint, snaps: RuleSnapshot[]): void {
    this.bySeries.delete(seriesId);
    this.restored.set(seriesId, snaps);
  }

  /** Drops the states of evicted series (absent-rule states stay: silence is what they watch). */
  forget(ids: Iterable<bigint>): void {
    for (const id of ids) {
      this.restored.delete(id);
      const list = this.bySeries.get(id);
      if (!list) continue;
      const keep = list.filter((s) => s.rule.kind === 'absent');
      if (keep.length) this.carried.set(id, keep);
      this.bySeries.delete(id);
    }
  }

  take(): Transition[] {
    const out = this.transitions;
    this.transitions = [];
    return out;
  }
}
