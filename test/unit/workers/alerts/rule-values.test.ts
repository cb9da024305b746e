import { describe, expect, it } from 'vitest';
import {
  compare,
  compileMatcher,
  durationMs,
  formatDuration,
  matchesSeries,
  parseDuration,
  renderAnnotations,
  shouldResolve,
  tagObject,
} from '../../../../workers/alerts/rule-values.js';
import { RulesError, parseRules, type CompiledRule } from '../../../../workers/alerts/rules.js';

/** The single rule of a one-rule YAML file. */
function rule(yaml: string): CompiledRule {
  const [r] = parseRules(`rules:\n  - ${yaml}\n`, 'r.yaml').rules;
  if (!r) throw new Error('no rule');
  return r;
}

describe('durationMs', () => {
  it('reads every unit, largest first', () => {
    expect(durationMs('1y')).toBe(365 * 86_400_000);
    expect(durationMs('2w')).toBe(14 * 86_400_000);
    expect(durationMs('3d')).toBe(3 * 86_400_000);
    expect(durationMs('4h')).toBe(4 * 3_600_000);
    expect(durationMs('5m')).toBe(300_000);
    expect(durationMs('6s')).toBe(6000);
    expect(durationMs('7ms')).toBe(7);
    expect(durationMs('1y1w1d1h1m1s1ms')).toBe(365 * 86_400_000 + 7 * 86_400_000 + 86_400_000 + 3_600_000 + 60_000 + 1000 + 1);
    expect(durationMs('10m5ms')).toBe(600_005);
  });

  it('returns null for text that is not a duration', () => {
    expect(durationMs('')).toBeNull();
    expect(durationMs('5')).toBeNull();
    expect(durationMs('m')).toBeNull();
    expect(durationMs(' 5m')).toBeNull();
    expect(durationMs('5m ')).toBeNull();
    expect(durationMs('5ms5m')).toBeNull();
    expect(durationMs('5x')).toBeNull();
  });

  it('returns null when the total is past the safe integer range', () => {
    expect(durationMs('200000y')).toBe(200_000 * 365 * 86_400_000);
    expect(durationMs('999999999y')).toBeNull();
    expect(() => parseDuration('999999999y')).toThrow('"999999999y" is not a duration');
  });

  it('parseDuration throws a VIGIL_ERR_RULES_INVALID RulesError naming the text', () => {
    let caught: unknown;
    try {
      parseDuration('5 minutes');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RulesError);
    expect(caught).toMatchObject({ code: 'VIGIL_ERR_RULES_INVALID', file: '', issues: [], message: 'VIGIL_ERR_RULES_INVALID: "5 minutes" is not a duration (expected e.g. 30s, 5m, 1h30m)' });
  });
});

describe('formatDuration', () => {
  it('writes the shortest text parseDuration reads back', () => {
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000 + 6000 + 7)).toBe('3d4h5m6s7ms');
    expect(formatDuration(60_000)).toBe('1m');
    expect(formatDuration(1)).toBe('1ms');
    for (const text of ['1d1s', '2h', '1h30m', '45s', '999ms']) expect(formatDuration(parseDuration(text))).toBe(text);
  });

  it('zero and negative durations are "0s"; fractions round to the millisecond', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(-5)).toBe('0s');
    expect(formatDuration(-86_400_000)).toBe('0s');
    expect(formatDuration(1500.6)).toBe('1s501ms');
    expect(formatDuration(1500.4)).toBe('1s500ms');
  });
});

