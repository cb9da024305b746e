import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, VigilError } from '../../../core/errors.js';

describe('error catalogue', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const documented = new Set([...doc.matchAll(/`(VIGIL_ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]));

  it('documents every code, and documents no code that does not exist', () => {
    const codes = Object.keys(ErrorCodes);
    expect(codes.filter((c) => !documented.has(c))).toEqual([]);
    expect([...documented].filter((c) => !codes.includes(c as string))).toEqual([]);
  });

  it('follows VIGIL_ERR_<AREA>_<PROBLEM> and carries code, retryable and cause', () => {
    for (const code of Object.keys(ErrorCodes)) expect(code).toMatch(/^VIGIL_ERR_[A-Z0-9]+_[A-Z0-9_]+$/);
    const cause = new Error('boom');
    const err = new VigilError('VIGIL_ERR_CLICKHOUSE_UNAVAILABLE', 'no answer', { cause, retryable: true });
    expect(err.message).toBe('VIGIL_ERR_CLICKHOUSE_UNAVAILABLE: no answer');
    expect(err.code).toBe('VIGIL_ERR_CLICKHOUSE_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.cause).toBe(cause);
  });
});
