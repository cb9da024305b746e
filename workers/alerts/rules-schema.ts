/**
 * JSON Schema (ajv, draft-07 subset) of an alert rules file: the structural half of validation.
 * Types, enums, ranges, patterns and unknown keys are checked here; what depends on several keys
 * (what a kind requires, `expr` against the long form, duplicate ids, regexes, templates, the side
 * of `resolveValue`) is checked in rules.ts. Every key is documented in README.md next to this file.
 *
 * Kind-specific keys carry no schema default: a rule that does not set `of` must not look as if it
 * did (a rate rule with `of` is an error), so rules.ts applies per-kind defaults after validation.
 */

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export const KINDS = ['threshold', 'rate', 'anomaly', 'absent', 'forecast'] as const;
export const OPS = ['>', '>=', '<', '<=', '==', '!='] as const;
export const OFS = ['mean', 'max', 'min', 'last', 'sum', 'count'] as const;
export const AGGREGATES = ['increase', 'sum', 'count', 'mean', 'max', 'rate'] as const;

/** Durations are Prometheus-style text (`30s`, `5m`, `1h30m`); the `duration` format is registered by rules.ts. */
const duration = (description: string) => ({ type: 'string', format: 'duration', description }) as const;

/** Prometheus/Alertmanager label and annotation names. */
const LABEL_NAME = '^[a-zA-Z_][a-zA-Z0-9_]*$';

const labels = {
  type: 'object',
  description: 'Labels added to every alert of the rule (Alertmanager routes on them).',
  propertyNames: { pattern: LABEL_NAME },
  additionalProperties: { type: 'string' },
} as const;

const annotations = {
  type: 'object',
  description: 'Annotation templates rendered per alert (summary, description, runbook_url, ...).',
  propertyNames: { pattern: LABEL_NAME },
  additionalProperties: { type: 'string' },
} as const;

const rateLimit = {
  type: 'object',
  description: 'At most `max` events of the rule per `per`.',
  additionalProperties: false,
  required: ['max', 'per'],
  properties: {
    max: { type: 'integer', minimum: 1, maximum: 1000000, description: 'Events allowed per window.' },
    per: duration('The window.'),
  },
} as const;

const severity = { type: 'string', enum: SEVERITIES, description: 'Alert severity.' } as const;
const repeatInterval = duration('Re-send a firing alert this often while it lasts; `0s` never re-sends.');
const keepFiringFor = duration('Keep firing this long after the condition stops holding (flapping guard).');

export const RULE_KEYS = [
  'id',
  'name',
  'kind',
  'enabled',
  'expr',
  'metric',
  'tags',
  'tenant',
  'op',
  'value',
  'of',
  'aggregate',
  'for',
  'window',
  'within',
  'score',
  'sensitivity',
  'buckets',
  'severity',
  'labels',
  'annotations',
  'keepFiringFor',
  'resolveValue',
  'repeatInterval',
  'rateLimit',
] as const;

const rule = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[a-z0-9_.-]+$', description: 'Unique id; part of the alert fingerprint.' },
    name: { type: 'string', minLength: 1, maxLength: 256, description: 'Alertmanager `alertname`; defaults to the id.' },
    kind: { type: 'string', enum: KINDS, description: 'What the rule evaluates; inferred from `expr` when absent.' },
    enabled: { type: 'boolean', description: 'false keeps the rule in the file (validated) but out of the rule set.' },
    expr: { type: 'string', minLength: 1, description: 'Shorthand for metric/op/value/for/window: `m > 90 for 5m`, `m > 10 in 5m`.' },
    metric: { type: 'string', minLength: 1, description: 'Metric name: exact, glob or /regex/.' },
    tags: {
      type: 'object',
      description: 'Tag matchers, all of which must match: exact, glob, /regex/, `!` negates.',
      propertyNames: { minLength: 1 },
      additionalProperties: { type: 'string' },
    },
    tenant: { type: 'string', maxLength: 64, description: "Only this tenant's series ('' the default tenant's); absent: every tenant's. A tenant's own rules file (`alerts.tenantRulesDir`) sets it." },
    op: { type: 'string', enum: OPS, description: 'Comparison of the observed value against `value`.' },
    value: { type: 'number', description: 'Threshold.' },
    of: { type: 'string', enum: OFS, description: 'threshold: bucket aggregate compared (default mean).' },
    aggregate: { type: 'string', enum: AGGREGATES, description: 'rate: aggregate over the window (default increase).' },
    for: duration('threshold/rate: how long the condition must hold; absent: how long without data.'),
    window: duration('rate: sliding window length.'),
    within: duration('forecast: how far ahead the forecast may cross `value` for the rule to hold.'),
    score: { type: 'number', exclusiveMinimum: 0, maximum: 1, description: 'anomaly: ensemble score level in (0, 1].' },
    sensitivity: { type: 'number', exclusiveMinimum: 0, maximum: 1, description: 'anomaly: level = 1 - sensitivity.' },
    buckets: { type: 'integer', minimum: 1, maximum: 10000, description: 'anomaly: consecutive buckets at or above the level (default 1).' },
    severity,
    labels,
    annotations,
    keepFiringFor,
    resolveValue: { type: 'number', description: 'Hysteresis: resolve only once the value crosses this level.' },
    repeatInterval,
    rateLimit,
  },
} as const;

export const DEFAULT_KEYS = ['severity', 'labels', 'annotations', 'keepFiringFor', 'repeatInterval', 'rateLimit'] as const;

export const rulesFileSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: {
    defaults: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Values every rule of the file inherits unless it sets them (labels and annotations merge per key).',
      properties: {
        severity: { ...severity, default: 'warning' },
        labels: { ...labels, default: {} },
        annotations: { ...annotations, default: {} },
        keepFiringFor: { ...keepFiringFor, default: '0s' },
        repeatInterval: { ...repeatInterval, default: '4h' },
        rateLimit,
      },
    },
    rules: { type: 'array', items: rule, description: 'The rules.' },
  },
} as const;