describe('compileMatcher', () => {
  it('an exact name matches only itself', () => {
    const m = compileMatcher('cpu.total');
    expect(m).toMatchObject({ kind: 'exact', text: 'cpu.total', negate: false });
    expect(m.test('cpu.total')).toBe(true);
    expect(m.test('cpuxtotal')).toBe(false);
    expect(m.test('cpu.total2')).toBe(false);
  });

  it('a glob is anchored at both ends; "*" spans dots and newlines; regex characters are literal', () => {
    const star = compileMatcher('cpu*');
    expect(star.kind).toBe('glob');
    expect(star.test('cpu')).toBe(true);
    expect(star.test('cpu.a.b')).toBe(true);
    expect(star.test('cpu\nx')).toBe(true);
    expect(star.test('xcpu')).toBe(false);
    expect(compileMatcher('*.total').test('cpu.totals')).toBe(false);
    const special = compileMatcher('a+b(c)|[d]^$\\{e}?');
    expect(special.kind).toBe('glob');
    expect(special.test('a+b(c)|[d]^$\\{e}!')).toBe(true);
    expect(special.test('aab(c)|[d]^$\\{e}!')).toBe(false);
    expect(compileMatcher('?').test('')).toBe(false);
    expect(compileMatcher('?').test('\n')).toBe(true);
  });

  it('a regex is not anchored and takes the flags i, m, s, u', () => {
    const re = compileMatcher('/web/');
    expect(re).toMatchObject({ kind: 'regex', text: '/web/', negate: false });
    expect(re.test('my-web-1')).toBe(true);
    expect(re.test('WEB')).toBe(false);
    expect(compileMatcher('/^web$/im').test('db\nWEB')).toBe(true);
    expect(compileMatcher('/a.b/s').test('a\nb')).toBe(true);
    expect(compileMatcher('/^\\u{1F600}$/u').test('\u{1F600}')).toBe(true);
    expect(compileMatcher('/a/b/').test('xa/b')).toBe(true);
  });

  it('names what is wrong with a regex', () => {
    expect(() => compileMatcher('/')).toThrow('starts with "/" but has no closing "/" (expected /pattern/ or /pattern/flags)');
    expect(() => compileMatcher('/abc')).toThrow('starts with "/" but has no closing "/"');
    expect(() => compileMatcher('/abc/gi')).toThrow('regex flags "gi" are not allowed (expected some of i, m, s, u)');
    expect(() => compileMatcher('/abc/ix')).toThrow('regex flags "ix" are not allowed (expected some of i, m, s, u)');
    expect(() => compileMatcher('/(/')).toThrow(/^is not a valid regular expression: Invalid regular expression: \/\(\/: Unterminated group$/);
    let caught: unknown;
    try {
      compileMatcher('/(/');
    } catch (err) {
      caught = err;
    }
    expect((caught as Error).cause).toBeInstanceOf(SyntaxError);
  });

  it('"!" negates when allowed, and is literal otherwise', () => {
    const not = compileMatcher('!staging');
    expect(not).toMatchObject({ kind: 'exact', text: 'staging', negate: true });
    expect(not.test('staging')).toBe(false);
    expect(not.test('prod')).toBe(true);
    expect(compileMatcher('!/^eu/').test('eu-west')).toBe(false);
    const literal = compileMatcher('!staging', false);
    expect(literal).toMatchObject({ kind: 'exact', text: '!staging', negate: false });
    expect(literal.test('!staging')).toBe(true);
    expect(literal.test('prod')).toBe(false);
    expect(compileMatcher('staging', false).test('staging')).toBe(true);
  });
});

describe('compare', () => {
  it('each operator just below, at and just above the threshold', () => {
    const ops = ['>', '>=', '<', '<=', '==', '!='] as const;
    const table = ops.map((op) => [op, compare(op, 9, 10), compare(op, 10, 10), compare(op, 11, 10)]);
    expect(table).toEqual([
      ['>', false, false, true],
      ['>=', false, true, true],
      ['<', true, false, false],
      ['<=', true, true, false],
      ['==', false, true, false],
      ['!=', true, false, true],
    ]);
  });
});

describe('shouldResolve', () => {
  it('without resolveValue: as soon as the condition is false', () => {
    const r = rule('{ id: a, expr: "m >= 90" }');
    expect([shouldResolve(r, 89), shouldResolve(r, 90), shouldResolve(r, 91)]).toEqual([true, false, false]);
  });

  it('with resolveValue under ">" or ">=": strictly below it', () => {
    for (const op of ['>', '>=']) {
      const r = rule(`{ id: a, expr: "m ${op} 90", resolveValue: 85 }`);
      expect([shouldResolve(r, 84.9), shouldResolve(r, 85), shouldResolve(r, 88)], op).toEqual([true, false, false]);
    }
  });

  it('with resolveValue under "<" or "<=": strictly above it', () => {
    for (const op of ['<', '<=']) {
      const r = rule(`{ id: a, expr: "m ${op} 10", resolveValue: 20 }`);
      expect([shouldResolve(r, 15), shouldResolve(r, 20), shouldResolve(r, 20.1)], op).toEqual([false, false, true]);
    }
  });

  it('anomaly rules resolve below their resolveValue', () => {
    const r = rule('{ id: a, kind: anomaly, metric: m, score: 0.8, resolveValue: 0.5 }');
    expect([shouldResolve(r, 0.49), shouldResolve(r, 0.5), shouldResolve(r, 0.7)]).toEqual([true, false, false]);
  });
});

describe('tagObject and matchesSeries', () => {
  it('tagObject pairs a flat tag array and ignores a trailing odd key', () => {
    expect(tagObject(['host', 'a', 'env', 'prod'])).toStrictEqual({ host: 'a', env: 'prod' });
    expect(tagObject(['host', 'a', 'env'])).toStrictEqual({ host: 'a' });
    expect(tagObject([])).toStrictEqual({});
  });

  it('a rule without tags matches every series of its metric', () => {
    const r = rule('{ id: a, expr: "cpu > 1" }');
    expect(matchesSeries(r, 'cpu', {})).toBe(true);
    expect(matchesSeries(r, 'cpu', { host: 'x' })).toBe(true);
    expect(matchesSeries(r, 'mem', {})).toBe(false);
  });

  it('a listed tag the series lacks is matched as ""', () => {
    const any = rule('{ id: a, expr: "cpu > 1", tags: { host: "*" } }');
    expect(matchesSeries(any, 'cpu', {})).toBe(true);
    const named = rule('{ id: a, expr: "cpu > 1", tags: { host: "web" } }');
    expect(matchesSeries(named, 'cpu', {})).toBe(false);
    expect(matchesSeries(named, 'cpu', { host: 'web' })).toBe(true);
    const empty = rule('{ id: a, expr: "cpu > 1", tags: { host: "/^$/" } }');
    expect(matchesSeries(empty, 'cpu', {})).toBe(true);
    expect(matchesSeries(empty, 'cpu', { host: 'web' })).toBe(false);
  });
});

describe('renderAnnotations', () => {
  const ANNOTATIONS = '{ a: "{{ rule.id }}|{{ rule.name }}|{{ rule.kind }}|{{ rule.severity }}|{{ severity }}", b: "{{ threshold }}|{{ for }}|{{ window }}|{{ buckets }}|{{ labels.team }}", c: "{{ value }}|{{ metric }}|{{ status }}" }';

  it('fills in the rule-derived variables beside the event context', () => {
    const r = rule(`{ id: auth, name: Auth, expr: "auth > 10 in 1h30m for 5m", severity: critical, labels: { team: sec }, annotations: ${ANNOTATIONS} }`);
    expect(renderAnnotations(r, { value: 12, metric: 'auth', status: 'firing' })).toEqual({
      a: 'auth|Auth|rate|critical|critical',
      b: '10|5m|1h30m|1|sec',
      c: '12|auth|firing',
    });
  });

  it('absent rules have no threshold; durations of zero read "0s"', () => {
    const r = rule(`{ id: hb, kind: absent, metric: hb, for: 10m, annotations: ${ANNOTATIONS} }`);
    expect(renderAnnotations(r, {})).toEqual({ a: 'hb|hb|absent|warning|warning', b: '|10m|0s|1|', c: '||' });
    const t = rule(`{ id: t, expr: "m > 0", annotations: ${ANNOTATIONS} }`);
    expect(renderAnnotations(t, {})['b']).toBe('0|0s|0s|1|');
  });

  it('the event context wins over a rule-derived variable of the same name', () => {
    const r = rule('{ id: a, expr: "m > 5", annotations: { s: "{{ threshold }} {{ severity }}" } }');
    expect(renderAnnotations(r, { threshold: 7, severity: 'info' })).toEqual({ s: '7 info' });
  });

  it('a rule without annotations renders none', () => {
    expect(renderAnnotations(rule('{ id: a, expr: "m > 5" }'), { value: 1 })).toStrictEqual({});
  });
});
