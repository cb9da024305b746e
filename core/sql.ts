/**
 * ClickHouse SQL literals, for the servers that take no query parameters: 18.16 rejects
 * `{name:Type}` placeholders (and the `param_*` settings @clickhouse/client sends for them) with
 * "Unknown setting param_…", so values Vigil puts in a query are written as literals.
 */

/** A string literal: backslash and quote escaped. */
export function sqlString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A non-negative integer literal (a fraction or a negative number is a caller's bug). */
export function sqlUInt(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative integer: ${n}`);
  return String(n);
}
