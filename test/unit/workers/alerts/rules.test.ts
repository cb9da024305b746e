import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { rulesError } from './rules-error.js';
import {
  DEFAULT_KEYS,
  RULE_KEYS,
  RulesError,
  TEMPLATE_VARIABLES,
  compare,
  compileMatcher,
  formatDuration,
  loadRules,
  matchesSeries,
  parseDuration,
  parseRules,
  renderAnnotations,
  shouldResolve,
  type CompiledRule,
  type RuleSet,
} from '../../../../workers/alerts/rules.js';

const EXAMPLE = fileURLToPath(new URL('../../../../rules/example.yaml', import.meta.url));
const DEMO = fileURLToPath(new URL('../../../../rules/demo.yaml', import.meta.url));
const README = fileURLToPath(new URL('../../../../workers/alerts/README.md', import.meta.url));


function one(set: RuleSet, id: string): CompiledRule {
  const rule = set.rules.find((r) => r.id === id);
  if (!rule) throw new Error(`no rule ${id}`);
  return rule;
}

/** Lines joined with "\n" so line numbers in assertions are easy to count. */
const lines = (...l: string[]) => l.join('\n') + '\n';

describe('rules/example.yaml', () => {
  it('loads the predefined rules with their brief thresholds', () => {
    const set = loadRules(EXAMPLE);
    expect(set.rules.map((r) => r.id)).toEqual(['cpu-high', 'memory-high', 'auth-failures', 'key-access-anomaly', 'host-silent']);
    const cpu = one(set, 'cpu-high');
    expect(cpu).toMatchObject({ kind: 'threshold', op: '>', threshold: 90, forMs: 300_000, severity: 'warning', of: 'mean', resolveThreshold: 85 });
    expect(one(set, 'memory-high')).toMatchObject({ kind: 'threshold', threshold: 85, forMs: 300_000, severity: 'critical' });
    expect(one(set, 'auth-failures')).toMatchObject({ kind: 'rate', aggregate: 'increase', threshold: 10, windowMs: 300_000, severity: 'critical', rateLimit: { max: 20, perMs: 3_600_000 } });
    expect(one(set, 'key-access-anomaly')).toMatchObject({ kind: 'anomaly', op: '>=', threshold: 0.8, buckets: 3, severity: 'warning' });
    expect(one(set, 'host-silent')).toMatchObject({ kind: 'absent', forMs: 600_000, severity: 'critical' });
    expect(set.byExactMetric.get('system.cpu.usage_total')).toEqual([cpu, one(set, 'host-silent')]);
    expect(set.patterned).toEqual([]);
    expect(set.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(cpu.source).toEqual({ file: EXAMPLE, line: 15 });
    expect(cpu.labels).toEqual({ source: 'vigil', team: 'infra' });
    expect(cpu.keepFiringForMs).toBe(60_000);
    expect(one(set, 'auth-failures').repeatIntervalMs).toBe(1_800_000);
  });

  it('rules/demo.yaml has every kind, with windows of seconds', () => {
    const set = loadRules(DEMO);
    expect(new Set(set.rules.map((r) => r.kind))).toEqual(new Set(['threshold', 'rate', 'anomaly', 'absent']));
    expect(one(set, 'cpu-high')).toMatchObject({ kind: 'threshold', threshold: 90, forMs: 30_000, resolveThreshold: 85 });
    expect(one(set, 'auth-failures')).toMatchObject({ kind: 'rate', aggregate: 'increase', threshold: 10, windowMs: 30_000 });
    expect(one(set, 'key-access-anomaly')).toMatchObject({ kind: 'anomaly', threshold: 0.8, buckets: 2 });
    expect(one(set, 'host-silent')).toMatchObject({ kind: 'absent', forMs: 30_000 });
    // The same ids and names as the predefined rules they shorten.
    const example = loadRules(EXAMPLE);
    for (const r of set.rules) expect(one(example, r.id).name, r.id).toBe(r.name);
  });

  it('renders the example annotations', () => {
    const cpu = one(loadRules(EXAMPLE), 'cpu-high');
    const out = renderAnnotations(cpu, { value: 93.14, metric: 'system.cpu.usage_total', tags: { host: 'web-1' } });
    expect(out).toEqual({
      runbook_url: 'https://example.com/runbooks/cpu-high',
      summary: 'CPU at 93.1% on web-1',
      description: 'system.cpu.usage_total has been above 90% for 5m (resolves below 85%).',
    });
    expect(renderAnnotations(cpu, { value: 91 })['summary']).toBe('CPU at 91% on unknown host');
  });
});

describe('matchers', () => {
  it('exact, glob and regex metric names', () => {
    const exact = compileMatcher('system.cpu.usage_total');
    expect(exact.kind).toBe('exact');
    expect(exact.test('system.cpu.usage_total')).toBe(true);
    expect(exact.test('system.cpu.usage_totalx')).toBe(false);
    const glob = compileMatcher('system.cpu.*');
    expect(glob.kind).toBe('glob');
    expect(glob.test('system.cpu.usage_total')).toBe(true);
    expect(glob.test('systemXcpu.idle')).toBe(false); // "." is literal in globs
    expect(compileMatcher('web-?').test('web-1')).toBe(true);
    expect(compileMatcher('web-?').test('web-12')).toBe(false);
    const re = compileMatcher('/^web-\\d+$/');
    expect(re.kind).toBe('regex');
    expect(re.test('web-12')).toBe(true);
    expect(re.test('db-1')).toBe(false);
    expect(compileMatcher('/^WEB/i').test('web-1')).toBe(true);
  });

  it('negation with "!" on tags', () => {
    const not = compileMatcher('!eu-*');
    expect(not).toMatchObject({ kind: 'glob', negate: true, text: 'eu-*' });
    expect(not.test('us-east')).toBe(true);
    expect(not.test('eu-west')).toBe(false);
  });

  it('matchesSeries requires the metric and every tag; a missing tag matches as ""', () => {
    const set = parseRules(
      lines(
        'rules:',
        '  - id: r',
        '    kind: threshold',
        '    metric: "system.cpu.*"',
        '    tags: { region: "eu-*", host: "/^web-\\\\d+$/", env: "!staging" }',
        '    op: ">"',
        '    value: 1',
      ),
      'r.yaml',
    );
    const rule = one(set, 'r');
    expect(set.patterned).toEqual([rule]);
    expect(matchesSeries(rule, 'system.cpu.user', { region: 'eu-west', host: 'web-3' })).toBe(true);
    expect(matchesSeries(rule, 'system.cpu.user', { region: 'eu-west', host: 'web-3', env: 'staging' })).toBe(false);
    expect(matchesSeries(rule, 'system.cpu.user', { region: 'us-east', host: 'web-3' })).toBe(false);
    expect(matchesSeries(rule, 'system.cpu.user', { region: 'eu-west' })).toBe(false);
    expect(matchesSeries(rule, 'system.mem.used', { region: 'eu-west', host: 'web-3' })).toBe(false);
    // Own properties only: a tag called "constructor" is not found on Object.prototype.
    const ctor = one(parseRules(lines('rules:', '  - { id: c, expr: "m > 1", tags: { constructor: "!x" } }'), 'c.yaml'), 'c');
    expect(matchesSeries(ctor, 'm', {})).toBe(true);
  });

  it('compare covers every operator', () => {
    expect([compare('>', 2, 1), compare('>=', 1, 1), compare('<', 1, 2), compare('<=', 2, 2), compare('==', 1, 1), compare('!=', 1, 2)]).toEqual([true, true, true, true, true, true]);
    expect([compare('>', 1, 1), compare('<', 1, 1), compare('==', 1, 2), compare('!=', 1, 1)]).toEqual([false, false, false, false]);
  });
});

describe('durations', () => {
  it('parses Prometheus-style durations', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('1w')).toBe(7 * 86_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1m30s500ms')).toBe(90_500);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('0s')).toBe(0);
  });

  it('rejects other text, naming it', () => {
    for (const bad of ['', '5', '5 minutes', '1.5h', '5M', '30s5m', 'h', '-5m', '1h 30m']) {
      expect(() => parseDuration(bad)).toThrow(`${JSON.stringify(bad)} is not a duration (expected e.g. 30s, 5m, 1h30m)`);
    }
  });

  it('formats milliseconds back', () => {
    expect([0, 250, 30_000, 300_000, 5_400_000, 86_400_000 + 1000].map(formatDuration)).toEqual(['0s', '250ms', '30s', '5m', '1h30m', '1d1s']);
  });
});

