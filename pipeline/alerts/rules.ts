/**
 * Alert rules files (DESIGN.md §6): parsing, validation and the compiled form the alert engine
 * evaluates on closed rollup buckets. The format is documented in README.md beside this file.
 *
 * Validation runs in two passes over the same parsed document, and every problem of both passes
 * is reported at once with the file, line and column of the offending key:
 *   1. the ajv schema in rules-schema.ts (types, enums, ranges, unknown keys);
 *   2. checks that span keys (kind requirements, `expr`, duplicate ids, regexes, templates).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import {
  AGGREGATES,
  OFS,
  OPS,
  RULE_KEYS,
  rulesFileSchema,
  type KINDS,
  type SEVERITIES,
} from './rules-schema.js';
import { TEMPLATE_VARIABLES, TemplateError, compileTemplate, type Template, type TemplateContext } from './template.js';

export type RuleKind = (typeof KINDS)[number];
export type Severity = (typeof SEVERITIES)[number];
export type Op = (typeof OPS)[number];
export type BucketField = (typeof OFS)[number];
export type WindowAggregate = (typeof AGGREGATES)[number];

export interface Matcher {
  kind: 'exact' | 'glob' | 'regex';
  /** As written, without a leading `!`; for `exact` the name itself (the `byExactMetric` key). */
  text: string;
  negate: boolean;
  /** The final answer, negation included. */
  test(s: string): boolean;
}

export interface CompiledRule {
  id: string;
  name: string;
  kind: RuleKind;
  severity: Severity;
  /** Exact names are resolved by a Map lookup (`RuleSet.byExactMetric`); globs and regexes are tested once per series, then cached by the engine. */
  metric: Matcher;
  /** A series without the tag is matched as if its value were "" (Prometheus label semantics). */
  tags: ReadonlyArray<{ key: string; match: Matcher }>;
  /** threshold/rate: as written; anomaly: `>=` (score at or above the level); absent: `==` (unused). */
  op: Op;
  /** threshold/rate: `value`; anomaly: the score level; absent: 0 (unused). */
  threshold: number;
  /** threshold: bucket field compared (default mean). Other kinds: `mean` (unused). */
  of: BucketField;
  /** rate: aggregate over the window (default increase). Other kinds: `increase` (unused). */
  aggregate: WindowAggregate;
  /** threshold/rate: how long the condition must hold (0: the first bucket fires); absent: how long without data. */
  forMs: number;
  /** rate: the sliding window; other kinds 0. */
  windowMs: number;
  /** anomaly: consecutive buckets at or above the level; other kinds 1. */
  buckets: number;
  keepFiringForMs: number;
  /** Hysteresis level (`resolveValue`); null: resolve as soon as the condition is false. See `shouldResolve`. */
  resolveThreshold: number | null;
  /** 0: never re-send. */
  repeatIntervalMs: number;
  rateLimit: { max: number; perMs: number } | null;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, Template>>;
  source: { file: string; line: number };
}

export interface RuleSet {
  /** Enabled rules in file order. */
  rules: CompiledRule[];
  byExactMetric: Map<string, CompiledRule[]>;
  /** Rules whose metric is a glob or regex, in file order. */
  patterned: CompiledRule[];
  /** sha256 of the file text: equal hashes mean equal rules. */
  hash: string;
  /** The text the rules were parsed from (what the shard threads parse their copy from). */
  text: string;
  file: string;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** Error codes to move into core/errors.ts (the catalogue) when it takes them. */
export type RulesErrorCode = 'VIGIL_ERR_RULES_FILE' | 'VIGIL_ERR_RULES_INVALID';

export interface RuleIssue {
  file: string;
  /** 1-based; the offending key, or its parent when the key is missing. */
  line: number;
  column: number;
  /** Key path as written in messages: `rules[2].for`, `defaults.labels.team`. */
  path: string;
  /** The offending value, when there is one. */
  value?: unknown;
  /** What is wrong and what was expected. */
  message: string;
}

export function formatIssue(issue: RuleIssue): string {
  return `${issue.file}:${issue.line}:${issue.column} ${issue.path ? `${issue.path}: ` : ''}${issue.message}`;
}

const MAX_REPORTED = 20;

/** A rules file could not be read or parsed (`VIGIL_ERR_RULES_FILE`) or is invalid (`VIGIL_ERR_RULES_INVALID`). */
export class RulesError extends Error {
  readonly code: RulesErrorCode;
  readonly retryable = false;
  readonly file: string;
  /** Every problem found, sorted by position. */
  readonly issues: readonly RuleIssue[];

