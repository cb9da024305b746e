import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { envName, leaves } from '../../core/config/schema.js';
import { CONFIG_FILE_ENV, loadConfig, usesLocalStack } from '../../core/config/index.js';
import { createMetrics } from '../../pipeline/metrics.js';

/**
 * docker-compose.yml cannot be run where the tests run (no Docker engine), so this keeps it
 * consistent with what Vigil actually is: its options and defaults come from the config schema,
 * its metric names from the metrics registry, its files from the repository.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));

type EnvMap = Record<string, string | number | boolean | null>;
type PortSpec = string | number | { target: number | string; published?: number | string; host_ip?: string };
type VolumeSpec = string | { type?: string; source?: string; target: string; read_only?: boolean };

interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  environment?: EnvMap | string[];
  ports?: PortSpec[];
  volumes?: VolumeSpec[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[] };
  stop_grace_period?: string;
}

interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parseYaml(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as Compose;

function readYaml<T>(repoPath: string): T {
  return parseYaml(readFileSync(join(root, repoPath), 'utf8')) as T;
}

function service(name: string): ComposeService {
  const svc = compose.services[name];
  if (!svc) throw new Error(`docker-compose.yml has no service ${name}`);
  return svc;
}

function env(name: string): Record<string, string> {
  const e = service(name).environment ?? {};
  if (Array.isArray(e)) {
    return Object.fromEntries(e.map((kv) => [kv.slice(0, kv.includes('=') ? kv.indexOf('=') : kv.length), kv.includes('=') ? kv.slice(kv.indexOf('=') + 1) : '']));
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

function envVar(svc: string, key: string): string {
  const value = env(svc)[key];
  if (value === undefined) throw new Error(`service ${svc} does not set ${key}`);
  return value;
}

interface Port {
  hostIp: string | undefined;
  published: number | undefined;
  target: number;
}

/** Short syntax `[IP:][HOST:]CONTAINER[/PROTO]` or the long syntax. */
function parsePort(spec: PortSpec): Port {
  if (typeof spec === 'number') return { hostIp: undefined, published: undefined, target: spec };
  if (typeof spec === 'object') {
    return { hostIp: spec.host_ip, published: spec.published === undefined ? undefined : Number(spec.published), target: Number(spec.target) };
  }
  const parts = spec.replace(/\/(tcp|udp)$/, '').split(':');
  const target = Number(parts.pop());
  const published = parts.length > 0 ? Number(parts.pop()) : undefined;
  return { hostIp: parts.length > 0 ? parts.join(':') : undefined, published, target };
}

function ports(svc: string): Port[] {
  return (service(svc).ports ?? []).map(parsePort);
}

/** The host port that publishes `target` of a service. */
function publishedPort(svc: string, target: number): number | undefined {
  return ports(svc).find((p) => p.target === target)?.published;
}

function volumes(svc: string): { source: string | undefined; target: string }[] {
  return (service(svc).volumes ?? []).map((v) => {
    if (typeof v === 'object') return { source: v.source, target: v.target };
    const [source, target] = v.split(':');
    return target === undefined ? { source: undefined, target: source as string } : { source, target };
  });
}

/** The container path a repository path (`./…`) is mounted at, in a service. */
function mountTarget(svc: string, repoPath: string): string {
  const v = volumes(svc).find((m) => m.source !== undefined && posix.normalize(m.source) === posix.normalize(repoPath));
  if (!v) throw new Error(`service ${svc} does not mount ${repoPath}`);
  return v.target;
}

/** The repository path behind a container path of a service, through its bind mounts. */
function repoPathOf(svc: string, containerPath: string): string | undefined {
  for (const m of volumes(svc)) {
    if (!m.source?.startsWith('./')) continue;
    if (containerPath === m.target) return m.source;
    if (containerPath.startsWith(`${m.target}/`)) return posix.join(m.source, containerPath.slice(m.target.length + 1));
  }
  return undefined;
}

