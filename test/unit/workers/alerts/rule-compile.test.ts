import { describe, expect, it } from 'vitest';
import { RulesError, parseRules, type CompiledRule } from '../../../../workers/alerts/rules.js';

const EXAMPLES = '(e.g. "system.cpu.usage_total > 90 for 5m" or "auth.failures > 10 in 5m")';

function rulesError(text: string): RulesError {
  try {
    parseRules(text, 'rules.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(RulesError);
    return err as RulesError;
  }
  throw new Error('expected a RulesError');
}

/** The rules of a file whose `rules:` list holds the given flow mappings, one per line. */
const file = (...rules: string[]) => `rules:\n${rules.map((r) => `  - ${r}\n`).join('')}`;

function compiled(ruleYaml: string, defaults = ''): CompiledRule {
  const [r] = parseRules((defaults ? `defaults: ${defaults}\n` : '') + file(ruleYaml), 'rules.yaml').rules;
  if (!r) throw new Error('no rule');
  return r;
}

/** Every issue of a one-rule file as "path: message". */
function problems(ruleYaml: string, defaults = ''): string[] {
  return rulesError((defaults ? `defaults: ${defaults}\n` : '') + file(ruleYaml)).issues.map((i) => `${i.path}: ${i.message}`);
}

const exprProblem = (expr: string) => problems(`{ id: e, expr: ${JSON.stringify(expr)} }`);

describe('expr: what it reads', () => {
  const exprRule = (expr: string) => compiled(`{ id: e, expr: ${JSON.stringify(expr)} }`);

  it('spaces are optional around the operator and allowed around the whole', () => {
    expect(exprRule('\t m>=1 ')).toMatchObject({ kind: 'threshold', metric: { kind: 'exact', text: 'm' }, op: '>=', threshold: 1 });
    expect(exprRule('m!=2')).toMatchObject({ op: '!=', threshold: 2 });
    expect(exprRule('m==2')).toMatchObject({ op: '==', threshold: 2 });
    expect(exprRule('m<2')).toMatchObject({ op: '<', threshold: 2 });
    expect(exprRule('m <=  2   for   1m')).toMatchObject({ op: '<=', threshold: 2, forMs: 60_000 });
  });

  it('numbers: sign, leading or trailing point, exponent', () => {
    expect(['+5', '.5', '.25', '5.', '1.25', '1E3', '-2e-1', '2.5e+1', '1.25e-1'].map((n) => exprRule(`m > ${n}`).threshold)).toEqual([5, 0.5, 0.25, 5, 1.25, 1000, -0.2, 25, 0.125]);
  });

  it('a regex metric may hold spaces, operators and escaped slashes, and takes flags', () => {
    const r = exprRule('/a b>\\/c/i > 1');
    expect(r.metric).toMatchObject({ kind: 'regex', text: '/a b>\\/c/i' });
    expect(r.metric.test('A B>/C')).toBe(true);
    expect(exprRule('/x/>1').threshold).toBe(1);
    expect(exprRule('/web(1|2)/ > 1').metric).toMatchObject({ kind: 'regex', text: '/web(1|2)/' });
  });

  it('a glob metric', () => {
    expect(exprRule('system.cpu.* > 1').metric).toMatchObject({ kind: 'glob', text: 'system.cpu.*' });
  });

  it('each function names the bucket field of a threshold rule, or the aggregate of a rate rule', () => {
    expect(['mean', 'max', 'min', 'last', 'sum', 'count'].map((f) => exprRule(`${f}(m ) > 1`).of)).toEqual(['mean', 'max', 'min', 'last', 'sum', 'count']);
    expect(['increase', 'sum', 'count', 'mean', 'max', 'rate'].map((f) => exprRule(`${f}(m) > 1 in 1m`).aggregate)).toEqual(['increase', 'sum', 'count', 'mean', 'max', 'rate']);
  });

  it('"in" and "for" in either order', () => {
    expect(exprRule('m > 1 for 2m in 1m')).toMatchObject({ kind: 'rate', windowMs: 60_000, forMs: 120_000 });
    expect(exprRule('m > 1 in 1m')).toMatchObject({ kind: 'rate', windowMs: 60_000, forMs: 0 });
  });
});

describe('expr: where it goes wrong', () => {
  it('quotes the expr, the problem, the character and examples', () => {
    expect(exprProblem('m')).toEqual([`rules[0].expr: "m": expected an operator (one of > >= < <= == !=) at character 2 ${EXAMPLES}`]);
  });

  it.each([
    ['> 1', 'expected a metric name at character 1'],
    ['  > 1', 'expected a metric name at character 3'],
    ['max(> 1', 'expected a metric name at character 5'],
    ['max(m > 1', 'expected ")" after max(m at character 7'],
    ['max(m', 'expected ")" after max(m at character 6'],
    ['avg(m) > 1', 'unknown function "avg" (expected one of mean, max, min, last, sum, count, increase, rate) at character 1'],
    [' avg(m) > 1', 'unknown function "avg" (expected one of mean, max, min, last, sum, count, increase, rate) at character 2'],
    ['Max(m) > 1', 'expected an operator (one of > >= < <= == !=), found "(" at character 4'],
    ['m 5', 'expected an operator (one of > >= < <= == !=), found "5" at character 3'],
    ['m = 5', 'use "==" for equality at character 3'],
    ['m 5 > 1', 'expected an operator (one of > >= < <= == !=), found "5" at character 3'],
    ['m{a="b"} > 1', 'tag matchers go in the `tags:` key, not in expr at character 2'],
    ['/ab > 1', 'regex has no closing "/" at character 1'],
    ['/x/', 'expected an operator (one of > >= < <= == !=) at character 4'],
    ['/ab\\', 'regex has no closing "/" at character 1'],
    ['m >', 'expected a number after ">" at character 4'],
    ['m > x', 'expected a number after ">" at character 5'],
    ['m > 5x', 'unexpected "x" after the number (write a bare number, e.g. 90) at character 6'],
    ['m > 1e999', '1e999 is not a finite number at character 5'],
    ['m > 1 for', 'expected a duration after "for" at character 10'],
    ['m > 1 in', 'expected a duration after "in" at character 9'],
    ['m > 1 in 5 m', '"5" is not a duration (expected e.g. 30s, 5m, 1h30m) at character 10'],
    ['m > 1 in 5m in 1m', '"in" given twice at character 13'],
    ['m > 1 for 5m in 1m for 1m', '"for" given twice at character 20'],
    ['m > 1 when 5m', 'unexpected "when" (expected "in <window>" or "for <duration>") at character 7'],
  ])('%s: %s', (expr, message) => {
    expect(exprProblem(expr)).toEqual([`rules[0].expr: ${JSON.stringify(expr)}: ${message} ${EXAMPLES}`]);
  });

  it('a regex that does not compile is reported on the expr', () => {
    expect(exprProblem('/(/ > 1')).toEqual(['rules[0].expr: "/(/" is not a valid regular expression: Invalid regular expression: /(/: Unterminated group']);
  });

  it('a function that does not fit the kind', () => {
    expect(exprProblem('increase(m) > 1')).toEqual([
      'rules[0].expr: "increase(m) > 1": increase(...) is not a threshold of (expected one of mean, max, min, last, sum, count; add "in <window>" for a rate rule)',
    ]);
    expect(exprProblem('last(m) > 1 in 5m')).toEqual(['rules[0].expr: "last(m) > 1 in 5m": last(...) is not a rate aggregate (expected one of increase, sum, count, mean, max, rate)']);
    expect(exprProblem('min(m) > 1 in 5m')).toEqual(['rules[0].expr: "min(m) > 1 in 5m": min(...) is not a rate aggregate (expected one of increase, sum, count, mean, max, rate)']);
  });

  it('a zero window', () => {
    expect(exprProblem('m > 1 in 0s')).toEqual(['rules[0].expr: "m > 1 in 0s": the window is too short (expected a window longer than 0s)']);
  });
});

describe('expr beside other keys', () => {
  it('each key it stands for is reported', () => {
    expect(problems('{ id: e, expr: "m > 1 in 1m", metric: m, op: ">", value: 1, for: 1m, window: 1m }')).toEqual(
      ['metric', 'op', 'value', 'for', 'window'].map((k) => `rules[0].${k}: cannot be combined with expr, which already sets it (expected one or the other)`),
    );
  });

  it('the field its function names', () => {
    expect(problems('{ id: e, expr: "max(m) > 1", of: min }')).toEqual(['rules[0].of: cannot be combined with max(...) in expr (expected one or the other)']);
    expect(problems('{ id: e, expr: "sum(m) > 1 in 1m", aggregate: sum }')).toEqual(['rules[0].aggregate: cannot be combined with sum(...) in expr (expected one or the other)']);
  });

  it('without a function, `of` or `aggregate` may sit beside it', () => {
    expect(compiled('{ id: e, expr: "m > 1", of: last }').of).toBe('last');
    expect(compiled('{ id: e, expr: "m > 1 in 1m", aggregate: max }').aggregate).toBe('max');
  });

  it('a kind that agrees is accepted; one that does not is reported once', () => {
    expect(compiled('{ id: e, kind: threshold, expr: "m > 1" }').kind).toBe('threshold');
    expect(compiled('{ id: e, kind: rate, expr: "m > 1 in 1m" }').kind).toBe('rate');
    expect(problems('{ id: e, kind: rate, expr: "m > 1" }')).toEqual(['rules[0].kind: "rate" does not match expr (expr without "in <window>" is a threshold rule)']);
    expect(problems('{ id: e, kind: anomaly, expr: "m > 1" }')).toEqual(['rules[0].kind: "anomaly" does not match expr (anomaly rules cannot use expr)']);
    expect(problems('{ id: e, kind: absent, expr: "m > 1 in 1m" }')).toEqual(['rules[0].kind: "absent" does not match expr (absent rules cannot use expr)']);
  });

  it('an expr that does not parse is the only problem of its rule, with or without a kind', () => {
    expect(problems('{ id: e, expr: "m >" }')).toHaveLength(1);
    expect(problems('{ id: e, kind: threshold, expr: "m >" }')).toHaveLength(1);
    expect(problems('{ id: e, kind: rate, expr: "m >" }')).toHaveLength(1);
  });
});

describe('kinds and their keys', () => {
  it('a rule without kind or expr', () => {
    const err = rulesError(file('{ id: a, metric: m }'));
    expect(err.issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`)).toEqual(['2:5 rules[0].kind: required key is missing (expected threshold, rate, anomaly, absent or forecast, or an expr)']);
    expect(problems('{ id: a, kind: 5, metric: m }')).toEqual(['rules[0].kind: 5 has the wrong type (expected a string; quote it: "5")']);
  });

  it('keys another kind uses are reported with what this kind uses', () => {
    expect(problems('{ id: a, expr: "m > 1", aggregate: sum }')).toEqual(['rules[0].aggregate: is not used by threshold rules (threshold rules use `of`)']);
    expect(problems('{ id: a, expr: "m > 1", buckets: 2 }')).toEqual(['rules[0].buckets: is not used by threshold rules (threshold rules use expr, op, value, of, for, resolveValue)']);
    expect(problems('{ id: a, expr: "m > 1 in 1m", score: 0.5 }')).toEqual(['rules[0].score: is not used by rate rules (rate rules use expr, op, value, aggregate, window, for, resolveValue)']);
    expect(problems('{ id: a, kind: anomaly, metric: m, score: 0.5, window: 1m }')).toEqual(['rules[0].window: is not used by anomaly rules (anomaly rules use score, sensitivity, buckets, resolveValue)']);
    expect(problems('{ id: a, kind: anomaly, metric: m, score: 0.5, aggregate: sum }')).toEqual(['rules[0].aggregate: is not used by anomaly rules (anomaly rules use score, sensitivity, buckets, resolveValue)']);
    expect(problems('{ id: a, kind: absent, metric: m, for: 1m, of: max }')).toEqual(['rules[0].of: is not used by absent rules (absent rules use for)']);
    expect(problems('{ id: a, kind: absent, metric: m, for: 1m, op: ">", resolveValue: 1 }')).toEqual([
      'rules[0].op: is not used by absent rules (absent rules use for)',
      'rules[0].resolveValue: is not used by absent rules (absent rules use for)',
    ]);
  });

  it('forecast: op, value and within required, for optional; no expr, window or score', () => {
    const ok = parseRules(file('{ id: a, kind: forecast, metric: disk, op: ">", value: 95, within: 4h, for: 10m }'), 'x.yaml').rules[0];
    expect(ok).toMatchObject({ kind: 'forecast', op: '>', threshold: 95, withinMs: 4 * 3_600_000, forMs: 600_000, windowMs: 0 });
    expect(problems('{ id: a, kind: forecast, metric: disk }')).toEqual([
      'rules[0].op: required for forecast rules (expected one of > >= < <= == !=)',
      'rules[0].value: required for forecast rules (expected a number)',
      'rules[0].within: required for forecast rules (expected a duration, e.g. 4h)',
    ]);
    expect(problems('{ id: a, kind: forecast, metric: disk, op: ">", value: 1, within: 0s }')).toEqual(['rules[0].within: "0s" is too short (expected a duration longer than 0s)']);
    expect(problems('{ id: a, kind: forecast, metric: disk, op: ">", value: 1, within: 1h, window: 5m }')).toEqual(['rules[0].window: is not used by forecast rules (forecast rules use op, value, within, for)']);
    expect(problems('{ id: a, kind: forecast, expr: "disk > 1" }')).toEqual(['rules[0].kind: "forecast" does not match expr (forecast rules cannot use expr)']);
    expect(problems('{ id: a, kind: threshold, expr: "m > 1", within: 1h }')).toEqual(['rules[0].within: is not used by threshold rules (threshold rules use expr, op, value, of, for, resolveValue)']);
  });

  it('what threshold and rate rules require, placed at the rule', () => {
    const err = rulesError(file('{ id: a, kind: rate }'));
    expect(err.issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`)).toEqual([
      '2:5 rules[0].metric: required for rate rules (expected a metric name, glob or /regex/)',
      '2:5 rules[0].op: required for rate rules (expected one of > >= < <= == !=)',
      '2:5 rules[0].value: required for rate rules (expected a number)',
      '2:5 rules[0].window: required for rate rules (expected a duration, e.g. 5m)',
    ]);
    expect(problems('{ id: a, kind: threshold, metric: m }')).toEqual([
      'rules[0].op: required for threshold rules (expected one of > >= < <= == !=)',
      'rules[0].value: required for threshold rules (expected a number)',
    ]);
  });

  it('a missing op is taken as ">" when checking resolveValue', () => {
    expect(problems('{ id: a, kind: threshold, metric: m, value: 90, resolveValue: 95 }')).toEqual([
      'rules[0].op: required for threshold rules (expected one of > >= < <= == !=)',
      'rules[0].resolveValue: 95 is on the firing side of 90 (expected a level <= 90 for op ">")',
    ]);
  });

  it('threshold in long form', () => {
    const r = compiled('{ id: cpu, kind: threshold, metric: cpu, op: "<", value: 5, of: min, for: 90s }');
    expect(r).toMatchObject({ kind: 'threshold', op: '<', threshold: 5, of: 'min', aggregate: 'increase', forMs: 90_000, windowMs: 0, buckets: 1 });
    expect(compiled('{ id: cpu, kind: threshold, metric: cpu, op: "<", value: 5 }')).toMatchObject({ of: 'mean', forMs: 0 });
  });

  it('rate in long form', () => {
    expect(compiled('{ id: r, kind: rate, metric: m, op: ">", value: 3, window: 2m, for: 1m, aggregate: mean }')).toMatchObject({
      kind: 'rate', op: '>', threshold: 3, of: 'mean', aggregate: 'mean', windowMs: 120_000, forMs: 60_000, buckets: 1,
    });
    expect(compiled('{ id: r, kind: rate, metric: m, op: ">", value: 3, window: 2m }').aggregate).toBe('increase');
    expect(problems('{ id: r, kind: rate, metric: m, op: ">", value: 3, window: 0s }')).toEqual(['rules[0].window: "0s": the window is too short (expected a window longer than 0s)']);
    expect(problems('{ id: r, kind: rate, metric: m, op: ">", value: 3, window: "0" }')).toEqual(['rules[0].window: "0": the window is too short (expected a window longer than 0s)']);
  });

  it('anomaly: score or sensitivity, one of them', () => {
    expect(compiled('{ id: a, kind: anomaly, metric: m, score: 0.9, buckets: 3 }')).toMatchObject({ op: '>=', threshold: 0.9, buckets: 3, forMs: 0, windowMs: 0, of: 'mean', aggregate: 'increase' });
    expect(compiled('{ id: a, kind: anomaly, metric: m, sensitivity: 0.1 }').threshold).toBeCloseTo(0.9, 12);
    expect(problems('{ id: a, kind: anomaly, metric: m, score: 0.9, sensitivity: 0.1 }')).toEqual(['rules[0].sensitivity: cannot be combined with score (expected one or the other)']);
    expect(rulesError(file('{ id: a, kind: anomaly, metric: m, score: 0.9, sensitivity: 0.1 }')).issues[0]?.value).toBe(0.1);
    const err = rulesError(file('{ id: a, kind: anomaly, metric: m }'));
    expect(err.issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`)).toEqual(['2:5 rules[0].score: required for anomaly rules (expected a level in (0, 1], or `sensitivity`)']);
  });

  it('absent: for is required and longer than zero', () => {
    expect(compiled('{ id: a, kind: absent, metric: m, for: 2m }')).toMatchObject({ op: '==', of: 'count', threshold: 0, forMs: 120_000, windowMs: 0, buckets: 1, resolveThreshold: null });
    expect(problems('{ id: a, kind: absent, metric: m, for: 0s }')).toEqual(['rules[0].for: "0s" is too short (expected a duration longer than 0s)']);
    expect(problems('{ id: a, kind: absent, metric: m, for: "0" }')).toEqual(['rules[0].for: "0" is too short (expected a duration longer than 0s)']);
    expect(problems('{ id: a, kind: absent, metric: m, for: soon }')).toEqual(['rules[0].for: "soon" is not a duration (expected e.g. 30s, 5m, 1h30m)']);
    expect(problems('{ id: a, kind: absent, metric: m }')).toEqual(['rules[0].for: required for absent rules (expected a duration, e.g. 10m)']);
  });
});

describe('matchers', () => {
  it('a metric cannot be negated; a bad regex is reported on its key', () => {
    expect(problems('{ id: a, kind: absent, metric: "!m", for: 1m }')).toEqual(['rules[0].metric: "!m": a metric cannot be negated (expected a name, glob or /regex/)']);
    expect(problems('{ id: a, kind: absent, metric: "/m/g", for: 1m }')).toEqual(['rules[0].metric: "/m/g" regex flags "g" are not allowed (expected some of i, m, s, u)']);
    expect(problems('{ id: a, expr: "m > 1", tags: { host: "!/(/" } }')).toEqual(['rules[0].tags.host: "!/(/" is not a valid regular expression: Invalid regular expression: /(/: Unterminated group']);
  });

  it('tags compile in file order, "!" negating', () => {
    const r = compiled('{ id: a, expr: "m > 1", tags: { env: "!staging", host: "web-*" } }');
    expect(r.tags.map((t) => [t.key, t.match.kind, t.match.text, t.match.negate])).toEqual([
      ['env', 'exact', 'staging', true],
      ['host', 'glob', 'web-*', false],
    ]);
    expect(Object.isFrozen(r.tags)).toBe(true);
    expect(Object.isFrozen(r.tags[0])).toBe(true);
  });
});

describe('hysteresis', () => {
  it('resolveValue on the non-firing side, or equal, is accepted', () => {
    expect(compiled('{ id: a, expr: "m >= 90", resolveValue: 90 }').resolveThreshold).toBe(90);
    expect(compiled('{ id: a, expr: "m < 10", resolveValue: 12 }').resolveThreshold).toBe(12);
    expect(compiled('{ id: a, expr: "m <= 10", resolveValue: 10 }').resolveThreshold).toBe(10);
    expect(compiled('{ id: a, kind: anomaly, metric: m, score: 0.8, resolveValue: 0.6 }').resolveThreshold).toBe(0.6);
    expect(compiled('{ id: a, expr: "m < 10" }').resolveThreshold).toBeNull();
  });

  it('on the firing side, or with == and !=, it is reported', () => {
    expect(problems('{ id: a, expr: "m < 10", resolveValue: 5 }')).toEqual(['rules[0].resolveValue: 5 is on the firing side of 10 (expected a level >= 10 for op "<")']);
    expect(problems('{ id: a, expr: "m >= 10", resolveValue: 11 }')).toEqual(['rules[0].resolveValue: 11 is on the firing side of 10 (expected a level <= 10 for op ">=")']);
    expect(problems('{ id: a, kind: anomaly, metric: m, score: 0.8, resolveValue: 0.9 }')).toEqual(['rules[0].resolveValue: 0.9 is on the firing side of 0.8 (expected a level <= 0.8 for op ">=")']);
    expect(problems('{ id: a, expr: "m == 1", resolveValue: 0 }')).toEqual(['rules[0].resolveValue: cannot be used with op "==" (expected one of > >= < <=)']);
    expect(problems('{ id: a, expr: "m != 1", resolveValue: 0 }')).toEqual(['rules[0].resolveValue: cannot be used with op "!=" (expected one of > >= < <=)']);
  });
});

describe('defaults, labels, annotations and lifecycle', () => {
  it('a rule with every key compiles to exactly these values', () => {
    const r = compiled(
      '{ id: cpu, name: HighCpu, expr: "cpu > 90 for 5m", tags: { host: "web-1" }, tenant: acme, severity: critical, labels: { team: db }, annotations: { s: "{{ value }}" }, keepFiringFor: 1m, repeatInterval: 2h, rateLimit: { max: 3, per: 10m }, resolveValue: 80 }',
      '{ severity: info, labels: { env: prod, team: infra }, annotations: { runbook: "r/{{ rule.id }}" }, keepFiringFor: 30s, repeatInterval: 1h, rateLimit: { max: 9, per: 1m } }',
    );
    expect({ ...r, metric: r.metric.text, tags: r.tags.map((t) => t.key), annotations: Object.keys(r.annotations) }).toEqual({
      id: 'cpu',
      tenant: 'acme',
      name: 'HighCpu',
      kind: 'threshold',
      severity: 'critical',
      metric: 'cpu',
      tags: ['host'],
      op: '>',
      threshold: 90,
      of: 'mean',
      aggregate: 'increase',
      forMs: 300_000,
      windowMs: 0,
      buckets: 1,
      withinMs: 0,
      keepFiringForMs: 60_000,
      resolveThreshold: 80,
      repeatIntervalMs: 7_200_000,
      rateLimit: { max: 3, perMs: 600_000 },
      labels: { env: 'prod', team: 'db' },
      annotations: ['runbook', 's'],
      source: { file: 'rules.yaml', line: 3 },
    });
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.labels)).toBe(true);
    expect(Object.isFrozen(r.annotations)).toBe(true);
    expect(Object.isFrozen(r.rateLimit)).toBe(true);
    expect(Object.isFrozen(r.source)).toBe(true);
  });

  it('a rule without its own values takes the defaults', () => {
    const r = compiled('{ id: cpu, expr: "cpu > 90" }', '{ severity: info, labels: { env: prod }, keepFiringFor: 30s, repeatInterval: 1h, rateLimit: { max: 9, per: 1m } }');
    expect(r).toMatchObject({ name: 'cpu', severity: 'info', keepFiringForMs: 30_000, repeatIntervalMs: 3_600_000, rateLimit: { max: 9, perMs: 60_000 }, labels: { env: 'prod' } });
    expect(compiled('{ id: cpu, expr: "cpu > 90" }', '{}')).toMatchObject({ severity: 'warning', keepFiringForMs: 0, repeatIntervalMs: 14_400_000, rateLimit: null, labels: {} });
  });

  it('a rule annotation replaces the default of the same name', () => {
    const r = compiled('{ id: cpu, expr: "cpu > 90", annotations: { summary: "mine" } }', '{ annotations: { summary: "default", other: "x" } }');
    expect(Object.fromEntries(Object.entries(r.annotations).map(([k, t]) => [k, t.source]))).toEqual({ summary: 'mine', other: 'x' });
  });

  it('reserved label names, in the rule and in the defaults', () => {
    expect(problems('{ id: a, expr: "m > 1", labels: { severity: high } }')).toEqual(['rules[0].labels.severity: label "severity" is set from the rule `severity` (expected another label name)']);
    expect(problems('{ id: a, expr: "m > 1" }', '{ labels: { alertname: x } }')).toEqual(['defaults.labels.alertname: label "alertname" is set from the rule `name` (expected another label name)']);
  });

  it('template errors name the annotation and the character, in the rule and in the defaults', () => {
    expect(problems('{ id: a, expr: "m > 1", annotations: { s: "ab {{ x }}" } }')).toEqual([
      'rules[0].annotations.s: template error at character 4: unknown variable "x" (expected one of value, threshold, score, metric, tags, labels, rule, severity, for, window, buckets, status, startsAt, observedAt, fingerprint, explanation)',
    ]);
    expect(problems('{ id: a, expr: "m > 1" }', '{ annotations: { s: "{{ value | nope }}" } }')).toEqual([
      'defaults.annotations.s: template error at character 12: unknown filter "nope" (expected one of round, upper, lower, default)',
    ]);
  });

  it('an annotation that is not text is reported by the schema alone', () => {
    expect(problems('{ id: a, expr: "m > 1", annotations: { s: ~, t: 5 } }')).toEqual([
      'rules[0].annotations.s: null has the wrong type (expected a string)',
      'rules[0].annotations.t: 5 has the wrong type (expected a string; quote it: "5")',
    ]);
  });

  it('a zero rate limit window, in the rule and in the defaults', () => {
    expect(problems('{ id: a, expr: "m > 1", rateLimit: { max: 1, per: 0s } }')).toEqual(['rules[0].rateLimit.per: "0s" is too short (expected a window longer than 0s)']);
    expect(rulesError(file('{ id: a, expr: "m > 1", rateLimit: { max: 1, per: 0s } }')).issues[0]?.value).toBe('0s');
    expect(problems('{ id: a, expr: "m > 1" }', '{ rateLimit: { max: 1, per: "0" } }')).toEqual(['defaults.rateLimit.per: "0" is too short (expected a window longer than 0s)']);
  });
});

describe('the rule list', () => {
  it('every repeat of an id names the first use', () => {
    const err = rulesError(file('{ id: a, expr: "m > 1" }', '{ id: a, expr: "m > 2" }', '{ id: a, expr: "m > 3" }'));
    expect(err.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'rules[1].id: "a" is a duplicate (expected a unique id; first used by rules[0] at line 2)',
      'rules[2].id: "a" is a duplicate (expected a unique id; first used by rules[0] at line 2)',
    ]);
  });

  it('the first use is named by the line of its id, not of its list item', () => {
    const err = rulesError('rules:\n  - expr: "m > 1"\n    id: a\n  - { id: a, expr: "m > 2" }\n');
    expect(err.issues.map((i) => i.message)).toEqual(['"a" is a duplicate (expected a unique id; first used by rules[0] at line 3)']);
  });

  it('enabled: true and false; an item that is not a mapping is reported by the schema alone', () => {
    expect(parseRules(file('{ id: a, expr: "m > 1", enabled: true }', '{ id: b, expr: "m > 1", enabled: false }'), 'r.yaml').rules.map((r) => r.id)).toEqual(['a']);
    expect(rulesError(file('5', '{ id: b, expr: "m > 1" }')).issues.map((i) => `${i.path}: ${i.message}`)).toEqual(['rules[0]: 5 has the wrong type (expected a mapping)']);
    expect(rulesError(file('~', '{ id: b, expr: "m > 1" }')).issues.map((i) => `${i.path}: ${i.message}`)).toEqual(['rules[0]: null has the wrong type (expected a mapping)']);
  });

  it('exact metrics are indexed; globs and regexes are listed in file order', () => {
    const set = parseRules(file('{ id: a, expr: "m > 1" }', '{ id: b, expr: "/x/ > 1" }', '{ id: c, expr: "m > 2" }', '{ id: d, expr: "y* > 1" }', '{ id: e, expr: "n > 1" }'), 'r.yaml');
    expect([...set.byExactMetric].map(([k, rules]) => [k, rules.map((r) => r.id)])).toEqual([
      ['m', ['a', 'c']],
      ['n', ['e']],
    ]);
    expect(set.patterned.map((r) => r.id)).toEqual(['b', 'd']);
    expect(set).toMatchObject({ file: 'r.yaml', text: file('{ id: a, expr: "m > 1" }', '{ id: b, expr: "/x/ > 1" }', '{ id: c, expr: "m > 2" }', '{ id: d, expr: "y* > 1" }', '{ id: e, expr: "n > 1" }') });
  });
});
