import { expect } from 'vitest';
import { parseRules, RulesError } from '../../../../workers/alerts/rules.js';

/** The RulesError parsing `text` throws (the test fails when it parses). */
export function rulesError(text: string, file = 'rules.yaml'): RulesError {
  try {
    parseRules(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(RulesError);
    return err as RulesError;
  }
  throw new Error('expected a RulesError');
}