describe('expr shorthand', () => {
  const parse = (expr: string, extra = '') => one(parseRules(lines('rules:', `  - id: e`, `    expr: ${JSON.stringify(expr)}`, ...(extra ? [extra] : [])), 'e.yaml'), 'e');

  it('threshold: metric op value [for duration]', () => {
    expect(parse('system.cpu.usage_total > 90 for 5m')).toMatchObject({ kind: 'threshold', op: '>', threshold: 90, forMs: 300_000, of: 'mean' });
    expect(parse('m<=-1.5e2')).toMatchObject({ kind: 'threshold', op: '<=', threshold: -150, forMs: 0 });
    expect(parse('max(m) != 0 for 1h30m')).toMatchObject({ of: 'max', op: '!=', forMs: 5_400_000 });
    expect(parse('/^disk\\.(used|free)$/ >= 95')).toMatchObject({ metric: { kind: 'regex' }, threshold: 95 });
  });

  it('rate: metric op value in window [for duration]; aggregate defaults to increase', () => {
    expect(parse('crypto.key.unauthorized_access > 10 in 5m')).toMatchObject({ kind: 'rate', aggregate: 'increase', windowMs: 300_000, threshold: 10 });
    expect(parse('rate(http.errors) > 2.5 in 1m for 2m')).toMatchObject({ kind: 'rate', aggregate: 'rate', windowMs: 60_000, forMs: 120_000 });
    expect(parse('x > 1 in 5m', '    aggregate: count')).toMatchObject({ aggregate: 'count' });
  });

  it('reports where an expr goes wrong', () => {
    const cases: [string, string][] = [
      ['cpu >> 90', 'expected a number after ">" at character 6'],
      ['cpu = 90', 'use "==" for equality at character 5'],
      ['cpu > 90% for 5m', 'unexpected "%" after the number'],
      ['cpu > 90 for 5 minutes', '"5" is not a duration'],
      ['cpu > 90 during 5m', 'unexpected "during" (expected "in <window>" or "for <duration>") at character 10'],
      ['cpu{host="a"} > 1', 'tag matchers go in the `tags:` key'],
      ['avg(cpu) > 1', 'unknown function "avg"'],
      ['increase(cpu) > 1', 'increase(...) is not a threshold of'],
      ['cpu > 1 for 1m for 2m', '"for" given twice'],
    ];
    for (const [expr, message] of cases) {
      const err = rulesError(lines('rules:', '  - id: e', `    expr: ${JSON.stringify(expr)}`));
      expect(err.issues).toHaveLength(1);
      expect(err.message, expr).toContain(`rules.yaml:3:5 rules[0].expr: ${JSON.stringify(expr)}`);
      expect(err.message, expr).toContain(message);
    }
  });

  it('cannot be combined with the keys it stands for, and fixes the kind', () => {
    const err = rulesError(lines('rules:', '  - id: e', '    expr: "m > 1 in 5m"', '    metric: m', '    kind: threshold'));
    expect(err.issues.map((i) => i.path)).toEqual(['rules[0].metric', 'rules[0].kind']);
    expect(err.message).toContain('rules[0].metric: cannot be combined with expr');
    expect(err.message).toContain('"threshold" does not match expr (expr with "in <window>" is a rate rule)');
  });
});

