import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Panel } from '@grafana/schema';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../core/config/index.js';
import { CLICKHOUSE, dashboardJson, dashboards, type DashboardOptions } from '../../../infra/grafana/dashboards.js';
import { PLUGIN_MACROS, interpolate, macrosOf, requiredFields, variablesOf } from '../../helpers/grafana.js';

const root = new URL('../../../', import.meta.url).pathname;
const defaults = loadConfig({ env: {} });
const options: DashboardOptions = { database: defaults.clickhouse.database, threshold: defaults.models.threshold };
const generated = dashboards(options);

const targetsOf = (p: Panel) => (p.targets ?? []) as { refId?: string; rawSql?: string; datasource?: { uid?: string }; format?: number }[];

describe('the generated Grafana dashboards', () => {
  it('are the files docker-compose provisions (regenerate with `vigil dashboards`)', () => {
    for (const [name, d] of Object.entries(generated)) {
      expect(readFileSync(join(root, 'infra/docker/grafana/dashboards', name), 'utf8'), name).toBe(dashboardJson(d));
    }
  });

  it("have every field Grafana's dashboard schema requires, on dashboards, panels, grid positions, variables and links", () => {
    const required = Object.fromEntries(['Dashboard', 'Panel', 'GridPos', 'VariableModel', 'DashboardLink'].map((n) => [n, requiredFields(n)]));
    // The schema as read: not an empty list that would pass anything.
    expect(required['Dashboard']).toContain('schemaVersion');
    expect(required['Panel']).toContain('type');
    expect(required['GridPos']).toEqual(expect.arrayContaining(['h', 'w', 'x', 'y']));
    expect(required['VariableModel']).toEqual(expect.arrayContaining(['name', 'type']));
    const has = (what: string, obj: object, fields: readonly string[]) => {
      for (const f of fields) expect(obj, `${what}: ${f}`).toHaveProperty(f);
    };
    for (const [name, d] of Object.entries(generated)) {
      has(name, d, required['Dashboard'] as string[]);
      expect(d.uid, name).toMatch(/^vigil-[a-z]+$/);
      expect(d.title, name).toMatch(/^Vigil — /);
      for (const p of d.panels as Panel[]) {
        has(`${name} ${p.title}`, p, required['Panel'] as string[]);
        has(`${name} ${p.title} gridPos`, p.gridPos as object, required['GridPos'] as string[]);
      }
      for (const v of d.templating?.list ?? []) has(`${name} variable ${v.name}`, v, required['VariableModel'] as string[]);
      for (const l of d.links ?? []) has(`${name} link`, l, required['DashboardLink'] as string[]);
    }
  });

  it('lay panels out on the 24-column grid without overlaps, with unique ids', () => {
    for (const [name, d] of Object.entries(generated)) {
      const panels = d.panels as Panel[];
      expect(new Set(panels.map((p) => p.id)).size, name).toBe(panels.length);
      const cells = new Set<string>();
      for (const p of panels) {
        const g = p.gridPos as { x: number; y: number; w: number; h: number };
        expect(g.x + g.w, `${name} ${p.title}`).toBeLessThanOrEqual(24);
        for (let x = g.x; x < g.x + g.w; x++) {
          for (let y = g.y; y < g.y + g.h; y++) {
            expect(cells.has(`${x},${y}`), `${name} ${p.title} overlaps at ${x},${y}`).toBe(false);
            cells.add(`${x},${y}`);
          }
        }
      }
    }
  });

  it("query the provisioned ClickHouse data source, with the plugin's macros and the dashboard's own variables only", () => {
    const provisioned = readFileSync(join(root, 'infra/docker/grafana/provisioning/datasources/vigil.yml'), 'utf8');
    expect(provisioned).toContain(`uid: ${CLICKHOUSE.uid}`);
    expect(provisioned).toContain(`type: ${CLICKHOUSE.type}`);
    for (const [name, d] of Object.entries(generated)) {
      const defined = new Set((d.templating?.list ?? []).map((v) => v.name));
      const sqls = [...(d.panels as Panel[]).flatMap((p) => targetsOf(p).map((t) => ({ where: p.title, t }))), ...(d.templating?.list ?? []).filter((v) => v.type === 'query').map((v) => ({ where: `variable ${v.name}`, t: { rawSql: v.query as string, refId: 'v', datasource: v.datasource ?? undefined, format: 1 } }))];
      for (const { where, t } of sqls) {
        const sql = t.rawSql as string;
        expect(t.datasource?.uid, `${name} ${where}`).toBe(CLICKHOUSE.uid);
        expect(sql, `${name} ${where}`).toContain(`${options.database}.`);
        for (const m of macrosOf(sql)) expect(PLUGIN_MACROS, `${name} ${where}: $__${m}`).toContain(m);
        for (const v of variablesOf(sql)) expect(defined, `${name} ${where}: \${${v}}`).toContain(v);
      }
      for (const p of d.panels as Panel[]) expect(targetsOf(p).length, `${name} ${p.title}`).toBeGreaterThan(0);
    }
  });

  it('follow the configuration: the database and the score threshold', () => {
    const other = dashboards({ database: 'metrics_prod', threshold: 0.75 });
    const all = JSON.stringify(other);
    expect(all).not.toContain('vigil.');
    expect(all).toContain('metrics_prod.rollups FINAL');
    expect(JSON.stringify(other['vigil-anomalies.json'])).toContain('"value":0.75');
  });
});

describe("the plugin's macro expansion (test/helpers/grafana.ts, as in macros.go)", () => {
  it('expands time filters, intervals and variables', () => {
    const sql = "SELECT $__timeInterval(ts) AS t FROM x WHERE $__timeFilter(ts) AND m = '${metric}' AND w = $width AND a >= $__fromTime AND b <= $__toTime GROUP BY t -- $__interval_s";
    expect(interpolate(sql, { fromMs: 1415792726123, toMs: 1447328726456, intervalS: 0.5, variables: { metric: 'cpu', width: '10' } })).toBe(
      "SELECT toStartOfInterval(toDateTime(ts), INTERVAL 1 second) AS t FROM x WHERE ts >= toDateTime(1415792726) AND ts <= toDateTime(1447328726) AND m = 'cpu' AND w = 10 AND a >= toDateTime(1415792726) AND b <= toDateTime(1447328726) GROUP BY t -- 1",
    );
    expect(() => interpolate('SELECT ${nope}', { fromMs: 0, toMs: 0, intervalS: 1, variables: {} })).toThrow(/nope/);
  });
});
