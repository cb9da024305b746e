import { execFileSync } from 'node:child_process';
import { capabilitiesOf } from '../sinks/clickhouse/capabilities.js';
import { schemaStatements } from '../sinks/clickhouse/schema.js';

/**
 * The ClickHouse version chdb runs (in the venv's `python`) and the DDL Vigil gives that version
 * for a database `vigil` (`vigil schema --server-version`): what bench:bytes and bench:formats
 * create inside chdb.
 */
export function chdbStatements(python: string): { version: string; ddl: string[] } {
  const version = execFileSync(python, ['-c', 'from chdb import session; print(str(session.Session().query("SELECT version()", "TSVRaw")).strip())']).toString().trim();
  return { version, ddl: schemaStatements('vigil', capabilitiesOf(version)) };
}

/**
 * Runs SQL statements in chdb (a current ClickHouse, in-process) and returns the last one's result
 * as CSV; with `dir`, in a session kept there, so that separate calls share their tables.
 */
export function chdbRun(python: string, statements: readonly string[], dir?: string): string {
  const program = [
    'import json, sys',
    'from chdb import session',
    `s = session.Session(${dir ? JSON.stringify(dir) : ''})`,
    'out = ""',
    'for q in json.load(sys.stdin):',
    '    out = s.query(q, "CSV").bytes().decode()',
    'print(out, end="")',
  ].join('\n');
  return execFileSync(python, ['-c', program], { input: JSON.stringify(statements) }).toString();
}
