/**
 * Alert annotation templates: a tiny mustache-like language, compiled once when a rules file is
 * loaded and rendered per alert event.
 *
 *   "CPU {{ value | round 1 }}% on {{ tags.host | default \"?\" }}"
 *
 * A placeholder is a variable path (`value`, `tags.host`, `rule.name`, `tags["k8s.pod"]`) followed
 * by filters: `round N` (N decimals, default 0), `upper`, `lower`, `default "text"`. A variable
 * that has no value at render time renders as the empty string; a syntax error (unclosed `{{`,
 * empty placeholder, unknown filter, bad argument) or, when the caller names the allowed roots, an
 * unknown root variable is a compile-time `TemplateError` carrying the offset in the source.
 */

/** The variables an alert template may use (the context the alert engine renders with). */
export const TEMPLATE_VARIABLES = [
  'value',
  'threshold',
  'score',
  'metric',
  'tags',
  'labels',
  'rule',
  'severity',
  'for',
  'window',
  'buckets',
  'status',
  'startsAt',
  'observedAt',
  'fingerprint',
  'explanation',
] as const;

/**
 * What a rule's templates are rendered with. `rule`, `threshold`, `for`, `window`, `buckets`,
 * `severity` and `labels` come from the rule (see `renderAnnotations` in rules.ts); the rest from
 * the series and the bucket that changed the alert's state.
 */
export type TemplateContext = {
  value?: number | null;
  threshold?: number | null;
  score?: number | null;
  metric?: string;
  tags?: Readonly<Record<string, string>>;
  labels?: Readonly<Record<string, string>>;
  rule?: { readonly id: string; readonly name: string; readonly kind: string; readonly severity: string };
  severity?: string;
  /** Durations as text, e.g. `5m`, `1h30m` (`formatDuration`). */
  for?: string;
  window?: string;
  buckets?: number;
  status?: 'firing' | 'resolved';
  startsAt?: string;
  observedAt?: string;
  fingerprint?: string;
  explanation?: Readonly<Record<string, unknown>>;
};

export interface Template {
  readonly source: string;
  /** Root variable names used, in order of first use (for validation and docs). */
  readonly variables: readonly string[];
  render(context: TemplateContext): string;
}

export class TemplateError extends Error {
  /** Offset in the template source where the problem starts (0-based). */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = 'TemplateError';
    this.offset = offset;
  }
}

type Filter =
  | { name: 'round'; digits: number }
  | { name: 'upper' }
  | { name: 'lower' }
  | { name: 'default'; text: string };

type Part = string | { path: readonly string[]; filters: readonly Filter[] };

const FILTERS = ['round', 'upper', 'lower', 'default'] as const;

export interface CompileOptions {
  /** When set, a placeholder whose root variable is not in this list is a compile error. */
  variables?: readonly string[];
}

export function compileTemplate(source: string, options: CompileOptions = {}): Template {
  const parts: Part[] = [];
  const variables: string[] = [];
  let pos = 0;
  while (pos < source.length) {
    const open = source.indexOf('{{', pos);
    if (open < 0) {
      parts.push(source.slice(pos));
      break;
    }
    if (open > pos) parts.push(source.slice(pos, open));
    const parser = new ExprParser(source, open + 2);
    const part = parser.placeholder(open);
    const root = part.path[0] as string;
    if (options.variables && !options.variables.includes(root)) {
      throw new TemplateError(`unknown variable "${root}" (expected one of ${options.variables.join(', ')})`, open);
    }
    if (!variables.includes(root)) variables.push(root);
    parts.push(part);
    pos = parser.pos;
  }
  const frozen = Object.freeze(parts);
  return Object.freeze({
    source,
    variables: Object.freeze(variables),
    render: (context: TemplateContext) => render(frozen, context),
  });
}

function render(parts: readonly Part[], context: TemplateContext): string {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    let value = lookup(context, part.path);
    for (const filter of part.filters) value = applyFilter(filter, value);
    out += format(value);
  }
  return out;
}

