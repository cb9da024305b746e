#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { configDocs, loadConfig, usesLocalStack, type VigilConfig } from './config/index.js';
import { isVigilError, VigilError } from './errors.js';
import { componentLogger, rootLogger } from './log.js';
import * as infra from '../infra/index.js';
import { startHttpServer, Readiness } from './http.js';
import { createMetrics } from './metrics.js';

const USAGE = `Usage: vigil <command> [options]

Commands:
  start                     local stack (when no external Kafka/ClickHouse is configured) + Vigil
  infra up|down|status|install
                            manage the local Kafka, ClickHouse, Prometheus and Alertmanager
  config [--docs]           print the effective configuration (or the reference table)

Options:
  -c, --config FILE         configuration file (JSON or YAML); also $VIGIL_CONFIG
  -h, --help                this text
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      docs: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, sub] = positionals;
  if (values.help || command === undefined) {
    console.log(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (command === 'config' && values.docs) {
    console.log(configDocs());
    return 0;
  }
  const config = loadConfig({ file: values.config });
  rootLogger(config.log.level);

  switch (command) {
    case 'config':
      console.log(JSON.stringify(config, null, 2));
      return 0;
    case 'infra':
      return infraCommand(config, sub);
    case 'start':
      return start(config);
    default:
      throw new VigilError('VIGIL_ERR_CLI_USAGE', `unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  }
}

async function infraCommand(config: VigilConfig, sub: string | undefined): Promise<number> {
  const log = componentLogger('infra');
  switch (sub) {
    case 'install':
      infra.install(config, log);
      return 0;
    case 'up':
      await infra.up(config, log);
      await printStatus(config);
      return 0;
    case 'down':
      await infra.down(config, log);
      return 0;
    case 'status':
      return (await printStatus(config)) ? 0 : 3;
    default:
      throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil infra: expected up, down, status or install, got ${JSON.stringify(sub ?? '')}`);
  }
}

/** Prints one line per service; returns true when all are running. */
async function printStatus(config: VigilConfig): Promise<boolean> {
  const all = await infra.status(config);
  for (const s of all) {
    const pid = s.pid === undefined ? '' : ` pid ${s.pid}`;
    console.log(`${s.name.padEnd(13)} ${s.state.padEnd(14)}${pid} ports ${s.ports.join(',')}  log ${s.log}`);
  }
  return all.every((s) => s.state === 'running');
}

async function start(config: VigilConfig): Promise<number> {
  const log = componentLogger('main');
  if (usesLocalStack(config)) await infra.up(config, componentLogger('infra'));
  const metrics = createMetrics();
  const readiness = new Readiness();
  readiness.set('http', true);
  const server = await startHttpServer({ ...config.http, registry: metrics.registry, readiness, log: componentLogger('http') });
  log.info({ metrics: `http://${config.http.host}:${server.port}/metrics` }, 'vigil started');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (isVigilError(err)) console.error(err.message);
    else if (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) console.error(`VIGIL_ERR_CLI_USAGE: ${err.message}\n\n${USAGE}`);
    else console.error(err);
    process.exitCode = 1;
  },
);
