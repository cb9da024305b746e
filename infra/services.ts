import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { VigilConfig } from '../core/config/index.js';
import { VigilError } from '../core/errors.js';
import type { ManagedProcess } from './process.js';
import { localTls } from './tls.js';

/** The SCRAM mechanisms of the local SASL_SSL listener: enabled, given a JAAS line, and a `vigil` user each. */
const SCRAM_MECHANISMS = ['SCRAM-SHA-512', 'SCRAM-SHA-256'];

/** ZooKeeper as Debian's `zookeeper` package installs it. */
const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';
const SLF4J_SIMPLE = '/usr/share/java/slf4j-simple.jar';

/** One local service: how to install it, how to start it, how to tell that it is ready. */
export interface Service {
  name: 'kafka' | 'clickhouse' | 'clickhouse-2' | 'zookeeper' | 'prometheus' | 'alertmanager';
  /** Loopback ports it listens on (for status and port-conflict messages). */
  ports: number[];
  proc: ManagedProcess;
  /** What is missing on this machine, as apt packages and other steps; empty when installed. */
  missing(): { apt: string[]; other: (() => void)[] };
  /** Writes config files and returns the command line. */
  prepare(): { command: string; args: string[] };
  ready(): Promise<boolean>;
}

export const APT_PACKAGES = {
  clickhouse: ['clickhouse-server', 'clickhouse-client'],
  prometheus: ['prometheus'],
  alertmanager: ['prometheus-alertmanager'],
  java: ['openjdk-17-jre-headless'],
  maven: ['maven'],
  zookeeper: ['zookeeper'],
  // Not a service: the independent Kafka client the tests and the benchmark baseline use.
  tools: ['kcat'],
} as const;

/**
 * A fresh KRaft cluster id: base64url of 16 random bytes, never starting with '-' (StorageTool
 * would read `-t -rV…` as an option and fail to format; Kafka's own Uuid.randomUuid() redraws such
 * ids too). One fresh machine in 64 drew one.
 */
export function kafkaClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

export function projectRoot(): string {
  // Compiled: dist/infra/services.js; from source (vitest): infra/services.ts.
  const here = new URL('.', import.meta.url).pathname;
  return here.includes('/dist/infra/') ? join(here, '..', '..') : join(here, '..');
}

function onPath(binary: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function hostPort(address: string, what: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!m) throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `${what} = ${JSON.stringify(address)}: expected host:port`);
  return { host: m[1] as string, port: Number(m[2]) };
}

async function httpOk(url: string, body?: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    return res.ok && (body === undefined || text.includes(body));
  } catch {
    return false;
  }
}

/** A ZooKeeper four-letter command's answer ('' when nothing answers). */
function fourLetter(port: number, command: string): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = createConnection({ port, host: '127.0.0.1' }, () => socket.end(command));
    socket.setTimeout(1000);
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.once('end', () => resolve(answer));
    socket.once('timeout', () => (socket.destroy(), resolve('')));
    socket.once('error', () => resolve(''));
  });
}

function proc(dir: string, name: string): ManagedProcess {
  return { pidFile: join(dir, `${name}.pid`), logFile: join(dir, 'logs', `${name}.log`), marker: dir };
}

/** Text for an XML element's content. */
const xmlText = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** Where the local stack's ClickHouse reads extra users from (`tenants.usersDir` when empty). */
export function localUsersDir(config: VigilConfig): string {
  return join(config.dataDir, 'clickhouse-users', 'users.d');
}