function lookup(context: TemplateContext, path: readonly string[]): unknown {
  let node: unknown = context;
  for (const key of path) {
    // Own properties only: `{{ tags.constructor }}` must not reach Object.prototype.
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function applyFilter(filter: Filter, value: unknown): unknown {
  switch (filter.name) {
    case 'round': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
      if (!Number.isFinite(n)) return value;
      // toFixed rounds half away from zero on the decimal text; Number() drops trailing zeros.
      const rounded = Number(n.toFixed(filter.digits));
      return Object.is(rounded, -0) ? 0 : rounded;
    }
    case 'upper':
      return format(value).toUpperCase();
    case 'lower':
      return format(value).toLowerCase();
    case 'default':
      return value === undefined || value === null || value === '' ? filter.text : value;
  }
}

function format(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value) ?? '';
}

/** Hand-written recursive descent over one `{{ ... }}`; `pos` ends after the closing `}}`. */
class ExprParser {
  constructor(
    private readonly src: string,
    public pos: number,
  ) {}

  placeholder(open: number): Exclude<Part, string> {
    this.ws();
    if (this.src.startsWith('}}', this.pos)) throw new TemplateError('empty placeholder "{{ }}"', open);
    if (this.pos >= this.src.length) throw new TemplateError('unclosed "{{" (expected "}}")', open);
    const path = this.path(open);
    const filters: Filter[] = [];
    for (;;) {
      this.ws();
      if (this.src.startsWith('}}', this.pos)) {
        this.pos += 2;
        return { path, filters };
      }
      if (this.pos >= this.src.length) throw new TemplateError('unclosed "{{" (expected "}}")', open);
      if (this.src[this.pos] !== '|') throw new TemplateError(`unexpected "${this.src[this.pos] ?? ''}" (expected "|" or "}}")`, this.pos);
      this.pos++;
      this.ws();
      filters.push(this.filter());
    }
  }

  private path(open: number): string[] {
    const path = [this.ident('a variable name')];
    for (;;) {
      const c = this.src[this.pos];
      if (c === '.') {
        this.pos++;
        path.push(this.ident('a name after "."'));
      } else if (c === '[') {
        this.pos++;
        this.ws();
        const key = this.string();
        if (key === null) throw new TemplateError('expected a quoted key after "["', this.pos);
        this.ws();
        if (this.src[this.pos] !== ']') throw new TemplateError('expected "]"', this.pos);
        this.pos++;
        path.push(key);
      } else {
        if (this.pos >= this.src.length) throw new TemplateError('unclosed "{{" (expected "}}")', open);
        return path;
      }
    }
  }

  private filter(): Filter {
    const at = this.pos;
    const name = this.ident('a filter name');
    if (!(FILTERS as readonly string[]).includes(name)) {
      throw new TemplateError(`unknown filter "${name}" (expected one of ${FILTERS.join(', ')})`, at);
    }
    this.ws();
    switch (name) {
      case 'round': {
        const m = /^\d+/.exec(this.src.slice(this.pos));
        if (!m) return { name: 'round', digits: 0 };
        const digits = Number(m[0]);
        if (digits > 15) throw new TemplateError(`round ${m[0]}: expected 0 to 15 decimals`, this.pos);
        this.pos += m[0].length;
        return { name: 'round', digits };
      }
      case 'default': {
        const text = this.string();
        if (text === null) throw new TemplateError('default needs a quoted text, e.g. default "unknown"', this.pos);
        return { name: 'default', text };
      }
      default:
        return { name: name as 'upper' | 'lower' };
    }
  }

  private ident(what: string): string {
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.src.slice(this.pos));
    if (!m) {
      const found = this.src[this.pos];
      throw new TemplateError(`expected ${what}${found === undefined ? '' : `, found "${found}"`}`, this.pos);
    }
    this.pos += m[0].length;
    return m[0];
  }

  /** A "double" or 'single' quoted string with backslash escapes; null when none starts here. */
  private string(): string | null {
    const quote = this.src[this.pos];
    if (quote !== '"' && quote !== "'") return null;
    const start = this.pos;
    let out = '';
    for (this.pos++; this.pos < this.src.length; this.pos++) {
      const c = this.src[this.pos] as string;
      if (c === quote) {
        this.pos++;
        return out;
      }
      if (c === '\\' && this.pos + 1 < this.src.length) {
        this.pos++;
        const e = this.src[this.pos] as string;
        out += e === 'n' ? '\n' : e === 't' ? '\t' : e;
      } else {
        out += c;
      }
    }
    throw new TemplateError(`unclosed string (expected ${quote})`, start);
  }

  private ws(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos] as string)) this.pos++;
  }
}
