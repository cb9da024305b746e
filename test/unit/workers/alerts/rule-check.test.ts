import { describe, expect, it } from 'vitest';
import { RulesError, formatIssue, show, type RuleIssue } from '../../../../workers/alerts/rule-check.js';
import { rulesError } from './rules-error.js';


/** Each issue as "line:column path: message". */
const listed = (err: RulesError) => err.issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`);

const lines = (...l: string[]) => l.join('\n') + '\n';

const issue = (n: number): RuleIssue => ({ file: 'f.yaml', line: n, column: 3, path: `rules[${n}].id`, message: `problem ${n}` });

describe('formatIssue', () => {
  it('file:line:column, the path when there is one, then the message', () => {
    expect(formatIssue({ file: 'f.yaml', line: 4, column: 7, path: 'rules[0].for', message: 'bad' })).toBe('f.yaml:4:7 rules[0].for: bad');
    expect(formatIssue({ file: 'f.yaml', line: 1, column: 1, path: '', message: 'cannot parse' })).toBe('f.yaml:1:1 cannot parse');
  });
});

describe('RulesError', () => {
  it('one issue is the whole message', () => {
    const err = new RulesError('VIGIL_ERR_RULES_INVALID', 'f.yaml', [issue(1)]);
    expect(err.message).toBe('VIGIL_ERR_RULES_INVALID: f.yaml:1:3 rules[1].id: problem 1');
    expect(err).toMatchObject({ name: 'RulesError', code: 'VIGIL_ERR_RULES_INVALID', file: 'f.yaml', retryable: false });
    expect(err.issues).toEqual([issue(1)]);
    expect(err.cause).toBeUndefined();
    expect(Object.hasOwn(err, 'cause')).toBe(false);
  });

  it('several issues are counted and listed one per line', () => {
    const err = new RulesError('VIGIL_ERR_RULES_INVALID', 'f.yaml', [issue(1), issue(2)]);
    expect(err.message).toBe('VIGIL_ERR_RULES_INVALID: f.yaml: 2 problems\n  f.yaml:1:3 rules[1].id: problem 1\n  f.yaml:2:3 rules[2].id: problem 2');
  });

  it('lists 20 issues in full and says how many more there are', () => {
    const twenty = new RulesError('VIGIL_ERR_RULES_INVALID', 'f.yaml', Array.from({ length: 20 }, (_, i) => issue(i + 1)));
    expect(twenty.message.split('\n')).toHaveLength(21);
    expect(twenty.message).not.toContain('more');
    const more = new RulesError('VIGIL_ERR_RULES_INVALID', 'f.yaml', Array.from({ length: 21 }, (_, i) => issue(i + 1)));
    const shown = more.message.split('\n');
    expect(shown).toHaveLength(22);
    expect(shown[0]).toBe('VIGIL_ERR_RULES_INVALID: f.yaml: 21 problems');
    expect(shown[20]).toBe('  f.yaml:20:3 rules[20].id: problem 20');
    expect(shown[21]).toBe('  ... and 1 more');
    expect(more.issues).toHaveLength(21);
  });

  it('an explicit message and cause replace the listing', () => {
    const cause = new Error('ENOENT');
    const err = new RulesError('VIGIL_ERR_RULES_FILE', 'f.yaml', [issue(1)], { cause, message: 'cannot read f.yaml' });
    expect(err.message).toBe('VIGIL_ERR_RULES_FILE: cannot read f.yaml');
    expect(err.cause).toBe(cause);
  });
});

describe('show', () => {
  it('JSON for a value, "nothing" for none', () => {
    expect(show(undefined)).toBe('nothing');
    expect(show(null)).toBe('null');
    expect(show('5m')).toBe('"5m"');
    expect(show(3)).toBe('3');
  });
});

describe('positions', () => {
  it('a problem at the top of the document is placed where its content starts', () => {
    expect(listed(rulesError('# rules\n42\n'))).toEqual(['2:1 : expected a mapping with a `rules:` list at the top level']);
    expect(listed(rulesError('# rules\n\ndefaults: {}\n'))).toEqual(['3:1 rules: required key is missing']);
    expect(listed(rulesError('- a\n'))).toEqual(['1:1 : expected a mapping with a `rules:` list at the top level']);
  });

  it('a missing key is placed at its parent, a list item at its first character', () => {
    const err = rulesError(lines('rules:', '  - id: a', '    kind: threshold', '    op: ">"', '    value: 1', '  -   id: b', '      expr: "m > 1"', '      rateLimit: { max: 1 }'));
    expect(listed(err)).toEqual([
      '2:5 rules[0].metric: required for threshold rules (expected a metric name, glob or /regex/)',
      '8:7 rules[1].rateLimit.per: required key is missing',
    ]);
  });

  it('a key reached through a YAML alias is placed where the anchor defines it', () => {
    const err = rulesError(lines('rules:', '  - id: a', '    expr: "m > 1"', '    labels: &l { team: 7 }', '  - id: b', '    expr: "m > 1"', '    labels: *l'));
    expect(err.issues.map((i) => `${i.line}:${i.column} ${i.path}`)).toEqual(['4:18 rules[0].labels.team', '4:18 rules[1].labels.team']);
  });

  it('issues are sorted by line, then column, whichever pass found them', () => {
    const err = rulesError(lines('rules:', '  - { id: a, expr: "m > 1", tags: { h: "/x" }, bogus: 1 }', '  - id: b', '    expr: "m > 1"', '    tags: { h: "/y" }', '  - { id: c, expr: "m > 1", bogus: 2 }'));
    expect(err.issues.map((i) => `${i.line}:${i.column} ${i.path}`)).toEqual([
      '2:37 rules[0].tags.h',
      '2:48 rules[0].bogus',
      '5:13 rules[1].tags.h',
      '6:29 rules[2].bogus',
    ]);
  });
});

describe('key paths', () => {
  it('keys that are not identifiers are quoted; JSON pointer escapes are undone', () => {
    const err = rulesError(lines('rules:', '  - id: a', '    expr: "m > 1"', '    tags: { "a/b": 7, "c~d": 8, "0": 9, "k8s.pod": 10, "_x1": 11 }'));
    expect(err.issues.map((i) => `${i.path} = ${String(i.value)}`)).toEqual([
      'rules[0].tags["a/b"] = 7',
      'rules[0].tags["c~d"] = 8',
      'rules[0].tags["0"] = 9',
      'rules[0].tags["k8s.pod"] = 10',
      'rules[0].tags._x1 = 11',
    ]);
    expect(err.issues[0]?.message).toBe('7 has the wrong type (expected a string; quote it: "7")');
  });

  it('list indexes of two digits', () => {
    const text = 'rules:\n' + Array.from({ length: 11 }, (_, i) => `  - { id: r${i}, expr: "m > 1"${i === 10 ? ', bogus: 1' : ''} }`).join('\n');
    expect(rulesError(text).issues.map((i) => i.path)).toEqual(['rules[10].bogus']);
  });

  it('an unknown top-level key that is not an identifier', () => {
    expect(listed(rulesError('rules: []\nmy-rules: []\n'))).toEqual(['2:1 ["my-rules"]: unknown key (expected one of defaults, rules)']);
  });
});

describe('one problem per key', () => {
  it('a path already reported, or inside one, is not reported again; a sibling with a longer name is', () => {
    const err = rulesError(lines('defaults:', '  labels: { team: 7, team2: 8 }', 'rules:', '  - id: a', '    kind: rate', '    metric: m', '    op: ">"', '    value: 1', '    window: 0s'));
    expect(err.issues.map((i) => i.path)).toEqual(['defaults.labels.team', 'defaults.labels.team2', 'rules[0].window']);
  });

  it('an issue without a value has no value key', () => {
    const [unknown] = rulesError('rules: [{ id: a, expr: "m > 1", bogus: 0 }]').issues;
    expect(unknown).toStrictEqual({ file: 'rules.yaml', line: 1, column: 33, path: 'rules[0].bogus', message: 'unknown key (expected one of id, name, kind, enabled, expr, metric, tags, tenant, op, value, of, aggregate, for, window, within, score, sensitivity, buckets, severity, labels, annotations, keepFiringFor, resolveValue, repeatInterval, rateLimit)' });
  });
});

describe('schema problems, as messages', () => {
  const messageOf = (ruleYaml: string) => {
    const err = rulesError(`rules:\n  - ${ruleYaml}\n`);
    expect(err.issues).toHaveLength(1);
    return `${err.issues[0]?.path}: ${err.issues[0]?.message}`;
  };

  it('unknown keys: a suggestion within two edits, the first of equally close ones, case-insensitive', () => {
    expect(messageOf('{ id: a, expr: "m > 1", fro: 5m }')).toMatch(/^rules\[0\]\.fro: unknown key \(did you mean "for"\? expected one of id, /);
    expect(messageOf('{ id: a, expr: "m > 1", Labels: {} }')).toMatch(/did you mean "labels"\?/);
    expect(messageOf('{ id: a, expr: "m > 1", ip: x }')).toMatch(/did you mean "id"\?/);
    expect(messageOf('{ id: a, expr: "m > 1", abcd: 1 }')).toMatch(/^rules\[0\]\.abcd: unknown key \(expected one of id, /);
    expect(messageOf('{ id: a, expr: "m > 1", foxyz: 1 }')).toMatch(/^rules\[0\]\.foxyz: unknown key \(expected one of id, /);
    expect(messageOf('{ id: a, expr: "m > 1", sevrity: info }')).toMatch(/did you mean "severity"\?/);
    expect(messageOf('{ id: a, expr: "m > 1", repeatInterva: 1m }')).toMatch(/did you mean "repeatInterval"\?/);
    expect(messageOf('{ id: a, expr: "m > 1", rateLimit: { max: 1, per: 1m, pre: 1 } }')).toBe('rules[0].rateLimit.pre: unknown key (did you mean "per"? expected one of max, per)');
  });

  it('label and tag names', () => {
    expect(messageOf('{ id: a, expr: "m > 1", labels: { 1team: x } }')).toBe('rules[0].labels["1team"]: name "1team" is not allowed (expected letters, digits and "_", not starting with a digit)');
    expect(messageOf('{ id: a, expr: "m > 1", tags: { "": x } }')).toBe('rules[0].tags[""]: name "" is not allowed (expected a non-empty name)');
  });

  it('types, with a quoting hint for numbers and booleans where text is expected', () => {
    expect(messageOf('{ id: a, expr: "m > 1", name: true }')).toBe('rules[0].name: true has the wrong type (expected a string; quote it: "true")');
    expect(messageOf('{ id: a, expr: "m > 1", name: [x] }')).toBe('rules[0].name: ["x"] has the wrong type (expected a string)');
    expect(messageOf('{ id: a, kind: anomaly, metric: m, score: 0.5, buckets: 1.5 }')).toBe('rules[0].buckets: 1.5 has the wrong type (expected an integer)');
    expect(messageOf('{ id: a, expr: "m > 1", labels: x }')).toBe('rules[0].labels: "x" has the wrong type (expected a mapping)');
    expect(messageOf('{ id: a, expr: "m > 1", enabled: "yes" }')).toBe('rules[0].enabled: "yes" has the wrong type (expected a boolean)');
    expect(messageOf('{ id: a, kind: threshold, metric: m, op: ">", value: high }')).toBe('rules[0].value: "high" has the wrong type (expected a number)');
    expect(listed(rulesError('rules: x\n'))).toEqual(['1:1 rules: "x" has the wrong type (expected a list)']);
  });

  it('enums suggest a close value only for words longer than two characters', () => {
    expect(messageOf('{ id: a, expr: "m > 1", severity: warnin }')).toBe('rules[0].severity: "warnin" is not allowed (did you mean "warning"? expected one of "info", "warning", "critical")');
    expect(messageOf('{ id: a, kind: threshold, metric: m, op: "=<", value: 1 }')).toBe('rules[0].op: "=<" is not allowed (expected one of ">", ">=", "<", "<=", "==", "!=")');
    expect(messageOf('{ id: a, kind: threshold, metric: m, op: "gte", value: 1 }')).toBe('rules[0].op: "gte" is not allowed (expected one of ">", ">=", "<", "<=", "==", "!=")');
  });

  it('an empty op, as YAML reads an unquoted ">", gets the quoting hint; an empty severity does not', () => {
    expect(messageOf('{ id: a, kind: threshold, metric: m, op: "", value: 1 }')).toBe('rules[0].op: "" is not allowed (expected one of ">", ">=", "<", "<=", "==", "!="; quote the operator in YAML, e.g. op: ">")');
    expect(messageOf('{ id: a, expr: "m > 1", severity: "" }')).toBe('rules[0].severity: "" is not allowed (expected one of "info", "warning", "critical")');
  });

  it('lengths and ranges', () => {
    expect(messageOf('{ id: a, expr: "m > 1", name: "" }')).toBe('rules[0].name: "" is empty (expected a non-empty string)');
    const long = 'a'.repeat(129);
    expect(messageOf(`{ id: ${long}, expr: "m > 1" }`)).toBe(`rules[0].id: "${long}" is too long (expected at most 128 characters)`);
    expect(messageOf('{ id: a, kind: anomaly, metric: m, score: 0 }')).toBe('rules[0].score: 0 is out of range (expected a number > 0)');
    expect(messageOf('{ id: a, kind: anomaly, metric: m, sensitivity: 2 }')).toBe('rules[0].sensitivity: 2 is out of range (expected a number <= 1)');
    expect(messageOf('{ id: a, kind: anomaly, metric: m, score: 0.5, buckets: 0 }')).toBe('rules[0].buckets: 0 is out of range (expected a number >= 1)');
    expect(messageOf('{ id: a, expr: "m > 1", rateLimit: { max: 1000001, per: 1m } }')).toBe('rules[0].rateLimit.max: 1000001 is out of range (expected a number <= 1000000)');
  });

  it('durations, with a unit hint for bare numbers', () => {
    expect(messageOf('{ id: a, expr: "m > 1", repeatInterval: 1.5h }')).toBe('rules[0].repeatInterval: "1.5h" is not a duration (expected e.g. 30s, 5m, 1h30m)');
    expect(messageOf('{ id: a, expr: "m > 1", keepFiringFor: 90 }')).toBe('rules[0].keepFiringFor: 90 is not a duration (expected e.g. 30s, 5m, 1h30m; write it with a unit, e.g. "90s")');
    expect(listed(rulesError('defaults: { repeatInterval: 2 hours }\nrules: []\n'))).toEqual(['1:13 defaults.repeatInterval: "2 hours" is not a duration (expected e.g. 30s, 5m, 1h30m)']);
  });
});