export function services(config: VigilConfig): Service[] {
  const dir = config.dataDir;
  const infra = config.infra;
  const broker = hostPort(config.kafka.brokers[0] ?? '', 'kafka.brokers[0]');
  const chUrl = new URL(config.clickhouse.url);
  const chHttpPort = Number(chUrl.port || (chUrl.protocol === 'https:' ? 443 : 80));

  const kafkaDir = join(dir, 'kafka');
  const kafkaLib = join(kafkaDir, 'lib');
  /** Present once the `vigil` SCRAM user is in the cluster metadata. */
  const scramMarker = join(kafkaDir, 'scram-user-added');
  const kafka: Service = {
    name: 'kafka',
    ports: [broker.port, infra.kafkaControllerPort, infra.kafkaSaslSslPort],
    proc: proc(dir, 'kafka'),
    missing() {
      // A JDK and Maven come from Debian when the machine lacks them; the jars from Maven Central.
      const apt = [...(onPath('java') ? [] : APT_PACKAGES.java), ...(onPath('mvn') ? [] : APT_PACKAGES.maven), ...(onPath('openssl') ? [] : ['openssl'])];
      const hasJars = existsSync(kafkaLib) && readdirSync(kafkaLib).some((f) => f.startsWith('kafka_2.13-'));
      const fetchJars = () =>
        execFileSync(
          'mvn',
          ['-q', '-B', '-f', join(projectRoot(), 'infra', 'kafka', 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${kafkaLib}`],
          { stdio: 'inherit' },
        );
      return { apt, other: hasJars ? [] : [fetchJars] };
    },
    prepare() {
      const logDirs = join(kafkaDir, 'data');
      mkdirSync(logDirs, { recursive: true });
      const tls = localTls(dir);
      const scramPassword = readFileSync(tls.scramPasswordFile, 'utf8');
      const props = join(kafkaDir, 'server.properties');
      writeFileSync(
        props,
        [
          '# Written by `vigil infra up`; single-node KRaft broker for local development and tests.',
          'process.roles=broker,controller',
          'node.id=1',
          `controller.quorum.voters=1@127.0.0.1:${infra.kafkaControllerPort}`,
          `listeners=PLAINTEXT://${broker.host}:${broker.port},CONTROLLER://127.0.0.1:${infra.kafkaControllerPort},SASL_SSL://127.0.0.1:${infra.kafkaSaslSslPort}`,
          `advertised.listeners=PLAINTEXT://${broker.host}:${broker.port},SASL_SSL://127.0.0.1:${infra.kafkaSaslSslPort}`,
          'controller.listener.names=CONTROLLER',
          'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL',
          // The secured listener: TLS from a PEM keystore, SCRAM users stored in the cluster
          // metadata (added when the storage is formatted), PLAIN from the JAAS line.
          `sasl.enabled.mechanisms=${[...SCRAM_MECHANISMS, 'PLAIN'].join(',')}`,
          'listener.name.sasl_ssl.ssl.keystore.type=PEM',
          `listener.name.sasl_ssl.ssl.keystore.location=${tls.keystoreFile}`,
          ...SCRAM_MECHANISMS.map((m) => `listener.name.sasl_ssl.${m.toLowerCase()}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`),
          `listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${tls.scramUser}="${scramPassword}";`,
          'inter.broker.listener.name=PLAINTEXT',
          `log.dirs=${logDirs}`,
          'num.partitions=1',
          'offsets.topic.replication.factor=1',
          'transaction.state.log.replication.factor=1',
          'transaction.state.log.min.isr=1',
          'group.initial.rebalance.delay.ms=0',
          'auto.create.topics.enable=true',
          'delete.topic.enable=true',
          '',
        ].join('\n'),
      );
      const log4j = join(kafkaDir, 'log4j.properties');
      writeFileSync(
        log4j,
        [
          'log4j.rootLogger=INFO, stdout',
          'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
          'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
          'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
          'log4j.logger.kafka=INFO',
          'log4j.logger.org.apache.kafka=INFO',
          '',
        ].join('\n'),
      );
      const classpath = `${kafkaLib}/*`;
      if (!existsSync(join(logDirs, 'meta.properties'))) {
        // KRaft storage is formatted once with a fresh cluster id.
        const clusterId = kafkaClusterId();
        const scram = SCRAM_MECHANISMS.flatMap((m) => ['--add-scram', `${m}=[name=${tls.scramUser},password=${scramPassword}]`]);
        execFileSync('java', ['-cp', classpath, `-Dlog4j.configuration=file:${log4j}`, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props, ...scram], {
          stdio: 'ignore',
        });
        writeFileSync(scramMarker, '');
      }
      return {
        command: 'java',
        args: [
          `-Xmx${infra.kafkaHeapMb}m`,
          `-Xms${Math.min(256, infra.kafkaHeapMb)}m`,
          '-XX:+UseG1GC',
          `-Dlog4j.configuration=file:${log4j}`,
          `-Dvigil.dataDir=${dir}`,
          '-cp',
          classpath,
          'kafka.Kafka',
          props,
        ],
      };
    },
    async ready() {
      const admin = new Kafka({
        clientId: 'vigil-infra',
        brokers: config.kafka.brokers as string[],
        logLevel: logLevel.NOTHING,
        retry: { retries: 0 },
        connectionTimeout: 1000,
      }).admin();
      try {
        await admin.connect();
        const cluster = await admin.describeCluster();
        const up = cluster.brokers.length > 0 && cluster.controller !== null;
        if (up && !existsSync(scramMarker)) {
          // Storage formatted before the SASL_SSL listener existed: add the SCRAM user once (one
          // mechanism per request, as the broker wants).
          const tls = localTls(dir);
          const password = readFileSync(tls.scramPasswordFile, 'utf8');
          for (const mechanism of SCRAM_MECHANISMS) {
            const args = ['-cp', `${kafkaLib}/*`, 'kafka.admin.ConfigCommand', '--bootstrap-server', config.kafka.brokers[0] as string, '--alter'];
            execFileSync('java', [...args, '--add-config', `${mechanism}=[password=${password}]`, '--entity-type', 'users', '--entity-name', tls.scramUser], { stdio: 'ignore' });
          }
          writeFileSync(scramMarker, '');
        }
        return up;
      } catch {
        return false;
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },
  };

  const replicas = infra.clickhouseReplicas;
  const clusterName = config.clickhouse.cluster || 'vigil';
  /** ClickHouse server `k` (0: the configured ports; replica k listens on each port plus k). */
  const clickhouseServer = (k: number): Service => {
    const name = k === 0 ? 'clickhouse' : 'clickhouse-2';
    const chDir = join(dir, k === 0 ? 'clickhouse' : `clickhouse-${k + 1}`);
    const ports = { http: chHttpPort + k, tcp: infra.clickhouseTcpPort + k, interserver: infra.clickhouseInterserverPort + k, https: infra.clickhouseHttpsPort + k };
    return {
      name,
      ports: [ports.http, ports.tcp, ports.interserver, ports.https],
      proc: proc(dir, name),
      missing: () => ({ apt: onPath('clickhouse-server') ? [] : [...APT_PACKAGES.clickhouse], other: [] }),
      prepare() {
        mkdirSync(join(chDir, 'tmp'), { recursive: true });
        mkdirSync(join(chDir, 'user_files'), { recursive: true });
        const tls = localTls(dir);
        const logName = k === 0 ? 'clickhouse-server' : `clickhouse-${k + 1}-server`;
        return {
          command: 'clickhouse-server',
          args: [
            `--config-file=${serverConfig(chDir, k)}`,
            '--',
            `--path=${chDir}/`,
            `--tmp_path=${chDir}/tmp/`,
            `--user_files_path=${chDir}/user_files/`,
            `--users_config=${usersConfig()}`,
            `--logger.log=${join(dir, 'logs', `${logName}.log`)}`,
            `--logger.errorlog=${join(dir, 'logs', `${logName}.err.log`)}`,
            `--http_port=${ports.http}`,
            `--tcp_port=${ports.tcp}`,
            `--interserver_http_port=${ports.interserver}`,
            `--interserver_http_host=${chUrl.hostname}`,
            `--listen_host=${chUrl.hostname}`,
            // HTTPS beside HTTP, for the secured path: the local CA's server certificate, and a
            // client certificate signed by that CA required (strict), so mutual TLS is what runs.
            // No DH parameters file: the ECDHE suites need none (an empty path skips it).
            `--https_port=${ports.https}`,
            `--openSSL.server.certificateFile=${tls.certFile}`,
            `--openSSL.server.privateKeyFile=${tls.keyFile}`,
            '--openSSL.server.dhParamsFile=',
            '--openSSL.server.verificationMode=strict',
            `--openSSL.server.caConfig=${tls.caFile}`,
            '--openSSL.server.loadDefaultCAFile=false',
          ],
        };
      },
      ready: () => httpOk(k === 0 ? new URL('/ping', config.clickhouse.url).href : `${chUrl.protocol}//${chUrl.hostname}:${ports.http}/ping`, 'Ok.'),
    };
  };

  /**
   * The packaged config.xml with the local stack's sections filled in, written beside the
   * server's data: `tenants.readCluster` in `remote_servers` (the local servers, with Vigil's
   * credentials: what the tenant databases of `vigil tenants sync` read through), and with
   * replicas the cluster itself (its empty `zookeeper` and `macros` placeholders replaced, the
   * cluster added beside the packaged test clusters).
   */
  const serverConfig = (chDir: string, k: number): string => {
    const replicasXml = Array.from({ length: replicas }, (_, i) => `<replica><host>${chUrl.hostname}</host><port>${infra.clickhouseTcpPort + i}</port></replica>`).join('');
    const credentials = `<user>${xmlText(config.clickhouse.username)}</user><password>${xmlText(config.clickhouse.password)}</password>`;
    const tenantReplicas = Array.from({ length: replicas }, (_, i) => `<replica><host>${chUrl.hostname}</host><port>${infra.clickhouseTcpPort + i}</port>${credentials}</replica>`).join('');
    const tenantCluster = `<${config.tenants.readCluster}><shard><internal_replication>true</internal_replication>${tenantReplicas}</shard></${config.tenants.readCluster}>`;
    const edits: [RegExp, string][] =
      replicas > 1
        ? [
            [/<remote_servers[^>]*>/, `<remote_servers>${tenantCluster}<${clusterName}><shard><internal_replication>true</internal_replication>${replicasXml}</shard></${clusterName}>`],
            [/<zookeeper[^>]*\/>/, `<zookeeper><node><host>127.0.0.1</host><port>${infra.zookeeperPort}</port></node></zookeeper>`],
            [/<macros[^>]*\/>/, `<macros><shard>1</shard><replica>r${k + 1}</replica></macros>`],
          ]
        : [[/<remote_servers[^>]*>/, `<remote_servers>${tenantCluster}`]];
    let xml = readFileSync('/etc/clickhouse-server/config.xml', 'utf8');
    for (const [re, replacement] of edits) {
      if (!re.test(xml)) throw new VigilError('VIGIL_ERR_INFRA_START', `/etc/clickhouse-server/config.xml has no ${re.source}: not the 18.16 package layout the server config is written from`);
      xml = xml.replace(re, replacement);
    }
    const file = join(chDir, 'config.xml');
    writeFileSync(file, xml);
    return file;
  };

  /**
   * The packaged users.xml, copied where Vigil may write beside it: `vigil tenants sync` writes a
   * file per tenant user into the `users.d` directory next to it (`tenants.usersDir`), which the
   * server merges in and re-reads while running. One for every local replica.
   */
  const usersConfig = (): string => {
    const usersD = localUsersDir(config);
    mkdirSync(usersD, { recursive: true });
    const file = join(dirname(usersD), 'users.xml');
    writeFileSync(file, readFileSync('/etc/clickhouse-server/users.xml', 'utf8'));
    return file;
  };

  const zkDir = join(dir, 'zookeeper');
  const zookeeper: Service = {
    name: 'zookeeper',
    ports: [infra.zookeeperPort],
    proc: proc(dir, 'zookeeper'),
    missing: () => ({ apt: [...(existsSync(ZOOKEEPER_JAR) ? [] : APT_PACKAGES.zookeeper), ...(onPath('java') ? [] : APT_PACKAGES.java)], other: [] }),
    prepare() {
      mkdirSync(join(zkDir, 'data'), { recursive: true });
      const file = join(zkDir, 'zoo.cfg');
      writeFileSync(
        file,
        ['# Written by `vigil infra up`: one standalone ZooKeeper for the local ClickHouse replicas.', 'tickTime=2000', `dataDir=${join(zkDir, 'data')}`, `clientPort=${infra.zookeeperPort}`, 'clientPortAddress=127.0.0.1', 'admin.enableServer=false', '4lw.commands.whitelist=srvr', ''].join('\n'),
      );
      // Debian's zookeeper.jar names its dependencies in its manifest; slf4j-simple (when present) gives it a log.
      const classpath = [ZOOKEEPER_JAR, ...(existsSync(SLF4J_SIMPLE) ? [SLF4J_SIMPLE] : [])].join(':');
      return { command: 'java', args: ['-Xmx256m', '-cp', classpath, 'org.apache.zookeeper.server.quorum.QuorumPeerMain', file] };
    },
    // `srvr`, not `ruok`: ruok answers while the snapshot still loads, and a ClickHouse 18.16 whose
    // DDL worker connects then keeps no session and crashes on the first ON CLUSTER statement.
    ready: () => fourLetter(infra.zookeeperPort, 'srvr').then((answer) => /^Mode: /m.test(answer)),
  };

  const cluster = replicas > 1 ? [zookeeper, clickhouseServer(0), clickhouseServer(1)] : [clickhouseServer(0)];

  const promDir = join(dir, 'prometheus');
  const prometheus: Service = {
    name: 'prometheus',
    ports: [infra.prometheusPort],
    proc: proc(dir, 'prometheus'),
    missing: () => ({ apt: onPath('prometheus') ? [] : [...APT_PACKAGES.prometheus], other: [] }),
    prepare() {
      mkdirSync(join(promDir, 'data'), { recursive: true });
      const file = join(promDir, 'prometheus.yml');
      writeFileSync(
        file,
        [
          '# Written by `vigil infra up`: scrapes Vigil\'s /metrics and sends alerts to the local Alertmanager.',
          'global:',
          '  scrape_interval: 5s',
          '  evaluation_interval: 5s',
          'alerting:',
          '  alertmanagers:',
          '    - static_configs:',
          `        - targets: ['127.0.0.1:${infra.alertmanagerPort}']`,
          'scrape_configs:',
          '  - job_name: vigil',
          '    static_configs:',
          `      - targets: ['${config.http.host}:${config.http.port}']`,
          '',
        ].join('\n'),
      );
      return {
        command: 'prometheus',
        args: [
          `--config.file=${file}`,
          `--storage.tsdb.path=${join(promDir, 'data')}`,
          `--web.listen-address=127.0.0.1:${infra.prometheusPort}`,
          '--web.enable-lifecycle',
        ],
      };
    },
    ready: () => httpOk(`http://127.0.0.1:${infra.prometheusPort}/-/ready`),
  };

  const amDir = join(dir, 'alertmanager');
  const alertmanager: Service = {
    name: 'alertmanager',
    ports: [infra.alertmanagerPort],
    proc: proc(dir, 'alertmanager'),
    missing: () => ({ apt: onPath('prometheus-alertmanager') ? [] : [...APT_PACKAGES.alertmanager], other: [] }),
    prepare() {
      mkdirSync(join(amDir, 'data'), { recursive: true });
      const file = join(amDir, 'alertmanager.yml');
      writeFileSync(
        file,
        [
          '# Written by `vigil infra up`. Add receivers (email, Slack, PagerDuty) here for a real deployment.',
          'route:',
          '  receiver: vigil-default',
          "  group_by: ['alertname', 'rule_id', 'severity']",
          '  group_wait: 1s',
          '  group_interval: 5s',
          '  repeat_interval: 1h',
          'receivers:',
          '  - name: vigil-default',
          '',
        ].join('\n'),
      );
      return {
        command: 'prometheus-alertmanager',
        args: [
          `--config.file=${file}`,
          `--storage.path=${join(amDir, 'data')}`,
          `--web.listen-address=127.0.0.1:${infra.alertmanagerPort}`,
          // A single instance: no gossip port, so nothing else on the machine is touched.
          '--cluster.listen-address=',
        ],
      };
    },
    ready: () => httpOk(`http://127.0.0.1:${infra.alertmanagerPort}/-/ready`),
  };

  return [...cluster, kafka, prometheus, alertmanager];
}

/** Tools from Debian: kcat; with `tests`, also ZooKeeper for the tests' two-replica ClickHouse cluster. */
export function toolsMissing(tests = false): string[] {
  return [...(onPath('kcat') ? [] : APT_PACKAGES.tools), ...(tests && !existsSync(ZOOKEEPER_JAR) ? APT_PACKAGES.zookeeper : [])];
}

/**
 * The Python test tools (PyPI) in `<dataDir>/venv`: chdb (ClickHouse 25+ in-process), against
 * which the tests check the DDL Vigil gives newer servers and the series-id function, and
 * scikit-learn, the parity reference of the isolation forest (models/iforest.ts).
 */
const PYTHON_TOOLS = [
  { module: 'chdb', package: 'chdb' },
  { module: 'sklearn', package: 'scikit-learn' },
];

export function venvPython(config: VigilConfig): string {
  return join(config.dataDir, 'venv', 'bin', 'python');
}

export function installPythonTools(config: VigilConfig): void {
  const python = venvPython(config);
  const missing = PYTHON_TOOLS.filter(({ module }) => {
    try {
      execFileSync(python, ['-c', `import ${module}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  const venv = join(config.dataDir, 'venv');
  const packages = missing.map((t) => t.package);
  try {
    if (!existsSync(python)) execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    execFileSync(join(venv, 'bin', 'pip'), ['install', '-q', ...packages], { stdio: 'inherit' });
  } catch (err) {
    throw new VigilError('VIGIL_ERR_INFRA_INSTALL', `${packages.join(', ')}: pip install into ${venv} failed (needs python3-venv and PyPI)`, { cause: err });
  }
}
