import { execFileSync } from 'node:child_process';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VigilConfig } from '../core/config/index.js';
import { VigilError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { isAlive, runningPid, spawnDetached, stop } from './process.js';
import { installPythonTools, services, toolsMissing, type Service } from './services.js';

export { venvPython } from './services.js';

export { localUsersDir, projectRoot } from './services.js';

export type ServiceName = Service['name'];

export interface ServiceStatus {
  name: ServiceName;
  state: 'running' | 'stopped' | 'not installed';
  pid?: number;
  ports: number[];
  log: string;
}

/**
 * Installs what is missing (apt packages as root, Kafka jars with Maven); starts nothing. With
 * `testTools`, also chdb in a venv under the data dir (what `vigil infra install` and CI do).
 */
export function install(config: VigilConfig, log: Logger, only?: readonly ServiceName[], options: { testTools?: boolean } = {}): void {
  const all = services(config)
    .filter((s) => !only || only.includes(s.name))
    .map((s) => ({ s, m: s.missing() }));
  const apt = [...new Set([...all.flatMap(({ m }) => m.apt), ...toolsMissing(options.testTools === true)])];
  if (apt.length > 0) {
    if (process.getuid?.() !== 0) {
      throw new VigilError('VIGIL_ERR_INFRA_INSTALL', `missing Debian packages; run as root: apt-get update && apt-get install -y ${apt.join(' ')}`);
    }
    log.info({ packages: apt }, 'installing Debian packages');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
      execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...apt], { stdio: 'inherit', env });
    } catch (err) {
      throw new VigilError('VIGIL_ERR_INFRA_INSTALL', `apt-get install ${apt.join(' ')} failed`, { cause: err });
    }
  }
  for (const { s, m } of all) {
    for (const step of m.other) {
      log.info({ service: s.name }, 'installing');
      try {
        step();
      } catch (err) {
        if (err instanceof VigilError) throw err;
        throw new VigilError('VIGIL_ERR_INFRA_INSTALL', `${s.name}: install step failed: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  if (options.testTools) {
    log.info('installing Python test tools (chdb, scikit-learn)');
    installPythonTools(config);
  }
}

function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    socket.setTimeout(500);
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(false));
  });
}

/**
 * Idempotent: installs what is missing, starts what is stopped, waits until each service
 * answers. Returns the names of the services this call started (so a caller such as the test
 * setup can stop exactly those).
 */
export async function up(config: VigilConfig, log: Logger, only?: readonly ServiceName[]): Promise<ServiceName[]> {
  install(config, log, only);
  const started: ServiceName[] = [];
  for (const s of services(config)) {
    if (only && !only.includes(s.name)) continue;
    const existing = runningPid(s.proc);
    if (existing !== undefined) {
      if (await waitReady(s, config.infra.readyTimeoutMs)) continue;
      throw new VigilError('VIGIL_ERR_INFRA_START', `${s.name} (pid ${existing}) is running but not ready; see its log: ${s.proc.logFile}`);
    }
    for (const port of s.ports) {
      if (await portOpen(port)) {
        throw new VigilError(
          'VIGIL_ERR_INFRA_PORT_BUSY',
          `${s.name}: port ${port} is already in use by a process Vigil did not start; stop it or change the port in the config (see README, Configuration)`,
        );
      }
    }
    const { command, args } = s.prepare();
    const pid = await spawnDetached(s.proc, command, args, config.dataDir).catch((e: unknown) => {
      throw new VigilError('VIGIL_ERR_INFRA_START', `${s.name}: ${(e as Error).message}`);
    });
    log.info({ service: s.name, pid, log: s.proc.logFile }, 'starting');
    const t0 = Date.now();
    if (!(await waitReady(s, config.infra.readyTimeoutMs))) {
      const exited = !isAlive(pid);
      await stop(s.proc, 5000);
      throw new VigilError(
        'VIGIL_ERR_INFRA_START',
        `${s.name} ${exited ? 'exited' : 'was not ready'} after ${Date.now() - t0} ms (infra.readyTimeoutMs ${config.infra.readyTimeoutMs}); see its log: ${s.proc.logFile}`,
      );
    }
    log.info({ service: s.name, pid }, 'ready');
    started.push(s.name);
  }
  return started;
}

async function waitReady(s: Service, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const pid = runningPid(s.proc);
    if (pid === undefined) return false;
    if (await s.ready()) return true;
    await sleep(250);
  }
  return false;
}

/**
 * Stops only processes this project's infra started (pid files whose command line names the data
 * dir). `kill` skips the graceful phase (SIGKILL at once): how the fault tests crash a service.
 */
export async function down(config: VigilConfig, log: Logger, only?: readonly ServiceName[], options: { kill?: boolean } = {}): Promise<ServiceName[]> {
  const stopped: ServiceName[] = [];
  // Reverse start order: the broker and the database go last.
  for (const s of services(config).reverse()) {
    if (only && !only.includes(s.name)) continue;
    if (await stop(s.proc, options.kill ? 0 : undefined)) {
      log.info({ service: s.name }, 'stopped');
      stopped.push(s.name);
    }
  }
  return stopped;
}

export async function status(config: VigilConfig): Promise<ServiceStatus[]> {
  return Promise.all(
    services(config).map(async (s): Promise<ServiceStatus> => {
      const pid = runningPid(s.proc);
      const base = { name: s.name, ports: s.ports, log: s.proc.logFile };
      if (pid !== undefined && (await s.ready())) return { ...base, state: 'running', pid };
      const m = s.missing();
      return { ...base, state: m.apt.length + m.other.length > 0 ? 'not installed' : 'stopped' };
    }),
  );
}
