import { describe, expect, it } from 'vitest';
import { TEMPLATE_VARIABLES, TemplateError, compileTemplate } from '../../../../workers/alerts/template.js';

const render = (source: string, context: Parameters<ReturnType<typeof compileTemplate>['render']>[0]) => compileTemplate(source).render(context);

function templateError(source: string): TemplateError {
  try {
    compileTemplate(source, { variables: TEMPLATE_VARIABLES });
  } catch (err) {
    expect(err).toBeInstanceOf(TemplateError);
    return err as TemplateError;
  }
  throw new Error('expected a TemplateError');
}

describe('alert templates', () => {
  it('substitutes variables and nested paths', () => {
    const t = compileTemplate('{{ metric }} above {{threshold}} on {{ tags.host }} ({{ rule.name }}, {{ labels.team }}, for {{ for }})');
    expect(t.variables).toEqual(['metric', 'threshold', 'tags', 'rule', 'labels', 'for']);
    expect(
      t.render({
        metric: 'cpu',
        threshold: 90,
        tags: { host: 'web-1' },
        rule: { id: 'c', name: 'HighCpu', kind: 'threshold', severity: 'warning' },
        labels: { team: 'infra' },
        for: '5m',
      }),
    ).toBe('cpu above 90 on web-1 (HighCpu, infra, for 5m)');
    expect(render('{{ tags["k8s.pod"] }}', { tags: { 'k8s.pod': 'api-7' } })).toBe('api-7');
    expect(render('plain text', {})).toBe('plain text');
    expect(render('a } b }} c { d', {})).toBe('a } b }} c { d');
  });

  it('renders a missing or unknown variable as empty', () => {
    expect(render('[{{ tags.host }}][{{ score }}][{{ nothing.here }}]', { tags: {}, score: null })).toBe('[][][]');
    // Only own properties: no reaching into Object.prototype.
    expect(render('[{{ tags.constructor }}][{{ tags.toString }}]', { tags: {} })).toBe('[][]');
  });

  it('round N, upper, lower, default and chains', () => {
    expect(render('{{ value | round 1 }}', { value: 93.14159 })).toBe('93.1');
    expect(render('{{ value | round 2 }}', { value: 0.5 })).toBe('0.5');
    expect(render('{{ value | round }}', { value: 12.6 })).toBe('13');
    expect(render('{{ value | round 1 }}', { value: -0.04 })).toBe('0');
    expect(render('{{ metric | round 1 }}', { metric: 'cpu' })).toBe('cpu');
    expect(render('{{ severity | upper }}', { severity: 'critical' })).toBe('CRITICAL');
    expect(render('{{ metric | lower }}', { metric: 'CPU' })).toBe('cpu');
    expect(render('{{ tags.host | default "unknown" }}', { tags: {} })).toBe('unknown');
    expect(render("{{ tags.host | default 'n/a' | upper }}", { tags: { host: '' } })).toBe('N/A');
    expect(render('{{ tags.host | default "x \\" }}" }}', {})).toBe('x " }}');
    expect(render('{{ tags.host|default "x"|upper }}', { tags: { host: 'web' } })).toBe('WEB');
    expect(render('{{ explanation }}', { explanation: { expected: 1 } })).toBe('{"expected":1}');
  });

  it('reports syntax errors with their offset', () => {
    expect(templateError('CPU {{ value').message).toBe('unclosed "{{" (expected "}}")');
    expect(templateError('CPU {{ value').offset).toBe(4);
    expect(templateError('x {{ }}').message).toBe('empty placeholder "{{ }}"');
    expect(templateError('{{ value | rnd 1 }}')).toMatchObject({ message: 'unknown filter "rnd" (expected one of round, upper, lower, default)', offset: 11 });
    expect(templateError('{{ value round }}').message).toBe('unexpected "r" (expected "|" or "}}")');
    expect(templateError('{{ tags.host | default }}').message).toBe('default needs a quoted text, e.g. default "unknown"');
    expect(templateError('{{ tags.host | default "x }}').message).toBe('unclosed string (expected ")');
    expect(templateError('{{ 1abc }}').message).toBe('expected a variable name, found "1"');
    expect(templateError('{{ tags. }}').message).toBe('expected a name after ".", found " "');
  });

  it('rejects unknown root variables when the allowed roots are given', () => {
    expect(templateError('{{ vlaue }}').message).toMatch(/^unknown variable "vlaue" \(expected one of value, threshold, score, metric, tags/);
    expect(compileTemplate('{{ vlaue }}').render({})).toBe('');
  });
});

describe('alert templates: text and placeholders', () => {
  it('keeps the source, lists each root variable once in order of first use, and is frozen', () => {
    const t = compileTemplate('{{ value }} {{ tags.a }} {{ value | round }} {{ tags.b }} {{ metric }}');
    expect(t.source).toBe('{{ value }} {{ tags.a }} {{ value | round }} {{ tags.b }} {{ metric }}');
    expect(t.variables).toEqual(['value', 'tags', 'metric']);
    expect(Object.isFrozen(t)).toBe(true);
    expect(Object.isFrozen(t.variables)).toBe(true);
  });

  it('text before, between and after placeholders is kept as written', () => {
    expect(render('{{ metric }}{{ metric }}', { metric: 'm' })).toBe('mm');
    expect(render('<{{ metric }}>', { metric: 'm' })).toBe('<m>');
    expect(render('', {})).toBe('');
    expect(compileTemplate('no placeholders').variables).toEqual([]);
  });

  it('white space inside a placeholder is free, including tabs and newlines', () => {
    expect(render('{{\tvalue\n|\nround\t1 }}', { value: 1.26 })).toBe('1.3');
    expect(render('{{value}}', { value: 2 })).toBe('2');
    expect(render('{{ tags[ "k8s.pod" ] }}', { tags: { 'k8s.pod': 'p' } })).toBe('p');
    expect(render("{{ tags['a'].x }}", { tags: { a: 'v' } })).toBe('');
    expect(render('{{ _x1 }}', {})).toBe('');
  });
});

describe('alert templates: values', () => {
  it('a path stops at anything that is not an object with that own key', () => {
    expect(render('[{{ metric.length }}]', { metric: 'cpu' })).toBe('[]');
    expect(render('[{{ explanation.a.b }}]', { explanation: { a: null } })).toBe('[]');
    expect(render('[{{ explanation.a.b }}]', { explanation: { a: { b: 3 } } })).toBe('[3]');
    expect(render('[{{ explanation.missing }}]', { explanation: {} })).toBe('[]');
  });

  it('numbers, booleans and bigints as text; objects as JSON; what JSON cannot write as nothing', () => {
    expect(render('{{ explanation.n }} {{ explanation.t }} {{ explanation.f }} {{ explanation.big }}', { explanation: { n: 0, t: true, f: false, big: 12n } })).toBe('0 true false 12');
    expect(render('{{ explanation.list }}', { explanation: { list: [1, 'a'] } })).toBe('[1,"a"]');
    expect(render('[{{ explanation.fn }}]', { explanation: { fn: () => 1 } })).toBe('[]');
    expect(render('{{ value }}', { value: -1.5 })).toBe('-1.5');
  });
});

describe('alert templates: filters', () => {
  it('round reads numbers and numeric text, and passes anything else through', () => {
    expect(render('{{ metric | round 1 }}', { metric: '93.14' })).toBe('93.1');
    expect(render('[{{ metric | round }}]', { metric: ' ' })).toBe('[ ]');
    expect(render('[{{ metric | round }}]', { metric: '' })).toBe('[]');
    expect(render('{{ value | round }}', { value: Number.POSITIVE_INFINITY })).toBe('Infinity');
    expect(render('[{{ value | round }}]', { value: null })).toBe('[]');
    expect(render('{{ explanation.t | round }}', { explanation: { t: true } })).toBe('true');
    expect(render('{{ value | round 15 }}', { value: 0.1 })).toBe('0.1');
    expect(render('{{ value | round 0 }}', { value: 2.5 })).toBe('3');
    expect(render('{{ value | round 2 }}', { value: 1.005 })).toBe('1');
    expect(render('{{ value | round }}', { value: -2.4 })).toBe('-2');
    expect(render('{{ value | round }} of 12', { value: 1.26 })).toBe('1 of 12');
    expect(render('{{ value | round 10 }}', { value: 1 / 3 })).toBe('0.3333333333');
  });

  it('upper and lower apply to the text of any value', () => {
    expect(render('[{{ value | upper }}]', {})).toBe('[]');
    expect(render('{{ explanation | upper }}', { explanation: { a: 'b' } })).toBe('{"A":"B"}');
    expect(render('{{ status | upper | lower }}', { status: 'firing' })).toBe('firing');
  });

  it('default replaces a missing, null or empty value, but not zero or false', () => {
    expect(render('{{ value | default "none" }}', { value: null })).toBe('none');
    expect(render('{{ value | default "none" }}', {})).toBe('none');
    expect(render('{{ metric | default "none" }}', { metric: '' })).toBe('none');
    expect(render('{{ value | default "none" }}', { value: 0 })).toBe('0');
    expect(render('{{ explanation.f | default "none" }}', { explanation: { f: false } })).toBe('false');
    expect(render('{{ value | round | default "none" }}', { value: 2.2 })).toBe('2');
  });

  it('quoted texts: escapes for quotes, backslash, newline and tab', () => {
    expect(render('{{ value | default "a\\"b" }}', {})).toBe('a"b');
    expect(render("{{ value | default 'it\\'s' }}", {})).toBe("it's");
    expect(render("{{ value | default 'say \"hi\"' }}", {})).toBe('say "hi"');
    expect(render('{{ value | default "a\\\\b" }}', {})).toBe('a\\b');
    expect(render('{{ value | default "1\\n2\\t3\\x" }}', {})).toBe('1\n2\t3x');
    expect(render('{{ value | default "" }}', {})).toBe('');
  });
});

describe('alert templates: errors', () => {
  it.each([
    ['{{', 'unclosed "{{" (expected "}}")', 0],
    ['ab {{   ', 'unclosed "{{" (expected "}}")', 3],
    ['{{}}', 'empty placeholder "{{ }}"', 0],
    ['a {{ value | round 1', 'unclosed "{{" (expected "}}")', 2],
    ['{{ value }', 'unexpected "}" (expected "|" or "}}")', 9],
    ['{{ value |', 'expected a filter name', 10],
    ['{{ value | 5 }}', 'expected a filter name, found "5"', 11],
    ['{{ value | round 16 }}', 'round 16: expected 0 to 15 decimals', 17],
    ['{{ tags[host] }}', 'expected a quoted key after "["', 8],
    ['{{ tags["host" }}', 'expected "]"', 15],
    ['{{ tags["host"', 'expected "]"', 14],
    ['{{ tags["host] }}', 'unclosed string (expected ")', 8],
    ['{{ tags["ho\\', 'unclosed string (expected ")', 8],
    ['{{ value | default 5 }}', 'default needs a quoted text, e.g. default "unknown"', 19],
    ['x {{ status }} {{ vlaue }}', 'unknown variable "vlaue" (expected one of value, threshold, score, metric, tags, labels, rule, severity, for, window, buckets, status, startsAt, observedAt, fingerprint, explanation)', 15],
  ])('%s', (source, message, offset) => {
    expect(templateError(source)).toMatchObject({ name: 'TemplateError', message, offset });
  });
});