describe('defaults and per-kind values', () => {
  it('rules inherit file defaults; labels and annotations merge per key', () => {
    const set = parseRules(
      lines(
        'defaults:',
        '  severity: critical',
        '  repeatInterval: 1h',
        '  keepFiringFor: 2m',
        '  rateLimit: { max: 5, per: 1m }',
        '  labels: { team: infra, env: prod }',
        '  annotations: { summary: "{{ rule.name }} fired" }',
        'rules:',
        '  - { id: a, expr: "m > 1" }',
        '  - id: b',
        '    expr: "m > 2"',
        '    severity: info',
        '    repeatInterval: 0s',
        '    keepFiringFor: 0s',
        '    labels: { team: db }',
        '    annotations: { summary: "b: {{ value }}" }',
      ),
      'd.yaml',
    );
    const [a, b] = set.rules as [CompiledRule, CompiledRule];
    expect(a).toMatchObject({ name: 'a', severity: 'critical', repeatIntervalMs: 3_600_000, keepFiringForMs: 120_000, rateLimit: { max: 5, perMs: 60_000 } });
    expect(a.labels).toEqual({ team: 'infra', env: 'prod' });
    expect(a.annotations['summary']?.render({ rule: { id: 'a', name: 'a', kind: 'threshold', severity: 'critical' } })).toBe('a fired');
    expect(b).toMatchObject({ severity: 'info', repeatIntervalMs: 0, keepFiringForMs: 0 });
    expect(b.labels).toEqual({ team: 'db', env: 'prod' });
    expect(renderAnnotations(b, { value: 3 })).toEqual({ summary: 'b: 3' });
    expect(set.byExactMetric.get('m')).toEqual([a, b]);
  });

  it('without a defaults block: warning, 4h repeat, no keepFiringFor, no rate limit', () => {
    const r = one(parseRules('rules: [{ id: a, kind: absent, metric: service.heartbeat, for: 10m }]', 'x.yaml'), 'a');
    expect(r).toMatchObject({ kind: 'absent', severity: 'warning', repeatIntervalMs: 4 * 3_600_000, keepFiringForMs: 0, rateLimit: null, forMs: 600_000, resolveThreshold: null });
    expect(r.labels).toEqual({});
  });

  it('anomaly: sensitivity s means level 1 - s; buckets default 1', () => {
    const r = one(parseRules('rules: [{ id: a, kind: anomaly, metric: m, sensitivity: 0.25 }]', 'x.yaml'), 'a');
    expect(r).toMatchObject({ op: '>=', threshold: 0.75, buckets: 1 });
  });

  it('disabled rules are validated but left out', () => {
    const set = parseRules('rules: [{ id: a, expr: "m > 1", enabled: false }, { id: b, expr: "m > 2" }]', 'x.yaml');
    expect(set.rules.map((r) => r.id)).toEqual(['b']);
    expect(() => parseRules('rules: [{ id: a, expr: "m >", enabled: false }]', 'x.yaml')).toThrow(RulesError);
  });

  it('hysteresis: resolveValue decides when a firing threshold alert resolves', () => {
    const r = one(parseRules('rules: [{ id: a, expr: "cpu > 90", resolveValue: 85 }]', 'x.yaml'), 'a');
    expect(shouldResolve(r, 88)).toBe(false);
    expect(shouldResolve(r, 84.9)).toBe(true);
    const plain = one(parseRules('rules: [{ id: a, expr: "free < 10" }]', 'x.yaml'), 'a');
    expect(shouldResolve(plain, 9)).toBe(false);
    expect(shouldResolve(plain, 10)).toBe(true);
  });

  it('reads JSON files, with line numbers in errors', () => {
    const set = parseRules(JSON.stringify({ rules: [{ id: 'j', expr: 'm > 1 in 1m' }] }), 'rules.json');
    expect(one(set, 'j').kind).toBe('rate');
    const err = rulesError('{\n  "rules": [\n    { "id": "j", "expr": "m > 1", "colour": "red" }\n  ]\n}\n', 'rules.json');
    expect(err.message).toContain('rules.json:3:35 rules[0].colour: unknown key');
    expect(rulesError('{"rules": [],}', 'rules.json').code).toBe('VIGIL_ERR_RULES_FILE');
  });

  it('the hash follows the content', () => {
    const a = parseRules('rules: []\n', 'x.yaml');
    expect(parseRules('rules: []\n', 'y.yaml').hash).toBe(a.hash);
    expect(parseRules('rules: [] # changed\n', 'x.yaml').hash).not.toBe(a.hash);
  });
});

