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
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TENANT_NAME } from '../../core/tenant.js';
import { Ajv } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { rulesFileSchema, type AGGREGATES, type KINDS, type OFS, type OPS, type SEVERITIES } from './rules-schema.js';
import type { Template } from './template.js';
import { Checker, RulesError, locator } from './rule-check.js';
import { compileFile } from './rule-compile.js';
import { durationMs } from './rule-values.js';

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
  /** Only this tenant's series ('' the default tenant's); null: every tenant's. */
  tenant: string | null;
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
  /** forecast: how far ahead the forecast may cross the threshold; other kinds 0. */
  withinMs: number;
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
    // JSON.parse's position counts from after a BOM; positions here count in the file's text.
    const bom = text.startsWith('\uFEFF') ? 1 : 0;
    try {
      JSON.parse(text.slice(bom));
    } catch (err) {
      const at = /position (\d+)/.exec((err as Error).message);
      const issue = { file, ...pos(at ? Number(at[1]) + bom : 0), path: '', message: `cannot parse as JSON: ${(err as Error).message}` };
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

/** One file of a rule bundle: the rules file, or a tenant's own (`alerts.tenantRulesDir`). */
export interface RulePart {
  file: string;
  /** null: the rules file (its rules match every tenant's series unless they say `tenant`). */
  tenant: string | null;
  text: string;
}

/** What a bundle's text starts with (a rules file never does: YAML or JSON). */
const BUNDLE = 'vigil-rules-bundle\n';

/**
 * The rules of the rules file and of each tenant's file as one set (issue 18). A tenant file's
 * rules match that tenant's series only, and their ids are `<tenant>/<id>`, so tenants' ids never
 * meet each other's or the rules file's (whose ids have no `/`). The set's text is the parts as
 * JSON behind a marker, what the shard threads parse their copy from (`parseRulesText`); with the
 * rules file alone it is that file's text, as before.
 */
export function parseRuleBundle(parts: readonly RulePart[]): RuleSet {
  if (parts.length === 1 && parts[0]?.tenant === null) return parseRules(parts[0].text, parts[0].file);
  const rules: CompiledRule[] = [];
  for (const part of parts) {
    const set = parseRules(part.text, part.file);
    if (part.tenant === null) {
      rules.push(...set.rules);
      continue;
    }
    for (const rule of set.rules) {
      if (rule.tenant !== null && rule.tenant !== part.tenant) {
        throw new RulesError('VIGIL_ERR_RULES_FILE', part.file, [{ file: part.file, line: 1, column: 1, path: `rules.${rule.id}.tenant`, message: `rule ${JSON.stringify(rule.id)} names tenant ${JSON.stringify(rule.tenant)} in tenant ${JSON.stringify(part.tenant)}'s file (expected ${JSON.stringify(part.tenant)} or none)` }]);
      }
      rules.push(Object.freeze({ ...rule, id: `${part.tenant}/${rule.id}`, tenant: part.tenant }));
    }
  }
  const text = BUNDLE + JSON.stringify(parts);
  return buildSet(rules, createHash('sha256').update(text).digest('hex'), text, parts.map((p) => p.file).join(', '));
}

/** A rule set's text as the shard threads get it: a rules file's, or a bundle's. */
export function parseRulesText(text: string, file: string): RuleSet {
  // No rules yet (a tenants' directory with no file in it).
  if (text === '') return buildSet([], createHash('sha256').update('').digest('hex'), '', file);
  return text.startsWith(BUNDLE) ? parseRuleBundle(JSON.parse(text.slice(BUNDLE.length)) as RulePart[]) : parseRules(text, file);
}

/**
 * The rules file (empty: none) and the tenants' files of `tenantDir` (empty: none): each
 * `<tenant>.yaml`, `.yml` or `.json` whose name is a tenant name; other files are not rules.
 */
export function loadRuleBundle(file: string, tenantDir: string): RuleSet {
  const parts: RulePart[] = [];
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new RulesError('VIGIL_ERR_RULES_FILE', path, [], { cause: err, message: `cannot read ${path}: ${(err as Error).message}` });
    }
  };
  if (file) parts.push({ file, tenant: null, text: read(file) });
  if (tenantDir) {
    let names: string[];
    try {
      names = readdirSync(tenantDir).sort();
    } catch (err) {
      throw new RulesError('VIGIL_ERR_RULES_FILE', tenantDir, [], { cause: err, message: `cannot read ${tenantDir}: ${(err as Error).message}` });
    }
    for (const name of names) {
      const m = /^(.+)\.(ya?ml|json)$/i.exec(name);
      if (!m || !TENANT_NAME.test(m[1] as string)) continue;
      const path = join(tenantDir, name);
      parts.push({ file: path, tenant: m[1] as string, text: read(path) });
    }
  }
  return parts.length === 0 ? parseRulesText('', file) : parseRuleBundle(parts);
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


export { DEFAULT_KEYS, RULE_KEYS } from './rules-schema.js';
export { TEMPLATE_VARIABLES } from './template.js';
export { RulesError, formatIssue, type RuleIssue, type RulesErrorCode } from './rule-check.js';
export { compare, compileMatcher, formatDuration, matchesSeries, parseDuration, renderAnnotations, shouldResolve, tagObject } from './rule-values.js';
