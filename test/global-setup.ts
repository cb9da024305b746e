import { loadConfig, usesLocalStack } from '../core/config/index.js';
import { componentLogger, rootLogger } from '../core/log.js';
import * as infra from '../infra/index.js';

/**
 * Brings the local stack up when the configuration points at it and it is not running, and
 * stops afterwards exactly the services this run started (a stack started by hand with
 * `npm run infra:up` is left running for the next run).
 */
export default async function setup(): Promise<() => Promise<void>> {
  const config = loadConfig();
  rootLogger(process.env['CI'] ? 'info' : 'warn');
  if (!usesLocalStack(config)) return async () => undefined;
  const log = componentLogger('test-setup');
  const started = await infra.up(config, log);
  return async () => {
    // Quiet: the reporter's closing `N passed, N failed` line should stay the last one CI sees.
    rootLogger('warn');
    if (started.length > 0) await infra.down(config, log, started);
  };
}