  constructor(code: RulesErrorCode, file: string, issues: RuleIssue[], options: { cause?: unknown; message?: string } = {}) {
    const lines = issues.slice(0, MAX_REPORTED).map(formatIssue);
    if (issues.length > MAX_REPORTED) lines.push(`... and ${issues.length - MAX_REPORTED} more`);
    const body = options.message ?? (issues.length === 1 ? (lines[0] as string) : `${file}: ${issues.length} problems\n  ${lines.join('\n  ')}`);
    super(`${code}: ${body}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RulesError';
    this.code = code;
    this.file = file;
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------------------------
// Durations

const DURATION_RE = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/;
const UNIT_MS = [365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1] as const;
const DURATION_EXPECTED = 'expected e.g. 30s, 5m, 1h30m';

function durationMs(text: string): number | null {
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

export function matchesSeries(rule: CompiledRule, metric: string, tags: Readonly<Record<string, string>>): boolean {
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
// Loading

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, verbose: true });
ajv.addFormat('duration', { type: 'string', validate: (s: string) => durationMs(s) !== null });
const validateFile = ajv.compile(rulesFileSchema);

export function loadRules(path: string): RuleSet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RulesError('VIGIL_ERR_RULES_FILE', path, [], { cause: err, message: `cannot read ${path}: ${(err as Error).message}` });
  }
  return parseRules(text, path);
}

/** Parses YAML or JSON (by extension, else by the first character); JSON goes through the YAML parser too, for positions. */
export function parseRules(text: string, file: string): RuleSet {
  const hash = createHash('sha256').update(text).digest('hex');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const pos = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e) => {
      // `op: >=` unquoted: `>` starts a YAML folded block scalar.
      const hint = /block scalar header/i.test(e.message) ? ' (quote operators in YAML, e.g. op: ">=")' : '';
      return { file, ...pos(e.pos[0]), path: '', message: `cannot parse: ${e.message.split('\n')[0] ?? e.code}${hint}` };
    });
    throw new RulesError('VIGIL_ERR_RULES_FILE', file, issues);
  }
  const isJson = /\.json$/i.test(file) || (!/\.ya?ml$/i.test(file) && /^\uFEFF?\s*[{[]/.test(text));
  if (isJson) {
    try {
      JSON.parse(text.replace(/^\uFEFF/, ''));
    } catch (err) {
      const at = /position (\d+)/.exec((err as Error).message);
      const issue = { file, ...pos(at ? Number(at[1]) : 0), path: '', message: `cannot parse as JSON: ${(err as Error).message}` };
      throw new RulesError('VIGIL_ERR_RULES_FILE', file, [issue], { cause: err });
    }
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new RulesError('VIGIL_ERR_RULES_FILE', file, [{ file, line: 1, column: 1, path: '', message: `cannot parse: ${(err as Error).message}` }], { cause: err });
  }
  const checker = new Checker(file, raw, locator(doc, pos));
  if (raw === null || raw === undefined || typeof raw !== 'object' || Array.isArray(raw)) {
    checker.add([], raw, 'expected a mapping with a `rules:` list at the top level');
    throw checker.error();
  }
  if (!validateFile(raw)) for (const e of validateFile.errors ?? []) checker.schemaIssue(e);
  const rules = compileFile(raw as Record<string, unknown>, checker);
  if (checker.issues.length > 0) throw checker.error();
  return buildSet(rules, hash, text, file);
}

function buildSet(rules: CompiledRule[], hash: string, text: string, file: string): RuleSet {
  const byExactMetric = new Map<string, CompiledRule[]>();
  const patterned: CompiledRule[] = [];
  for (const rule of rules) {
    if (rule.metric.kind !== 'exact') {
      patterned.push(rule);
      continue;
    }
    const list = byExactMetric.get(rule.metric.text);
    if (list) list.push(rule);
    else byExactMetric.set(rule.metric.text, [rule]);
  }
  return { rules, byExactMetric, patterned, hash, text, file };
}

// ---------------------------------------------------------------------------------------------
// Positions and issues

type Segment = string | number;
type Locate = (path: readonly Segment[]) => { line: number; column: number };

/** Maps a key path to the position of its key (or array item); stops at the deepest node that exists. */
function locator(doc: Document, pos: (offset: number) => { line: number; column: number }): Locate {
  return (path) => {
    let node: unknown = doc.contents;
    let offset = isMap(node) || isSeq(node) || isScalar(node) ? (node.range?.[0] ?? 0) : 0;
    for (const seg of path) {
      if (isAlias(node)) node = node.resolve(doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
        if (!pair) break;
        if (isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item: unknown = node.items[seg];
        if (!(isMap(item) || isSeq(item) || isScalar(item) || isAlias(item))) break;
        if (item.range) offset = item.range[0];
        node = item;
      } else {
        break;
      }
    }
    return pos(offset);
  };
}

function displayPath(path: readonly Segment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly Segment[]): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, seg)) return undefined;
    node = (node as Record<string, unknown>)[seg];
  }
  return node;
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

/** Closest candidate within two edits, for "did you mean". */
function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

const EXPECTED_BY_KEY = new Map([['id', 'lowercase letters, digits, "_", "." and "-", e.g. "cpu-high"']]);

class Checker {
  readonly issues: RuleIssue[] = [];
  private readonly reported: string[] = [];

  constructor(
    readonly file: string,
    readonly raw: unknown,
    readonly locate: Locate,
  ) {}

  /**
   * Records a problem at `path`, unless one was already recorded at the path, inside it or around it:
   * the second pass must not repeat what the schema said (a bad duration is one problem, not two).
   */
  add(path: readonly Segment[], value: unknown, message: string, at: readonly Segment[] = path): void {
    const shown = displayPath(path);
    const overlaps = (a: string, b: string) => a === b || (a.startsWith(b) && /^[.[]/.test(a.slice(b.length)));
    if (this.reported.some((p) => overlaps(shown, p) || overlaps(p, shown))) return;
    this.reported.push(shown);
    this.issues.push({ file: this.file, ...this.locate(at), path: shown, ...(value === undefined ? {} : { value }), message });
  }

  schemaIssue(e: ErrorObject): void {
    if (e.keyword === 'propertyNames') return; // reported by the inner `pattern`/`minLength` error, which names the key
    const path = this.segments(e.instancePath);
    const params = e.params as Record<string, unknown>;
    const parent = e.parentSchema as Record<string, unknown> | undefined;
    const value = valueAt(this.raw, path);
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String(params['additionalProperty']);
        const allowed = Object.keys((parent?.['properties'] as object | undefined) ?? {});
        const hint = suggest(key, allowed);
        this.add([...path, key], undefined, `unknown key (${hint ? `did you mean "${hint}"? ` : ''}expected one of ${allowed.join(', ')})`);
        return;
      }
      case 'required': {
        const key = String(params['missingProperty']);
        this.add([...path, key], undefined, `required key is missing`, path);
        return;
      }
    }
    if (e.propertyName !== undefined) {
      const name = e.propertyName;
      const expected = e.keyword === 'pattern' ? 'letters, digits and "_", not starting with a digit' : 'a non-empty name';
      this.add([...path, name], name, `name ${JSON.stringify(name)} is not allowed (expected ${expected})`);
      return;
    }
    const last = path[path.length - 1];
    if (parent?.['format'] === 'duration') {
      const fix = typeof value === 'number' ? `; write it with a unit, e.g. "${value}s"` : '';
      this.add(path, value, `${show(value)} is not a duration (${DURATION_EXPECTED}${fix})`);
      return;
    }
    switch (e.keyword) {
      case 'type': {
        const type = String(params['type']);
        const quote = type === 'string' && (typeof value === 'number' || typeof value === 'boolean') ? `; quote it: "${String(value)}"` : '';
        this.add(path, value, `${show(value)} has the wrong type (expected ${type === 'integer' ? 'an integer' : `a ${type === 'object' ? 'mapping' : type === 'array' ? 'list' : type}`}${quote})`);
        return;
      }
      case 'enum': {
        const values = (params['allowedValues'] as unknown[]).map(String);
        const hint = typeof value === 'string' && value.length > 2 ? suggest(value, values) : undefined;
        const yamlHint = last === 'op' && value === '' ? '; quote the operator in YAML, e.g. op: ">"' : '';
        const allowed = values.map((v) => JSON.stringify(v)).join(', ');
        this.add(path, value, `${show(value)} is not allowed (${hint ? `did you mean "${hint}"? ` : ''}expected one of ${allowed}${yamlHint})`);
        return;
      }
      case 'pattern':
        this.add(path, value, `${show(value)} is not allowed (expected ${EXPECTED_BY_KEY.get(String(last)) ?? `text matching ${String(params['pattern'])}`})`);
        return;
      case 'minLength':
        this.add(path, value, `${show(value)} is empty (expected a non-empty string)`);
        return;
      case 'maxLength':
        this.add(path, value, `${show(value)} is too long (expected at most ${String(params['limit'])} characters)`);
        return;
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        this.add(path, value, `${show(value)} is out of range (expected a number ${String(params['comparison'])} ${String(params['limit'])})`);
        return;
      default:
        this.add(path, value, `${show(value)}: ${e.message ?? e.keyword}`);
    }
  }

  error(): RulesError {
    const sorted = [...this.issues].sort((a, b) => a.line - b.line || a.column - b.column);
    return new RulesError('VIGIL_ERR_RULES_INVALID', this.file, sorted);
  }

  /** ajv's `/rules/2/for` to ['rules', 2, 'for'] (numbers where the data holds an array). */
  private segments(pointer: string): Segment[] {
    const out: Segment[] = [];
    let node: unknown = this.raw;
    for (const token of pointer.split('/').slice(1)) {
      const key = token.replaceAll('~1', '/').replaceAll('~0', '~');
      const seg: Segment = Array.isArray(node) && /^\d+$/.test(key) ? Number(key) : key;
      out.push(seg);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[seg] : undefined;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
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
};
const COMMON_KEYS = ['id', 'name', 'kind', 'enabled', 'metric', 'tags', 'severity', 'labels', 'annotations', 'keepFiringFor', 'repeatInterval', 'rateLimit'];
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

function compileFile(raw: Obj, c: Checker): CompiledRule[] {
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
      const why = kind === 'anomaly' || kind === 'absent' ? `${kind} rules cannot use expr` : `expr ${implied === 'rate' ? 'with' : 'without'} "in <window>" is a ${implied} rule`;
      c.add(at('kind'), kind, `${JSON.stringify(kind)} does not match expr (${why})`);
      return null;
    }
    kind = implied;
  }
  // A kind outside the enum has been reported by the schema.
  if (kind !== undefined && !Object.hasOwn(KIND_KEYS, kind)) return null;
  if (kind === undefined) {
    // An expr that did not parse has been reported; guessing its kind would only add noise.
    if (!has(r, 'kind') && exprText === undefined) c.add(at('kind'), undefined, 'required key is missing (expected threshold, rate, anomaly or absent, or an expr)', at());
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

export { DEFAULT_KEYS, RULE_KEYS } from './rules-schema.js';
export { TEMPLATE_VARIABLES, compileTemplate, TemplateError } from './template.js';
export type { Template, TemplateContext } from './template.js';
