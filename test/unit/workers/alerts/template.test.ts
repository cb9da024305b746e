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
