/** Positions of keys in a rules file, and the issues found there (every one reported at once). */
import type { ErrorObject } from 'ajv';
import { DURATION_EXPECTED } from './rule-values.js';
import { isAlias, isMap, isScalar, isSeq, type Document } from 'yaml';
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
// Positions and issues

export type Segment = string | number;
export type Locate = (path: readonly Segment[]) => { line: number; column: number };

/** Maps a key path to the position of its key (or array item); stops at the deepest node that exists. */
export function locator(doc: Document, pos: (offset: number) => { line: number; column: number }): Locate {
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

export function show(value: unknown): string {
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

export class Checker {
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