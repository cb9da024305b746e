import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** One pino root per process; components take `rootLogger(...).child({ component })` once. */
let root: Logger | undefined;

export function rootLogger(level: LevelWithSilent = 'info'): Logger {
  if (!root) root = pino({ level, base: { app: 'vigil' } });
  else root.level = level;
  return root;
}

export function componentLogger(component: string): Logger {
  return rootLogger().child({ component });
}