const schemaDefaults = new Map<string, unknown>(leaves().map(({ path, leaf }) => [path, leaf.default]));

function schemaDefault(path: string): unknown {
  if (!schemaDefaults.has(path)) throw new Error(`${path} is not a Vigil option`);
  return schemaDefaults.get(path);
}

function hostPortOf(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!m) throw new Error(`expected host:port, got ${JSON.stringify(address)}`);
  return { host: m[1] as string, port: Number(m[2]) };
}

function urlPort(url: string): number {
  const u = new URL(url);
  return Number(u.port || (u.protocol === 'https:' ? 443 : 80));
}

/** `NAME://host:port,…` as in KAFKA_LISTENERS / KAFKA_ADVERTISED_LISTENERS (host may be empty). */
function listeners(value: string): { name: string; host: string; port: number }[] {
  return value.split(',').map((s) => {
    const m = /^([A-Za-z0-9_-]+):\/\/(.*):(\d+)$/.exec(s.trim());
    if (!m) throw new Error(`bad listener ${JSON.stringify(s)}`);
    return { name: m[1] as string, host: m[2] as string, port: Number(m[3]) };
  });
}

/** Compose durations: `1m30s`, `40s`, `500ms`. */
function durationMs(text: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 };
  let total = 0;
  const rest = text.replace(/(\d+(?:\.\d+)?)(ms|us|h|m|s)/g, (_all, n: string, unit: string) => {
    total += Number(n) * (units[unit] ?? NaN);
    return '';
  });
  if (rest !== '' || !Number.isFinite(total)) throw new Error(`bad duration ${JSON.stringify(text)}`);
  return total;
}

const PROMQL_WORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** Metric names a PromQL expression selects (functions, labels, grouping and durations removed). */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\boffset\s+-?[\w.]+/g, '');
  const names = bare.match(/(?<![\w$.:])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()/g) ?? [];
  return [...new Set(names.filter((n) => !PROMQL_WORDS.has(n.toLowerCase())))];
}

/** Every series name Vigil's registry exports, histogram series included. */
async function exportedMetricNames(): Promise<Set<string>> {
  const { registry } = createMetrics();
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    const type = String(m.type);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

interface DashboardPanel {
  type?: string;
  datasource?: { type?: string; uid?: string } | null;
  targets?: { expr?: string; datasource?: { uid?: string } | null }[];
  panels?: DashboardPanel[];
}

interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels?: DashboardPanel[];
}

function allPanels(panels: DashboardPanel[] = []): DashboardPanel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels)]);
}

interface Datasource {
  uid?: string;
  type?: string;
  url?: string;
  jsonData?: Record<string, unknown>;
}

const DATASOURCES_DIR = 'infra/docker/grafana/provisioning/datasources';
const DASHBOARD_PROVIDERS_DIR = 'infra/docker/grafana/provisioning/dashboards';

function yamlFiles(dir: string): string[] {
  const files = existsSync(join(root, dir)) ? readdirSync(join(root, dir)).sort() : [];
  return files.filter((f) => /\.ya?ml$/.test(f)).map((f) => posix.join(dir, f));
}

function provisionedDatasources(): Datasource[] {
  return yamlFiles(DATASOURCES_DIR).flatMap((f) => readYaml<{ datasources?: Datasource[] }>(f).datasources ?? []);
}

function datasource(uid: string): Datasource {
  const ds = provisionedDatasources().find((d) => d.uid === uid);
  if (!ds) throw new Error(`no provisioned Grafana datasource with uid ${uid}`);
  return ds;
}

