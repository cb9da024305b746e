import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import type { Dashboard, Panel } from '@grafana/schema';
import { INCIDENT_SERIES } from '../../../bench/incident.js';
import { dashboards } from '../../../infra/grafana/dashboards.js';
import { alertmanagerAlerts, fingerprintOf, readAlertsTopic } from '../../helpers/alerts.js';
import { interpolate } from '../../helpers/grafana.js';
import { PipelineProcess, waitFor } from '../../helpers/pipeline.js';
import { testConfig, useResources } from '../../helpers/resources.js';

const res = useResources();
const broker = res.config.kafka.brokers[0] as string;
const alertmanagerUrl = `http://127.0.0.1:${testConfig().infra.alertmanagerPort}`;
const running: PipelineProcess[] = [];
afterAll(async () => {
  for (const p of running) await p.stop();
});

/** Each rule of rules/demo.yaml and the incident series it fires on. */
const STORY = {
  'cpu-high': INCIDENT_SERIES.webCpu,
  'auth-failures': INCIDENT_SERIES.authFailures,
  'host-silent': INCIDENT_SERIES.dbCpu,
  'key-access-anomaly': INCIDENT_SERIES.keyAccess,
} as const;

/** The fingerprint of each rule's alert on its incident series. */
const FINGERPRINTS = new Map(Object.entries(STORY).map(([id, series]) => [id, fingerprintOf(id, series.metric, series.tags)]));

const DEMO_TOPIC = /^metrics-(demo|incident)-/;

/** The variable values a user of the demo would pick (the first offered otherwise). */
const PICK: Record<string, Record<string, string>> = {
  'vigil-explorer': { metric: 'system.cpu.usage_total', width: '10', tag_key: 'host', tag_value: 'demo-web-1' },
  'vigil-anomalies': { metric: 'crypto.key.access_count', width: '10', series: 'key_id=demo-key,key_type=signing' },
};

type Row = Record<string, unknown>;

/**
 * A dashboard's queries as Grafana would run them over `[fromMs, toMs]`: the variables first, in
 * order, each set to the picked value among those its query offers (text or value), then `panel`'s.
 */
async function dashboardQueries(d: Dashboard, fromMs: number, toMs: number) {
  const context = (variables: Record<string, string>) => ({ fromMs, toMs, intervalS: 60, variables });
  const variables: Record<string, string> = {};
  const offered: Record<string, number> = {};
  for (const v of d.templating?.list ?? []) {
    const rows = await rowsOf(interpolate(v.query as string, context(variables)));
    offered[v.name] = rows.length;
    const options = rows.map((r) => ({ text: String(r['__text'] ?? Object.values(r)[0]), value: String(r['__value'] ?? Object.values(r)[0]) }));
    const want = PICK[d.uid as string]?.[v.name];
    const picked = options.find((o) => o.text === want || o.value === want) ?? options[0];
    if (!picked) throw new Error(`${d.uid}: variable ${v.name} offers nothing`);
    variables[v.name] = picked.value;
  }
  return { variables, offered, rows: async (panel: Panel) => rowsOf(interpolate((panel.targets?.[0] as { rawSql: string }).rawSql, context(variables))) };
}

async function rowsOf(sql: string): Promise<Row[]> {
  return (await res.clickhouse().query({ query: sql, format: 'JSONEachRow' })).json<Row>();
}

