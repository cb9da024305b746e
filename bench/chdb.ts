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