describe('docker-compose.yml', () => {
  it('has the six services of the Docker stack, each image pinned to a tag', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['alertmanager', 'clickhouse', 'grafana', 'kafka', 'prometheus', 'vigil']);
    for (const [name, svc] of Object.entries(compose.services)) {
      if (svc.build !== undefined) continue; // built here, not pulled
      expect(svc.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(svc.image, name).not.toMatch(/:latest$/);
    }
  });

  it('sets only real Vigil options on the vigil service, and they pass Vigil’s own validation', () => {
    const vigilEnv = env('vigil');
    const options = new Set(leaves().filter(({ leaf }) => leaf.type !== 'object').map(({ path }) => envName(path)));
    const vigilKeys = Object.keys(vigilEnv).filter((k) => k.startsWith('VIGIL_'));
    expect(vigilKeys.length).toBeGreaterThan(0);
    for (const key of vigilKeys) {
      if (key !== CONFIG_FILE_ENV) expect(options, `${key} is not a Vigil option`).toContain(key);
    }
    expect(vigilEnv[envName('infra.mode')]).toBe('off');

    const config = loadConfig({ env: vigilEnv, cwd: '/app' });
    expect(config.infra.mode).toBe('off');
    expect(usesLocalStack(config)).toBe(false);
    // Inside a container, only a non-loopback listen address is reachable by Prometheus.
    expect(config.http.host).toBe('0.0.0.0');
  });

  it('publishes the ports of the schema defaults, as the native local stack uses them', () => {
    const broker = hostPortOf(((schemaDefault('kafka.brokers') as string[])[0]) ?? '');
    const kafkaPorts = ports('kafka');
    expect(kafkaPorts).toHaveLength(1);
    expect(kafkaPorts[0]?.published).toBe(broker.port);

    const chHttp = urlPort(schemaDefault('clickhouse.url') as string);
    const vigilChUrl = envVar('vigil', envName('clickhouse.url'));
    expect(publishedPort('clickhouse', urlPort(vigilChUrl))).toBe(chHttp);
    const chTcp = schemaDefault('infra.clickhouseTcpPort') as number;
    expect(ports('clickhouse').find((p) => p.published === chTcp), 'native TCP port').toBeDefined();

    const httpPort = schemaDefault('http.port') as number;
    expect(Number(envVar('vigil', envName('http.port')))).toBe(httpPort);
    expect(publishedPort('vigil', httpPort)).toBe(httpPort);

    const promPort = schemaDefault('infra.prometheusPort') as number;
    expect(ports('prometheus').map((p) => p.published)).toEqual([promPort]);
    const amPort = schemaDefault('infra.alertmanagerPort') as number;
    expect(ports('alertmanager').map((p) => p.published)).toEqual([amPort]);

    // A ClickHouse with a passwordless `default` user must not be reachable from other hosts.
    for (const name of Object.keys(compose.services)) {
      for (const p of ports(name)) expect(p.hostIp, `${name} publishes ${p.published} beyond loopback`).toBe('127.0.0.1');
    }
  });

  it('points Vigil at a Kafka listener the broker advertises to containers', () => {
    const advertised = listeners(envVar('kafka', 'KAFKA_ADVERTISED_LISTENERS'));
    const bound = listeners(envVar('kafka', 'KAFKA_LISTENERS'));
    const brokers = envVar('vigil', envName('kafka.brokers')).split(',').map((s) => hostPortOf(s.trim()));
    expect(brokers.length).toBeGreaterThan(0);
    for (const b of brokers) {
      expect(b.host).toBe('kafka');
      const listener = advertised.find((l) => l.host === b.host && l.port === b.port);
      expect(listener, `KAFKA_ADVERTISED_LISTENERS has no ${b.host}:${b.port}`).toBeDefined();
      expect(bound.find((l) => l.name === listener?.name)?.port, 'advertised port is the bound port').toBe(b.port);
    }
  });

  it('advertises the published Kafka port to host clients, with a consistent KRaft setup', () => {
    const advertised = listeners(envVar('kafka', 'KAFKA_ADVERTISED_LISTENERS'));
    const bound = listeners(envVar('kafka', 'KAFKA_LISTENERS'));
    const published = ports('kafka')[0];
    // Host clients bootstrap through the published port and are then sent to the advertised address.
    const hostListener = advertised.find((l) => l.host === 'localhost' || l.host === '127.0.0.1');
    expect(hostListener?.port).toBe(published?.published);
    expect(bound.find((l) => l.name === hostListener?.name)?.port).toBe(published?.target);

    const protocols = new Set(envVar('kafka', 'KAFKA_LISTENER_SECURITY_PROTOCOL_MAP').split(',').map((kv) => kv.split(':')[0]));
    for (const l of bound) expect(protocols, `no security protocol for ${l.name}`).toContain(l.name);
    const names = new Set(bound.map((l) => l.name));
    expect(names).toContain(envVar('kafka', 'KAFKA_INTER_BROKER_LISTENER_NAME'));
    const controllerName = envVar('kafka', 'KAFKA_CONTROLLER_LISTENER_NAMES');
    expect(names).toContain(controllerName);
    expect(advertised.map((l) => l.name)).not.toContain(controllerName);

    const voters = envVar('kafka', 'KAFKA_CONTROLLER_QUORUM_VOTERS').split(',');
    expect(voters).toHaveLength(1);
    const [nodeId, address] = (voters[0] ?? '').split('@');
    expect(nodeId).toBe(envVar('kafka', 'KAFKA_NODE_ID'));
    const voter = hostPortOf(address ?? '');
    expect(voter.port).toBe(bound.find((l) => l.name === controllerName)?.port);
    expect(voter.port).toBe(schemaDefault('infra.kafkaControllerPort'));
    expect(envVar('kafka', 'KAFKA_PROCESS_ROLES').split(',').sort()).toEqual(['broker', 'controller']);
  });

  it('points Vigil at the clickhouse service, with the user Vigil uses by default', () => {
    const url = new URL(envVar('vigil', envName('clickhouse.url')));
    expect(url.hostname).toBe('clickhouse');
    expect(compose.services).toHaveProperty(url.hostname);
    expect(schemaDefault('clickhouse.username')).toBe('default');
    expect(schemaDefault('clickhouse.password')).toBe('');
    // The image only lets a passwordless `default` in over the network with this switch.
    expect(envVar('clickhouse', 'CLICKHOUSE_SKIP_USER_SETUP')).toBe('1');
  });

  it('starts Vigil only once Kafka and ClickHouse are healthy, and lets it drain on stop', () => {
    const deps = service('vigil').depends_on;
    expect(deps).not.toBeInstanceOf(Array);
    for (const dep of ['kafka', 'clickhouse']) {
      expect((deps as Record<string, { condition?: string }>)[dep]?.condition, dep).toBe('service_healthy');
      expect(service(dep).healthcheck?.test, `${dep} has a healthcheck`).toBeDefined();
    }
    const grace = service('vigil').stop_grace_period;
    expect(grace).toBeDefined();
    expect(durationMs(grace ?? '')).toBeGreaterThan(schemaDefault('pipeline.shutdownTimeoutMs') as number);
    const health = [service('vigil').healthcheck?.test ?? []].flat().join(' ');
    expect(health).toContain(`:${envVar('vigil', envName('http.port'))}/healthz`);
  });

  it('mounts only files that exist in the repository', () => {
    let mounts = 0;
    for (const name of Object.keys(compose.services)) {
      for (const v of volumes(name)) {
        if (v.source?.startsWith('./')) {
          mounts++;
          expect(existsSync(join(root, v.source)), `${name} mounts missing ${v.source}`).toBe(true);
        } else if (v.source !== undefined && !v.source.startsWith('/')) {
          expect(compose.volumes ?? {}, `${name} uses undeclared volume ${v.source}`).toHaveProperty(v.source);
        }
      }
    }
    expect(mounts).toBeGreaterThan(0);
  });

  it('builds Vigil from the repository with a Dockerfile that runs its CLI', () => {
    const build = service('vigil').build;
    expect(typeof build).toBe('object');
    const { context = '.', dockerfile = 'Dockerfile' } = build as { context?: string; dockerfile?: string };
    expect(posix.normalize(context)).toBe('.');
    const dockerfilePath = join(root, context, dockerfile);
    expect(existsSync(dockerfilePath)).toBe(true);

    const text = readFileSync(dockerfilePath, 'utf8');
    const instr = (name: string): string[] => [...text.matchAll(new RegExp(`^${name}\\s+(.+)$`, 'gm'))].map((m) => (m[1] as string).trim());
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>; engines: { node: string } };
    const minNode = Number(/\d+/.exec(pkg.engines.node)?.[0]);
    for (const from of instr('FROM')) {
      const major = Number(/^node:(\d+)/.exec(from)?.[1]);
      expect(major, from).toBeGreaterThanOrEqual(minNode);
    }
    const entrypoint = JSON.parse(instr('ENTRYPOINT').at(-1) ?? '[]') as string[];
    expect(entrypoint).toEqual(['node', pkg.bin['vigil']]);
    const cmd = JSON.parse(instr('CMD').at(-1) ?? '[]') as string[];
    expect(cmd.length).toBeGreaterThan(0);
    // The default command must be one the CLI dispatches on.
    const cli = readFileSync(join(root, 'cli', 'index.ts'), 'utf8');
    expect(cli).toContain(`case '${cmd[0]}':`);
  });
});