describe('errors name the file, line, column, key, value and what was expected', () => {
  it('unknown key, with a suggestion', () => {
    const err = rulesError(lines('rules:', '  - id: cpu', '    kind: threshold', '    metric: m', '    op: ">"', '    value: 1', '    fro: 5m'));
    expect(err.code).toBe('VIGIL_ERR_RULES_INVALID');
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]).toMatchObject({ file: 'rules.yaml', line: 7, column: 5, path: 'rules[0].fro' });
    expect(err.message).toContain('rules.yaml:7:5 rules[0].fro: unknown key (did you mean "for"? expected one of id, name, kind');
  });

  it('bad duration', () => {
    const err = rulesError(lines('rules:', '  - id: cpu', '    expr: "m > 1"', '', '    keepFiringFor: 5 minutes'));
    expect(err.message).toBe('VIGIL_ERR_RULES_INVALID: rules.yaml:5:5 rules[0].keepFiringFor: "5 minutes" is not a duration (expected e.g. 30s, 5m, 1h30m)');
    expect(err.issues[0]?.value).toBe('5 minutes');
    const num = rulesError('rules: [{ id: a, kind: absent, metric: m, for: 300 }]');
    expect(num.message).toContain('rules[0].for: 300 is not a duration (expected e.g. 30s, 5m, 1h30m; write it with a unit, e.g. "300s")');
  });

  it('bad regex', () => {
    const err = rulesError(lines('rules:', '  - id: r', '    expr: "m > 1"', '    tags:', '      host: "/^web-[/"'));
    expect(err.issues[0]).toMatchObject({ line: 5, column: 7, path: 'rules[0].tags.host' });
    expect(err.message).toContain('"/^web-[/" is not a valid regular expression: Invalid regular expression');
    expect(rulesError('rules: [{ id: r, kind: threshold, metric: "/abc", op: ">", value: 1 }]').message).toContain('has no closing "/"');
    expect(rulesError('rules: [{ id: r, expr: "m > 1", tags: { a: "/x/g" } }]').message).toContain('regex flags "g" are not allowed');
  });

  it('duplicate id names the first use', () => {
    const err = rulesError(lines('rules:', '  - id: cpu', '    expr: "a > 1"', '  - id: cpu', '    expr: "b > 1"'));
    expect(err.message).toBe('VIGIL_ERR_RULES_INVALID: rules.yaml:4:5 rules[1].id: "cpu" is a duplicate (expected a unique id; first used by rules[0] at line 2)');
  });

  it('bad op, with the YAML quoting hint when ">" was read as a block scalar', () => {
    const err = rulesError(lines('rules:', '  - id: cpu', '    kind: threshold', '    metric: m', '    op: "=>"', '    value: 1'));
    expect(err.message).toBe('VIGIL_ERR_RULES_INVALID: rules.yaml:5:5 rules[0].op: "=>" is not allowed (expected one of ">", ">=", "<", "<=", "==", "!=")');
    const folded = rulesError(lines('rules:', '  - id: cpu', '    kind: threshold', '    metric: m', '    op: >', '    value: 1'));
    expect(folded.message).toContain('quote the operator in YAML, e.g. op: ">"');
  });

  it('several errors at once, in file order', () => {
    const err = rulesError(
      lines(
        'defaults:',
        '  severity: major', // 2
        'rules:',
        '  - id: Bad Id', // 4
        '    expr: "m > 1"',
        '  - id: rate-no-window', // 6
        '    kind: rate',
        '    metric: m',
        '    op: ">"',
        '    value: 1',
        '    of: max', // 11
        '  - id: anomaly', // 12
        '    kind: anomaly',
        '    metric: m',
        '    score: 1.5', // 15
        '    labels: { alertname: x, team: 7 }', // 16
        '  - id: absent', // 17
        '    kind: absent',
        '    metric: m',
        '    annotations:',
        '      summary: "{{ value | round 1 "', // 21
        '  - id: hyst', // 22
        '    expr: "cpu > 90"',
        '    resolveValue: 95', // 24
      ),
    );
    expect(err.issues.map((i) => `${i.line}:${i.column} ${i.path}`)).toEqual([
      '2:3 defaults.severity',
      '4:5 rules[0].id',
      '6:5 rules[1].window',
      '11:5 rules[1].of',
      '15:5 rules[2].score',
      '16:15 rules[2].labels.alertname',
      '16:29 rules[2].labels.team',
      '17:5 rules[3].for',
      '21:7 rules[3].annotations.summary',
      '24:5 rules[4].resolveValue',
    ]);
    const text = err.message;
    expect(text).toContain('rules.yaml: 10 problems');
    expect(text).toContain('rules.yaml:2:3 defaults.severity: "major" is not allowed (expected one of "info", "warning", "critical")');
    expect(text).toContain('rules.yaml:4:5 rules[0].id: "Bad Id" is not allowed (expected lowercase letters, digits, "_", "." and "-", e.g. "cpu-high")');
    expect(text).toContain('rules.yaml:6:5 rules[1].window: required for rate rules (expected a duration, e.g. 5m)');
    expect(text).toContain('rules.yaml:11:5 rules[1].of: is not used by rate rules (rate rules use `aggregate`)');
    expect(text).toContain('rules.yaml:15:5 rules[2].score: 1.5 is out of range (expected a number <= 1)');
    expect(text).toContain('rules[2].labels.alertname: label "alertname" is set from the rule `name`');
    expect(text).toContain('rules[2].labels.team: 7 has the wrong type (expected a string; quote it: "7")');
    expect(text).toContain('rules.yaml:17:5 rules[3].for: required for absent rules (expected a duration, e.g. 10m)');
    expect(text).toContain('rules.yaml:21:7 rules[3].annotations.summary: template error at character 1: unclosed "{{" (expected "}}")');
    expect(text).toContain('rules.yaml:24:5 rules[4].resolveValue: 95 is on the firing side of 90 (expected a level <= 90 for op ">")');
  });

  it('caps the message at 20 problems but keeps them all', () => {
    const text = 'rules:\n' + Array.from({ length: 25 }, (_, i) => `  - { id: r${i}, expr: "m > 1", bogus: 1 }`).join('\n');
    const err = rulesError(text);
    expect(err.issues).toHaveLength(25);
    expect(err.message).toContain('... and 5 more');
    expect(err.message.split('\n')).toHaveLength(22);
  });

  it('missing rules list, missing kind, YAML syntax and unreadable files', () => {
    expect(rulesError('defaults: {}\n').message).toContain('rules.yaml:1:1 rules: required key is missing');
    expect(rulesError('').message).toContain('expected a mapping with a `rules:` list');
    expect(rulesError('rules: [{ id: a, metric: m }]').message).toContain('rules[0].kind: required key is missing (expected threshold, rate, anomaly, absent or forecast, or an expr)');
    const syntax = rulesError('rules:\n  - id: a\n    expr: "m > 1\n');
    expect(syntax.code).toBe('VIGIL_ERR_RULES_FILE');
    expect(syntax.issues[0]?.line).toBeGreaterThan(1);
    const dup = rulesError('rules: []\nrules: []\n');
    expect(dup.code).toBe('VIGIL_ERR_RULES_FILE');
    expect(dup.message).toContain('rules.yaml:2:1');
    const dir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
    expect(() => loadRules(join(dir, 'missing.yaml'))).toThrow(/VIGIL_ERR_RULES_FILE: cannot read .*missing\.yaml/);
    writeFileSync(join(dir, 'ok.yml'), 'rules: [{ id: a, expr: "m > 1" }]');
    expect(loadRules(join(dir, 'ok.yml')).rules).toHaveLength(1);
  });

  it('a misspelt kind is reported once, with a suggestion', () => {
    const err = rulesError(lines('rules:', '  - id: a', '    kind: thresold', '    metric: m', '    op: ">"', '    value: 1', '    window: 5m'));
    expect(err.issues).toHaveLength(1);
    expect(err.message).toContain('rules.yaml:3:5 rules[0].kind: "thresold" is not allowed (did you mean "threshold"? expected one of "threshold", "rate", "anomaly", "absent", "forecast")');
  });

  it('unknown template variables are caught when the file loads', () => {
    const err = rulesError('rules: [{ id: a, expr: "m > 1", annotations: { summary: "{{ vlaue }}" } }]');
    expect(err.message).toContain('rules[0].annotations.summary: template error at character 1: unknown variable "vlaue"');
  });
});