describe('the demo (`vigil start`, real Kafka, ClickHouse and Alertmanager)', () => {
  it('within 3 minutes of the start each rule kind fires and resolves on the scripted incident, on the alerts topic and in Alertmanager; the live line tells it and the recap says where to look', async ({ annotate }) => {
    const { env } = await res.pipelineEnv('demo', 2);
    const alertsTopic = env['VIGIL_KAFKA_ALERTS_TOPIC'] as string;
    const admin = await res.admin();
    const topicsBefore = new Set(await admin.listTopics());
    const spawnedAt = Date.now();
    // infra.mode=off: the test stack stands in for an external one (no `infra up`, no overrides of it).
    const p = await PipelineProcess.start({ ...env, VIGIL_INFRA_MODE: 'off', VIGIL_ALERTS_ALERTMANAGER_URL: alertmanagerUrl }, [], 'start');
    running.push(p);

    const seen = new Map<string, { firingS?: number; resolvedS?: number; listedS?: number }>(Object.keys(STORY).map((id) => [id, {}]));
    // The alerts dashboard's "Firing now" lists an alert while it fires.
    const db = env['VIGIL_CLICKHOUSE_DATABASE'] as string;
    const boards = dashboards({ database: db, threshold: 0.5 });
    const alertsBoard = boards['vigil-alerts.json'] as Dashboard;
    const firingNow = (alertsBoard.panels as Panel[]).find((p) => p.title === 'Firing now') as Panel;
    let firingNowListed: string | undefined;
    const since = () => Math.round((Date.now() - spawnedAt) / 1000);
    const summary = () => [...seen].map(([id, s]) => `${id}: fired ${s.firingS ?? '-'} s, in Alertmanager ${s.listedS ?? '-'} s, resolved ${s.resolvedS ?? '-'} s`).join('; ');
    try {
      await waitFor(
        'every demo rule to fire (listed by Alertmanager while it fires) and resolve',
        async () => {
          const msgs = await readAlertsTopic(broker, alertsTopic);
          for (const [id, fp] of FINGERPRINTS) {
            const s = seen.get(id) as { firingS?: number; resolvedS?: number; listedS?: number };
            const firing = msgs.find((m) => m.event.fingerprint === fp && m.event.status === 'firing');
            const resolved = msgs.find((m) => m.event.fingerprint === fp && m.event.status === 'resolved');
            if (firing) s.firingS ??= since();
            if (resolved) s.resolvedS ??= since();
            if (firing && !resolved && s.listedS === undefined) {
              const listed = await alertmanagerAlerts(alertmanagerUrl, fp);
              if (listed.some((a) => Date.parse(a.startsAt) === Date.parse(firing.event.startsAt))) s.listedS = since();
            }
            if (firing && !resolved && firingNowListed === undefined) {
              const rows = await (await dashboardQueries(alertsBoard, spawnedAt - 8 * 3_600_000, Date.now() + 60_000)).rows(firingNow);
              if (rows.some((r) => r['rule_name'] === firing.event.rule.name)) firingNowListed = firing.event.rule.name;
            }
          }
          return [...seen.values()].every((s) => s.resolvedS !== undefined && s.listedS !== undefined) && firingNowListed !== undefined;
        },
        180_000 - (Date.now() - spawnedAt),
        250,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${summary()}\n${p.output.slice(-4000)}`);
    }
    await annotate(`since the spawn: ${summary()}; the alerts dashboard's "Firing now" listed ${firingNowListed}`);

    // Every panel of every generated dashboard returns rows for the demo's data (the alerts
    // dashboard's "Firing now" was checked above, while an alert fired).
    const counts: string[] = [];
    for (const [file, d] of Object.entries(boards)) {
      const q = await dashboardQueries(d, spawnedAt - 8 * 3_600_000, Date.now() + 60_000);
      for (const [name, n] of Object.entries(q.offered)) expect(n, `${file}: variable ${name}`).toBeGreaterThan(0);
      for (const [name, want] of Object.entries(PICK[d.uid as string] ?? {})) expect(q.variables[name], `${file}: ${name} offers ${want}`).toBeDefined();
      for (const panel of d.panels as Panel[]) {
        if (panel === firingNow) continue;
        const rows = await q.rows(panel);
        counts.push(`${d.uid} / ${panel.title}: ${rows.length}`);
        expect(rows.length, `${file}: ${panel.title} with ${JSON.stringify(q.variables)}`).toBeGreaterThan(0);
      }
    }
    await annotate(`dashboard panels (rows): ${counts.join('; ')}`);
    // Exactly one episode per rule on the incident: the script fires each once. Nothing else
    // fires: the live stream's 1,000 series stay inside every rule (its key-access series are
    // in their learning period).
    const msgs = await readAlertsTopic(broker, alertsTopic);
    const incident = new Set(FINGERPRINTS.values());
    for (const id of Object.keys(STORY)) {
      expect(msgs.filter((m) => m.event.rule.id === id && m.event.status === 'firing' && incident.has(m.event.fingerprint)).length, `${id} firing events`).toBe(1);
    }
    const others = msgs.filter((m) => !incident.has(m.event.fingerprint));
    expect(others.map((m) => `${m.event.status} ${m.event.rule.id} ${JSON.stringify(m.event.series)} score ${m.event.score}`)).toEqual([]);

    p.kill('SIGINT');
    const exit = await Promise.race([p.exited, sleep(60_000).then(() => null)]);
    expect(exit, p.output).toEqual({ code: 0, signal: null });
    const out = p.output;
    expect(out).toMatch(/points\/s in \d+ {2}rows\/s out/);
    expect(out).toMatch(/scripted incident starts at \d\d:\d\d:\d\d/);
    for (const name of ['HighCpuUsage', 'AuthenticationFailures', 'HostNotReporting', 'KeyAccessAnomaly']) {
      expect(out, name).toMatch(new RegExp(`FIRING +${name} `));
      expect(out, name).toMatch(new RegExp(`RESOLVED +${name} `));
      expect(out, name).toMatch(new RegExp(`${name} +.* fired \\d\\d:\\d\\d:\\d\\d, resolved \\d\\d:\\d\\d:\\d\\d`));
    }
    const recap = out.slice(out.indexOf('Vigil demo recap'));
    expect(recap).toContain(`FROM ${env['VIGIL_CLICKHOUSE_DATABASE']}.alerts_dedup`);
    expect(recap).toContain(`FROM ${env['VIGIL_CLICKHOUSE_DATABASE']}.anomalies_dedup`);
    expect(recap).toContain(`kcat -b ${broker} -C -t ${alertsTopic} -e`);
    expect(recap).toContain(`${alertmanagerUrl}/#/alerts`);
    expect(recap).toContain(`:${p.port}/metrics`);
    // Each SQL line of the recap runs as printed and returns the demo's rows.
    for (const q of recap.matchAll(/--data-binary "([^"]+)"/g)) {
      const rs = await res.clickhouse().query({ query: q[1] as string, format: 'JSONEachRow' });
      expect((await rs.json()).length, q[1]).toBeGreaterThan(0);
    }
    // The per-run topics are gone.
    const left = (await admin.listTopics()).filter((t) => DEMO_TOPIC.test(t) && !topicsBefore.has(t));
    expect(left).toEqual([]);
  }, 300_000);
});
