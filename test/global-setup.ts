import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, usesLocalStack } from '../core/config/index.js';
import { componentLogger, rootLogger } from '../core/log.js';
import * as infra from '../infra/index.js';

/**
 * Integration tests run the compiled pipeline (dist/cli/index.js in child processes, dist/workers in
 * the pool): they are compiled first, so `npx vitest run` can never test a stale dist/.
 */
function build(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  if (tsc.status !== 0) throw new Error(`tsc -p tsconfig.json failed (exit ${String(tsc.status)}): the tests would run stale code`);
}

/**
 * Brings the local stack up when the configuration points at it and it is not running, and
 * stops afterwards exactly the services this run started (a stack started by hand with
 * `npm run infra:up` is left running for the next run).
 */
export default async function setup(): Promise<() => Promise<void>> {
  build();
  const config = loadConfig();
  rootLogger(process.env['CI'] ? 'info' : 'warn');
  const log = componentLogger('test-setup');
  // The test tools every run needs, whichever Kafka and ClickHouse it uses: kcat, and chdb and
  // scikit-learn in the project's venv (idempotent: a quick import check when they are there).
  infra.install(config, log, [], { testTools: true });
  if (!usesLocalStack(config)) return async () => undefined;
  const started = await infra.up(config, log);
  return async () => {
    // Quiet: the reporter's closing `N passed, N failed` line should stay the last one CI sees.
    rootLogger('warn');
    if (started.length > 0) await infra.down(config, log, started);
  };
}
