import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** One pino root per process; components take `rootLogger(...).child({ component })` once. */
let root: Logger | undefined;

/**
 * Logs go to stdout through sonic-boom. When stdout is a pipe whose reader went away, a write
 * fails with EPIPE: logging stops there (it cannot reach anyone), instead of an 'error' event
 * that would throw out of whatever was logging, a signal handler or a retry loop among them.
 */
function destination(): pino.DestinationStream {
  const dest = pino.destination({ dest: 1, sync: true });
  dest.on('error', () => {
    if (root) root.level = 'silent';
  });
  process.stdout.on('error', () => undefined);
  return dest;
}

export function rootLogger(level: LevelWithSilent = 'info'): Logger {
  if (!root) root = pino({ level, base: { app: 'vigil' } }, destination());
  else root.level = level;
  return root;
}

export function componentLogger(component: string): Logger {
  return rootLogger().child({ component });
}
