import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * What Grafana and its ClickHouse data source plugin do to a panel's SQL before ClickHouse sees
 * it, for the tests that run the generated dashboards' queries: Grafana substitutes the template
 * variables (`${name}`, `$name`), then the plugin's backend expands its macros as
 * grafana/clickhouse-datasource pkg/macros/macros.go does (UTC seconds; the interval at least 1 s).
 */
export interface GrafanaQueryContext {
  fromMs: number;
  toMs: number;
  intervalS: number;
  variables: Readonly<Record<string, string>>;
}

/** The macros of the plugin's backend (macros.go `Macros`), those Vigil's dashboards may use. */
export const PLUGIN_MACROS = ['fromTime', 'toTime', 'timeFilter', 'timeInterval', 'interval_s'] as const;

export function interpolate(sql: string, c: GrafanaQueryContext): string {
  const vars = sql.replace(/\$\{(\w+)\}|\$(?!__)(\w+)/g, (whole, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b) as string;
    const value = c.variables[name];
    if (value === undefined) throw new Error(`variable ${name} has no value (in ${sql})`);
    return value;
  });
  const from = `toDateTime(${Math.floor(c.fromMs / 1000)})`;
  const to = `toDateTime(${Math.floor(c.toMs / 1000)})`;
  const interval = Math.max(1, Math.floor(c.intervalS));
  return vars
    .replace(/\$__timeFilter\(([^)]+)\)/g, (_, col: string) => `${col.trim()} >= ${from} AND ${col.trim()} <= ${to}`)
    .replace(/\$__timeInterval\(([^)]+)\)/g, (_, col: string) => `toStartOfInterval(toDateTime(${col.trim()}), INTERVAL ${interval} second)`)
    .replace(/\$__fromTime\b/g, from)
    .replace(/\$__toTime\b/g, to)
    .replace(/\$__interval_s\b/g, String(interval));
}

/** The macros a query uses (`$__name`). */
export function macrosOf(sql: string): string[] {
  return [...sql.matchAll(/\$__(\w+)/g)].map((m) => m[1] as string);
}

/** The template variables a query uses (`${name}` or `$name`). */
export function variablesOf(sql: string): string[] {
  return [...sql.matchAll(/\$\{(\w+)\}|\$(?!__)(\w+)/g)].map((m) => (m[1] ?? m[2]) as string);
}

/**
 * The required (non-optional) properties of an interface of Grafana's dashboard schema, read from
 * @grafana/schema's generated types (raw/dashboard/x/types.gen.d.ts): the schema Grafana itself
 * is built from.
 */
export function requiredFields(name: string): string[] {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('@grafana/schema/package.json'));
  const text = readFileSync(join(root, 'dist', 'types', 'raw', 'dashboard', 'x', 'types.gen.d.ts'), 'utf8');
  const start = text.indexOf(`export interface ${name} {`);
  if (start < 0) throw new Error(`no interface ${name} in @grafana/schema`);
  const body = text.slice(start, text.indexOf('\n}', start));
  return [...body.matchAll(/^ {4}([A-Za-z_]\w*):/gm)].map((m) => m[1] as string);
}