describe('Prometheus and Alertmanager config (infra/docker)', () => {
  interface PromConfig {
    alerting?: { alertmanagers?: { static_configs?: { targets?: string[] }[] }[] };
    rule_files?: string[];
    scrape_configs?: { job_name: string; static_configs?: { targets?: string[] }[] }[];
  }
  const promFile = './infra/docker/prometheus.yml';
  const prom = readYaml<PromConfig>(promFile);

  it('is the file the prometheus service mounts', () => {
    expect(mountTarget('prometheus', promFile)).toMatch(/prometheus\.yml$/);
  });

  it('scrapes the vigil service at VIGIL_HTTP_PORT', () => {
    const targets = (prom.scrape_configs ?? []).flatMap((s) => (s.static_configs ?? []).flatMap((c) => c.targets ?? []));
    expect(targets).toContain(`vigil:${envVar('vigil', envName('http.port'))}`);
  });

  it('sends alerts to the alertmanager service', () => {
    const targets = (prom.alerting?.alertmanagers ?? []).flatMap((a) => (a.static_configs ?? []).flatMap((c) => c.targets ?? []));
    const amPort = ports('alertmanager')[0]?.target;
    expect(targets).toEqual([`alertmanager:${amPort}`]);
  });

  it('loads rule files that are mounted, whose expressions use metrics Vigil exports', async () => {
    const exported = await exportedMetricNames();
    exported.add('up'); // Prometheus' own per-target series
    for (const file of prom.rule_files ?? []) {
      const repoPath = repoPathOf('prometheus', file);
      expect(repoPath, `${file} is not mounted from the repository`).toBeDefined();
      const rules = readYaml<{ groups: { rules: { expr: string }[] }[] }>(repoPath ?? '');
      const exprs = rules.groups.flatMap((g) => g.rules.map((r) => r.expr));
      expect(exprs.length).toBeGreaterThan(0);
      for (const expr of exprs) {
        for (const name of metricNames(expr)) expect(exported, `${expr} uses ${name}`).toContain(name);
      }
    }
  });

  it('routes Alertmanager alerts by alertname, rule_id and severity to a default receiver', () => {
    const amFile = './infra/docker/alertmanager.yml';
    expect(mountTarget('alertmanager', amFile)).toMatch(/alertmanager\.yml$/);
    const am = readYaml<{ route: { receiver: string; group_by: string[] }; receivers: { name: string }[] }>(amFile);
    expect(am.route.group_by).toEqual(['alertname', 'rule_id', 'severity']);
    expect(am.receivers.map((r) => r.name)).toContain(am.route.receiver);
  });
});