describe('workers/alerts/README.md', () => {
  const readme = readFileSync(README, 'utf8');

  it('documents every rule key, default key and template variable', () => {
    for (const key of RULE_KEYS) expect(readme, key).toContain(`| \`${key}\` |`);
    for (const key of DEFAULT_KEYS) expect(readme, key).toContain(`\`${key}\``);
    for (const name of TEMPLATE_VARIABLES) expect(readme, name).toMatch(new RegExp(`\\| [^|\\n]*\`${name}\``));
  });

  it('opens with an example that loads', () => {
    const example = /```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toBeDefined();
    expect(parseRules(example ?? '', 'README.md').rules.map((r) => r.kind)).toEqual(['threshold', 'rate', 'anomaly', 'absent', 'forecast']);
  });
});

describe('file formats and parse errors', () => {
  const TRAILING_COMMA = '{"rules": [],}';

  it('JSON by extension, any case, or by a first "{" or "[" when the extension is not YAML', () => {
    // A trailing comma is valid YAML flow but not JSON: which parser ran shows.
    expect(parseRules(TRAILING_COMMA, 'rules.yaml').rules).toEqual([]);
    expect(parseRules(TRAILING_COMMA, 'rules.YML').rules).toEqual([]);
    expect(parseRules(TRAILING_COMMA, 'rules.json.yaml').rules).toEqual([]);
    for (const file of ['rules.json', 'rules.JSON', 'rules', 'rules.txt', 'rules.yaml.txt']) {
      const err = rulesError(TRAILING_COMMA, file);
      expect(err.code, file).toBe('VIGIL_ERR_RULES_FILE');
      expect(err.message, file).toBe(`VIGIL_ERR_RULES_FILE: ${file}:1:14 cannot parse as JSON: Expected double-quoted property name in JSON at position 13`);
      expect(err.cause, file).toBeInstanceOf(SyntaxError);
    }
    expect(rulesError(`\n\t ${TRAILING_COMMA}`, 'rules').code).toBe('VIGIL_ERR_RULES_FILE');
    expect(rulesError('[1,]', 'rules').code).toBe('VIGIL_ERR_RULES_FILE');
    // The BOM counts in the file's positions (JSON.parse counted from after it: one column short).
    expect(rulesError(`\uFEFF${TRAILING_COMMA}`, 'rules').message).toBe('VIGIL_ERR_RULES_FILE: rules:1:15 cannot parse as JSON: Expected double-quoted property name in JSON at position 13');
    expect(parseRules('\uFEFF{"rules": []}', 'rules.json').rules).toEqual([]);
  });

  it('a JSON error is placed at the position the parser names', () => {
    const err = rulesError('{\n  "rules": [1 2]\n}', 'r.json');
    expect(err.issues).toEqual([{ file: 'r.json', line: 2, column: 15, path: '', message: "cannot parse as JSON: Expected ',' or ']' after array element in JSON at position 16" }]);
  });

  it('YAML syntax errors give the first line of the parser message and its position', () => {
    const err = rulesError('rules: [\n', 'r.yaml');
    expect(err.issues).toEqual([{ file: 'r.yaml', line: 2, column: 1, path: '', message: 'cannot parse: Flow sequence in block collection must be sufficiently indented and end with a ]' }]);
    expect(err.cause).toBeUndefined();
  });

  it('an unquoted ">=" gets the quoting hint', () => {
    const err = rulesError('rules:\n  - id: a\n    op: >=\n', 'r.yaml');
    expect(err.message).toBe('VIGIL_ERR_RULES_FILE: r.yaml:3:10 cannot parse: Block scalar header includes extra characters: >= (quote operators in YAML, e.g. op: ">=")');
  });

  it('too many aliases is a file error', () => {
    const bomb = 'a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nrules: []\n';
    const err = rulesError(bomb, 'r.yaml');
    expect(err.issues).toEqual([{ file: 'r.yaml', line: 1, column: 1, path: '', message: 'cannot parse: Excessive alias count indicates a resource exhaustion attack' }]);
    expect(err.code).toBe('VIGIL_ERR_RULES_FILE');
    expect((err.cause as Error).message).toBe('Excessive alias count indicates a resource exhaustion attack');
  });

  it('a document that is not a mapping', () => {
    for (const text of ['[]', 'true', '', '~']) {
      const err = rulesError(text, 'r.yaml');
      expect(err.code, text).toBe('VIGIL_ERR_RULES_INVALID');
      expect(err.issues.map((i) => i.message), text).toEqual(['expected a mapping with a `rules:` list at the top level']);
    }
  });

  it('loadRules reads the file, keeping its path and text', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
    const path = join(dir, 'r.yaml');
    const text = 'rules: [{ id: a, expr: "m > 1" }]\n';
    writeFileSync(path, text);
    const set = loadRules(path);
    expect(set).toMatchObject({ file: path, text, hash: parseRules(text, 'other').hash });
    expect(set.rules[0]?.source).toEqual({ file: path, line: 1 });
    const missing = join(dir, 'missing.yaml');
    let caught: unknown;
    try {
      loadRules(missing);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RulesError);
    expect(caught).toMatchObject({ code: 'VIGIL_ERR_RULES_FILE', file: missing, issues: [], message: `VIGIL_ERR_RULES_FILE: cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'` });
    expect((caught as Error).cause).toMatchObject({ code: 'ENOENT' });
  });

  it('the hash is the sha256 of the text', () => {
    expect(parseRules('rules: []\n', 'x.yaml').hash).toBe('e0dfa70eb69d47fe9cb2be8a4fcd53e74cf7fe26fcbb1f06912b57a9c028e4e0');
  });
});
