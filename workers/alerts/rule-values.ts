/** Durations, matchers, comparisons and annotations of alert rules (the values a compiled rule holds and applies). */
import type { CompiledRule, Matcher, Op } from './rules.js';
import { type TemplateContext } from './template.js';
import { RulesError } from './rule-check.js';
// ---------------------------------------------------------------------------------------------
// Durations

const DURATION_RE = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/;
const UNIT_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1] as const;
export const DURATION_EXPECTED = 'expected e.g. 30s, 5m, 1h30m';

export function durationMs(text: string): number | null {
  if (text === '0') return 0;
  const m = DURATION_RE.exec(text);
  if (!m || text === '') return null;
  let ms = 0;
  for (let i = 0; i < UNIT_MS.length; i++) {
    const group = m[i + 1];
    if (group !== undefined) ms += Number(group) * (UNIT_MS[i] as number);
  }
  return Number.isSafeInteger(ms) ? ms : null;
}

/**
 * Prometheus-style duration to milliseconds: units y w d h m s ms, largest first, integers,
 * each unit at most once (`90s`, `5m`, `1h30m`, `1d`); `0` alone is zero.
 */
export function parseDuration(text: string): number {
  const ms = durationMs(text);
  if (ms === null) throw new RulesError('VIGIL_ERR_RULES_INVALID', '', [], { message: `${JSON.stringify(text)} is not a duration (${DURATION_EXPECTED})` });
  return ms;
}

/** Milliseconds to the shortest duration text `parseDuration` reads back (`5400000` → `1h30m`). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Matchers and comparisons (the engine's hot path: no allocation per call)

const REGEX_FLAGS = /^[imsu]*$/;

/** Compiles an exact name, a glob (`*` any run of characters, `?` one) or a `/regex/flags`; `!` negates when allowed. Throws Error with the reason. */
export function compileMatcher(text: string, allowNegate = true): Matcher {
  const negate = allowNegate && text.startsWith('!');
  const body = negate ? text.slice(1) : text;
  let kind: Matcher['kind'];
  let inner: (s: string) => boolean;
  if (body.startsWith('/')) {
    const last = body.lastIndexOf('/');
    const flags = body.slice(last + 1);
    if (last === 0 || !REGEX_FLAGS.test(flags)) {
      throw new Error(last === 0 ? 'starts with "/" but has no closing "/" (expected /pattern/ or /pattern/flags)' : `regex flags "${flags}" are not allowed (expected some of i, m, s, u)`);
    }
    let re: RegExp;
    try {
      re = new RegExp(body.slice(1, last), flags);
    } catch (err) {
      throw new Error(`is not a valid regular expression: ${(err as Error).message}`, { cause: err });
    }
    kind = 'regex';
    inner = (s) => re.test(s);
  } else if (/[*?]/.test(body)) {
    const source = body.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.');
    const re = new RegExp(`^${source}$`, 's');
    kind = 'glob';
    inner = (s) => re.test(s);
  } else {
    kind = 'exact';
    inner = (s) => s === body;
  }
  return Object.freeze({ kind, text: body, negate, test: negate ? (s: string) => !inner(s) : inner });
}

export function compare(op: Op, a: number, b: number): boolean {
  switch (op) {
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '==':
      return a === b;
    case '!=':
      return a !== b;
  }
}

/** Whether a firing alert's value lets it resolve (before `keepFiringFor`): past `resolveValue` when set, else the condition no longer holds. */
export function shouldResolve(rule: CompiledRule, value: number): boolean {
  if (rule.resolveThreshold === null) return !compare(rule.op, value, rule.threshold);
  return rule.op === '>' || rule.op === '>=' ? value < rule.resolveThreshold : value > rule.resolveThreshold;
}

/** A flat [k1, v1, k2, v2, ...] tag array (as series carry them) as the object rules match on. */
export function tagObject(tags: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < tags.length; i += 2) out[tags[i] as string] = tags[i + 1] as string;
  return out;
}

/** Whether a rule's matchers (or a `forecasts.series` selector's, the same shape) take the series. */
export function matchesSeries(rule: Pick<CompiledRule, 'metric' | 'tags'>, metric: string, tags: Readonly<Record<string, string>>): boolean {
  if (!rule.metric.test(metric)) return false;
  for (const { key, match } of rule.tags) {
    if (!match.test(Object.hasOwn(tags, key) ? (tags[key] as string) : '')) return false;
  }
  return true;
}

/** Renders a rule's annotations; rule-derived variables (rule, threshold, for, window, buckets, severity, labels) are filled in here. */
export function renderAnnotations(rule: CompiledRule, context: TemplateContext): Record<string, string> {
  const full: TemplateContext = {
    rule: { id: rule.id, name: rule.name, kind: rule.kind, severity: rule.severity },
    threshold: rule.kind === 'absent' ? null : rule.threshold,
    for: formatDuration(rule.forMs),
    window: formatDuration(rule.windowMs),
    buckets: rule.buckets,
    severity: rule.severity,
    labels: rule.labels,
    ...context,
  };
  const out: Record<string, string> = {};
  for (const [key, template] of Object.entries(rule.annotations)) out[key] = template.render(full);
  return out;
}

// ---------------------------------------------------------------------------------------------