describe('Grafana provisioning and the starter dashboard (infra/docker/grafana)', () => {
  it('mounts the provisioning folder', () => {
    expect(mountTarget('grafana', './infra/docker/grafana/provisioning')).toBe('/etc/grafana/provisioning');
    expect(envVar('grafana', 'GF_INSTALL_PLUGINS').split(',')).toContain(datasource('clickhouse').type);
  });

  it('provisions the Prometheus and ClickHouse data sources at their compose services', () => {
    const uids = provisionedDatasources().map((d) => d.uid);
    expect(uids).toContain('prometheus');
    expect(uids).toContain('clickhouse');
    expect(new Set(uids).size).toBe(uids.length);

    const prom = new URL(datasource('prometheus').url ?? '');
    expect(prom.hostname).toBe('prometheus');
    expect(Number(prom.port)).toBe(ports('prometheus')[0]?.target);

    const ch = datasource('clickhouse');
    expect(ch.type).toBe('grafana-clickhouse-datasource');
    expect(ch.jsonData?.['host']).toBe('clickhouse');
    expect(ch.jsonData?.['protocol']).toBe('native');
    expect(ports('clickhouse').map((p) => p.target)).toContain(ch.jsonData?.['port']);
    expect(ch.jsonData?.['defaultDatabase']).toBe(schemaDefault('clickhouse.database'));
    expect(ch.jsonData?.['username']).toBe(schemaDefault('clickhouse.username'));
  });

  it('has a dashboards provider reading the mounted dashboards folder', () => {
    const dashboardsMount = mountTarget('grafana', './infra/docker/grafana/dashboards');
    const providers = yamlFiles(DASHBOARD_PROVIDERS_DIR).flatMap(
      (f) => readYaml<{ providers?: { type?: string; options?: { path?: string } }[] }>(f).providers ?? [],
    );
    expect(providers.map((p) => p.options?.path)).toContain(dashboardsMount);
    const home = env('grafana')['GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH'];
    if (home !== undefined) expect(existsSync(join(root, repoPathOf('grafana', home) ?? '/nonexistent'))).toBe(true);
  });

  const dashboardFile = 'infra/docker/grafana/dashboards/vigil-self.json';

  it('parses, with its uid and title', () => {
    const d = JSON.parse(readFileSync(join(root, dashboardFile), 'utf8')) as Dashboard;
    expect(d.uid).toBe('vigil-self');
    expect(d.title).toBe('Vigil — pipeline health');
    expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(allPanels(d.panels).length).toBeGreaterThan(0);
  });

  it('references only provisioned data sources', () => {
    const d = JSON.parse(readFileSync(join(root, dashboardFile), 'utf8')) as Dashboard;
    const uids = new Set(provisionedDatasources().map((ds) => ds.uid));
    const referenced = allPanels(d.panels).flatMap((p) => [p.datasource?.uid, ...(p.targets ?? []).map((t) => t.datasource?.uid)]);
    const used = referenced.filter((u): u is string => u !== undefined);
    expect(used.length).toBeGreaterThan(0);
    for (const uid of used) expect(uids, `datasource uid ${uid}`).toContain(uid);
  });

  it('queries only metrics that Vigil exports', async () => {
    const d = JSON.parse(readFileSync(join(root, dashboardFile), 'utf8')) as Dashboard;
    const exported = await exportedMetricNames();
    const exprs = allPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
    const names = exprs.flatMap(metricNames);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) {
      expect(name).toMatch(/^vigil_/);
      expect(exported, `the dashboard queries ${name}, which Vigil does not export`).toContain(name);
    }
  });
});

describe('metricNames (the PromQL reading the checks above rely on)', () => {
  it('finds selected metrics, not functions, labels, grouping or durations', () => {
    expect(
      metricNames('histogram_quantile(0.99, sum by (table, le) (rate(vigil_insert_duration_seconds_bucket{table="x"}[$__rate_interval])))'),
    ).toEqual(['vigil_insert_duration_seconds_bucket']);
    expect(metricNames('sum(rate(a_total[5m] offset 1h)) / on (job) group_left(x) b > bool 0 unless c')).toEqual(['a_total', 'b', 'c']);
    expect(metricNames('up{job="vigil"} == 0')).toEqual(['up']);
  });
});
