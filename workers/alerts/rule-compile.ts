/** The second validation pass of a rules file: the `expr` shorthand and the compiled form of each rule. */
import { OFS, OPS, RULE_KEYS, AGGREGATES } from './rules-schema.js';
import { TEMPLATE_VARIABLES, TemplateError, compileTemplate, type Template } from './template.js';
import type { BucketField, CompiledRule, Matcher, Op, RuleKind, Severity, WindowAggregate } from './rules.js';
import type { Checker} from './rule-check.js';
import { show, type Segment } from './rule-check.js';
import { DURATION_EXPECTED, compileMatcher, durationMs } from './rule-values.js';
// The `expr` shorthand: `[fn(]metric[)] op number [in duration] [for duration]`

interface ParsedExpr {
  fn: string | undefined;
  metric: string;
  op: Op;
  value: number;
  windowMs: number | undefined;
  forMs: number | undefined;
}

class ExprError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const EXPR_EXAMPLES = 'e.g. "system.cpu.usage_total > 90 for 5m" or "auth.failures > 10 in 5m"';

function parseExpr(text: string): ParsedExpr {
  let pos = 0;
  const ws = () => {
    while (pos < text.length && /\s/.test(text[pos] as string)) pos++;
  };
  const word = () => {
    const start = pos;
    while (pos < text.length && !/\s/.test(text[pos] as string)) pos++;
    return text.slice(start, pos);
  };
  ws();
  let fn: string | undefined;
  const call = /^([a-z]+)\(/.exec(text.slice(pos));
  if (call) {
    fn = call[1] as string;
    if (![...OFS, ...AGGREGATES].includes(fn as BucketField)) {
      throw new ExprError(`unknown function "${fn}" (expected one of ${[...new Set([...OFS, ...AGGREGATES])].join(', ')})`, pos);
    }
    pos += call[0].length;
  }
  const metricStart = pos;
  if (text[pos] === '/') {
    // A regex may contain spaces and operators: scan to the closing unescaped slash.
    pos++;
    while (pos < text.length && text[pos] !== '/') pos += text[pos] === '\\' ? 2 : 1;
    if (pos >= text.length) throw new ExprError('regex has no closing "/"', metricStart);
    pos++;
    while (pos < text.length && /[a-z]/.test(text[pos] as string)) pos++;
  } else {
    while (pos < text.length && !/[\s<>=!()]/.test(text[pos] as string)) {
      if (text[pos] === '{') throw new ExprError('tag matchers go in the `tags:` key, not in expr', pos);
      pos++;
    }
  }
  const metric = text.slice(metricStart, pos);
  if (metric === '') throw new ExprError('expected a metric name', metricStart);
  if (fn !== undefined) {
    ws();
    if (text[pos] !== ')') throw new ExprError(`expected ")" after ${fn}(${metric}`, pos);
    pos++;
  }
  ws();
  const opMatch = /^(>=|<=|==|!=|>|<)/.exec(text.slice(pos));
  if (!opMatch) {
    const found = text[pos];
    throw new ExprError(found === '=' ? 'use "==" for equality' : `expected an operator (one of ${OPS.join(' ')})${found === undefined ? '' : `, found "${found}"`}`, pos);
  }
  const op = opMatch[1] as Op;
  pos += op.length;
  ws();
  const numStart = pos;
  const num = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/.exec(text.slice(pos));
  if (!num) throw new ExprError(`expected a number after "${op}"`, pos);
  pos += num[0].length;
  if (pos < text.length && !/\s/.test(text[pos] as string)) {
    throw new ExprError(`unexpected "${text[pos] ?? ''}" after the number (write a bare number, e.g. 90)`, pos);
  }
  const value = Number(num[0]);
  if (!Number.isFinite(value)) throw new ExprError(`${num[0]} is not a finite number`, numStart);
  let windowMs: number | undefined;
  let forMs: number | undefined;
  for (;;) {
    ws();
    if (pos >= text.length) break;
    const kwStart = pos;
    const kw = word();
    if (kw !== 'in' && kw !== 'for') throw new ExprError(`unexpected "${kw}" (expected "in <window>" or "for <duration>")`, kwStart);
    if ((kw === 'in' ? windowMs : forMs) !== undefined) throw new ExprError(`"${kw}" given twice`, kwStart);
    ws();
    const durStart = pos;
    const dur = word();
    const ms = durationMs(dur);
    if (ms === null) throw new ExprError(dur === '' ? `expected a duration after "${kw}"` : `"${dur}" is not a duration (${DURATION_EXPECTED})`, durStart);
    if (kw === 'in') windowMs = ms;
    else forMs = ms;
  }
  return { fn, metric, op, value, windowMs, forMs };
}

// ---------------------------------------------------------------------------------------------
// Compiling

/** Keys each kind uses besides the common ones; any other kind-specific key is an error. */
const KIND_KEYS: Record<RuleKind, readonly string[]> = {
  threshold: ['expr', 'op', 'value', 'of', 'for', 'resolveValue'],
  rate: ['expr', 'op', 'value', 'aggregate', 'window', 'for', 'resolveValue'],
  anomaly: ['score', 'sensitivity', 'buckets', 'resolveValue'],
  absent: ['for'],
  forecast: ['op', 'value', 'within', 'for'],
};
const COMMON_KEYS = ['id', 'name', 'kind', 'enabled', 'metric', 'tags', 'tenant', 'severity', 'labels', 'annotations', 'keepFiringFor', 'repeatInterval', 'rateLimit'];
const KIND_SPECIFIC = RULE_KEYS.filter((k) => !COMMON_KEYS.includes(k));
const RESERVED_LABELS = new Map([
  ['alertname', 'the rule `name`'],
  ['severity', 'the rule `severity`'],
]);

interface Defaults {
  severity: Severity;
  labels: Record<string, string>;
  annotations: Record<string, Template>;
  keepFiringForMs: number;
  repeatIntervalMs: number;
  rateLimit: { max: number; perMs: number } | null;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const str = (o: Obj, k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
const num = (o: Obj, k: string) => (typeof o[k] === 'number' && Number.isFinite(o[k]) ? (o[k] as number) : undefined);
const has = (o: Obj, k: string) => Object.hasOwn(o, k);

export function compileFile(raw: Obj, c: Checker): CompiledRule[] {
  const defaults = compileDefaults(isObj(raw['defaults']) ? raw['defaults'] : {}, c);
  const list = Array.isArray(raw['rules']) ? (raw['rules'] as unknown[]) : [];
  const firstById = new Map<string, number>();
  const out: CompiledRule[] = [];
  list.forEach((item, i) => {
    if (!isObj(item)) return;
    const id = str(item, 'id');
    if (id !== undefined) {
      const first = firstById.get(id);
      if (first === undefined) firstById.set(id, i);
      else c.add(['rules', i, 'id'], id, `${JSON.stringify(id)} is a duplicate (expected a unique id; first used by rules[${first}] at line ${c.locate(['rules', first, 'id']).line})`);
    }
    const rule = compileRule(item, i, defaults, c);
    if (rule && item['enabled'] !== false) out.push(rule);
  });
  return out;
}

function compileDefaults(d: Obj, c: Checker): Defaults {
  const at = (...k: Segment[]) => ['defaults', ...k];
  const labels = isObj(d['labels']) ? (d['labels'] as Record<string, string>) : {};
  for (const name of Object.keys(labels)) {
    const owner = RESERVED_LABELS.get(name);
    if (owner) c.add(at('labels', name), labels[name], `label "${name}" is set from ${owner} (expected another label name)`);
  }
  const rate = isObj(d['rateLimit']) ? d['rateLimit'] : undefined;
  return {
    severity: (str(d, 'severity') ?? 'warning') as Severity,
    labels,
    annotations: compileAnnotations(isObj(d['annotations']) ? d['annotations'] : {}, at('annotations'), c),
    keepFiringForMs: durationMs(str(d, 'keepFiringFor') ?? '0') ?? 0,
    repeatIntervalMs: durationMs(str(d, 'repeatInterval') ?? '4h') ?? 0,
    rateLimit: rate ? compileRateLimit(rate, at('rateLimit'), c) : null,
  };
}

function compileRateLimit(r: Obj, path: Segment[], c: Checker): { max: number; perMs: number } | null {
  const max = num(r, 'max');
  const perMs = durationMs(str(r, 'per') ?? '');
  if (perMs === 0) c.add([...path, 'per'], r['per'], `${show(r['per'])} is too short (expected a window longer than 0s)`);
  return max !== undefined && perMs !== null && perMs > 0 ? { max, perMs } : null;
}

function compileAnnotations(a: Obj, path: Segment[], c: Checker): Record<string, Template> {
  const out: Record<string, Template> = {};
  for (const [key, source] of Object.entries(a)) {
    if (typeof source !== 'string') continue;
    try {
      out[key] = compileTemplate(source, { variables: TEMPLATE_VARIABLES });
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err;
      c.add([...path, key], source, `template error at character ${err.offset + 1}: ${err.message}`);
    }
  }
  return out;
}

/** Returns null when the rule has problems (already recorded). */
function compileRule(r: Obj, i: number, defaults: Defaults, c: Checker): CompiledRule | null {
  const before = c.issues.length;
  const at = (...k: Segment[]): Segment[] => ['rules', i, ...k];
  const id = str(r, 'id') ?? '';

  // The expr shorthand stands for metric/op/value/for/window (and of/aggregate when it names a function).
  let expr: ParsedExpr | undefined;
  const exprText = str(r, 'expr');
  if (exprText !== undefined) {
    try {
      expr = parseExpr(exprText);
    } catch (err) {
      if (!(err instanceof ExprError)) throw err;
      c.add(at('expr'), exprText, `${JSON.stringify(exprText)}: ${err.message} at character ${err.offset + 1} (${EXPR_EXAMPLES})`);
    }
    for (const key of ['metric', 'op', 'value', 'for', 'window']) {
      if (has(r, key)) c.add(at(key), r[key], `cannot be combined with expr, which already sets it (expected one or the other)`);
    }
  }
  let kind = str(r, 'kind') as RuleKind | undefined;
  if (expr) {
    const implied: RuleKind = expr.windowMs !== undefined ? 'rate' : 'threshold';
    if (kind !== undefined && kind !== implied) {
      const why = kind === 'anomaly' || kind === 'absent' || kind === 'forecast' ? `${kind} rules cannot use expr` : `expr ${implied === 'rate' ? 'with' : 'without'} "in <window>" is a ${implied} rule`;
      c.add(at('kind'), kind, `${JSON.stringify(kind)} does not match expr (${why})`);
      return null;
    }
    kind = implied;
  }
  // A kind outside the enum has been reported by the schema.
  if (kind !== undefined && !Object.hasOwn(KIND_KEYS, kind)) return null;
  if (kind === undefined) {
    // An expr that did not parse has been reported; guessing its kind would only add noise.
    if (!has(r, 'kind') && exprText === undefined) c.add(at('kind'), undefined, 'required key is missing (expected threshold, rate, anomaly, absent or forecast, or an expr)', at());
    return null;
  }

  for (const key of KIND_SPECIFIC) {
    if (has(r, key) && !KIND_KEYS[kind].includes(key)) {
      const hint = key === 'of' && kind === 'rate' ? 'rate rules use `aggregate`' : key === 'aggregate' && kind === 'threshold' ? 'threshold rules use `of`' : `${kind} rules use ${[...KIND_KEYS[kind]].join(', ') || 'none of these'}`;
      c.add(at(key), r[key], `is not used by ${kind} rules (${hint})`);
    }
  }
  const required = (key: string, what: string) => {
    if (!has(r, key) && !(exprText !== undefined && ['metric', 'op', 'value', 'window'].includes(key))) c.add(at(key), undefined, `required for ${kind} rules (expected ${what})`, at());
  };
  required('metric', 'a metric name, glob or /regex/');

  // Metric and tag matchers.
  const metricText = expr?.metric ?? str(r, 'metric');
  let metric: Matcher | undefined;
  if (metricText !== undefined) {
    const where = expr ? at('expr') : at('metric');
    if (metricText.startsWith('!')) c.add(where, metricText, `${JSON.stringify(metricText)}: a metric cannot be negated (expected a name, glob or /regex/)`);
    else metric = matcherAt(metricText, false, where, c);
  }
  const tags: { key: string; match: Matcher }[] = [];
  if (isObj(r['tags'])) {
    for (const [key, text] of Object.entries(r['tags'])) {
      if (typeof text !== 'string') continue;
      const match = matcherAt(text, true, at('tags', key), c);
      if (match) tags.push(Object.freeze({ key, match }));
    }
  }

  // Kind-specific condition.
  let op: Op = '>';
  let threshold = 0;
  let of: BucketField = 'mean';
  let aggregate: WindowAggregate = 'increase';
  let forMs = 0;
  let windowMs = 0;
  let buckets = 1;
  let withinMs = 0;
  const dur = (key: string) => durationMs(str(r, key) ?? '') ?? undefined;
  switch (kind) {
    case 'threshold':
    case 'rate': {
      required('op', `one of ${OPS.join(' ')}`);
      required('value', 'a number');
      op = expr?.op ?? ((str(r, 'op') as Op | undefined) ?? '>');
      threshold = expr?.value ?? num(r, 'value') ?? 0;
      forMs = expr?.forMs ?? dur('for') ?? 0;
      if (kind === 'rate') {
        required('window', 'a duration, e.g. 5m');
        windowMs = expr?.windowMs ?? dur('window') ?? 0;
        if (windowMs === 0 && (expr?.windowMs === 0 || str(r, 'window') !== undefined)) {
          const shown = expr ? exprText : r['window'];
          c.add(expr ? at('expr') : at('window'), shown, `${show(shown)}: the window is too short (expected a window longer than 0s)`);
        }
      }
      const fieldKey = kind === 'rate' ? 'aggregate' : 'of';
      const allowed: readonly string[] = kind === 'rate' ? AGGREGATES : OFS;
      if (expr?.fn !== undefined) {
        if (has(r, fieldKey)) c.add(at(fieldKey), r[fieldKey], `cannot be combined with ${expr.fn}(...) in expr (expected one or the other)`);
        if (!allowed.includes(expr.fn)) {
          c.add(at('expr'), exprText, `${JSON.stringify(exprText)}: ${expr.fn}(...) is not a ${kind} ${fieldKey} (expected one of ${allowed.join(', ')}${kind === 'threshold' && AGGREGATES.includes(expr.fn as WindowAggregate) ? '; add "in <window>" for a rate rule' : ''})`);
        }
      }
      const field = expr?.fn ?? str(r, fieldKey);
      if (kind === 'rate') aggregate = (field as WindowAggregate | undefined) ?? 'increase';
      else of = (field as BucketField | undefined) ?? 'mean';
      break;
    }
    case 'anomaly': {
      op = '>=';
      const score = num(r, 'score');
      const sensitivity = num(r, 'sensitivity');
      if (has(r, 'score') && has(r, 'sensitivity')) c.add(at('sensitivity'), r['sensitivity'], 'cannot be combined with score (expected one or the other)');
      else if (!has(r, 'score') && !has(r, 'sensitivity')) c.add(at('score'), undefined, 'required for anomaly rules (expected a level in (0, 1], or `sensitivity`)', at());
      threshold = score ?? (sensitivity === undefined ? 1 : 1 - sensitivity);
      buckets = num(r, 'buckets') ?? 1;
      break;
    }
    case 'forecast': {
      required('op', `one of ${OPS.join(' ')}`);
      required('value', 'a number');
      required('within', 'a duration, e.g. 4h');
      op = (str(r, 'op') as Op | undefined) ?? '>';
      threshold = num(r, 'value') ?? 0;
      forMs = dur('for') ?? 0;
      withinMs = dur('within') ?? 0;
      if (has(r, 'within') && withinMs === 0 && durationMs(str(r, 'within') ?? '') === 0) c.add(at('within'), r['within'], `${show(r['within'])} is too short (expected a duration longer than 0s)`);
      break;
    }
    case 'absent': {
      op = '==';
      of = 'count';
      required('for', 'a duration, e.g. 10m');
      forMs = dur('for') ?? 0;
      if (has(r, 'for') && forMs === 0 && durationMs(str(r, 'for') ?? '') === 0) c.add(at('for'), r['for'], `${show(r['for'])} is too short (expected a duration longer than 0s)`);
      break;
    }
  }

  // Hysteresis.
  const resolveValue = num(r, 'resolveValue');
  if (resolveValue !== undefined && KIND_KEYS[kind].includes('resolveValue')) {
    if (op === '==' || op === '!=') {
      c.add(at('resolveValue'), resolveValue, `cannot be used with op "${op}" (expected one of > >= < <=)`);
    } else {
      const above = op === '>' || op === '>=';
      if (above ? resolveValue > threshold : resolveValue < threshold) {
        c.add(at('resolveValue'), resolveValue, `${resolveValue} is on the firing side of ${threshold} (expected a level ${above ? '<=' : '>='} ${threshold} for op "${op}")`);
      }
    }
  }

  // Labels, annotations and lifecycle, over the file defaults.
  const ruleLabels = isObj(r['labels']) ? (r['labels'] as Record<string, string>) : {};
  for (const name of Object.keys(ruleLabels)) {
    const owner = RESERVED_LABELS.get(name);
    if (owner) c.add(at('labels', name), ruleLabels[name], `label "${name}" is set from ${owner} (expected another label name)`);
  }
  const annotations = { ...defaults.annotations, ...compileAnnotations(isObj(r['annotations']) ? r['annotations'] : {}, at('annotations'), c) };
  const keepFiringForMs = dur('keepFiringFor') ?? defaults.keepFiringForMs;
  const repeatIntervalMs = dur('repeatInterval') ?? defaults.repeatIntervalMs;
  const rateLimit = isObj(r['rateLimit']) ? compileRateLimit(r['rateLimit'], at('rateLimit'), c) : defaults.rateLimit;

  if (c.issues.length > before || !metric) return null;
  return Object.freeze({
    id,
    tenant: str(r, 'tenant') ?? null,
    name: str(r, 'name') ?? id,
    kind,
    severity: (str(r, 'severity') as Severity | undefined) ?? defaults.severity,
    metric,
    tags: Object.freeze(tags),
    op,
    threshold,
    of,
    aggregate,
    forMs,
    windowMs,
    buckets,
    withinMs,
    keepFiringForMs,
    resolveThreshold: resolveValue !== undefined && KIND_KEYS[kind].includes('resolveValue') ? resolveValue : null,
    repeatIntervalMs,
    rateLimit: rateLimit ? Object.freeze({ ...rateLimit }) : null,
    labels: Object.freeze({ ...defaults.labels, ...ruleLabels }),
    annotations: Object.freeze(annotations),
    source: Object.freeze({ file: c.file, line: c.locate(at()).line }),
  });
}

function matcherAt(text: string, allowNegate: boolean, path: Segment[], c: Checker): Matcher | undefined {
  try {
    return compileMatcher(text, allowNegate);
  } catch (err) {
    c.add(path, text, `${JSON.stringify(text)} ${(err as Error).message}`);
    return undefined;
  }
}

export { TEMPLATE_VARIABLES, compileTemplate, TemplateError } from './template.js';
export type { Template, TemplateContext } from './template.js';
