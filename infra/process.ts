import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Processes the local stack starts are detached into their own process group and recorded in
 * a pid file. `stop` kills only a pid whose command line still names the marker (the data dir)
 * so that a recycled pid of someone else's process is never touched.
 */
export interface ManagedProcess {
  pidFile: string;
  logFile: string;
  /** A string that must appear in /proc/<pid>/cmdline for the pid to be ours. */
  marker: string;
}

export function runningPid(p: ManagedProcess): number | undefined {
  if (!existsSync(p.pidFile)) return undefined;
  const pid = Number(readFileSync(p.pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    return cmdline.includes(p.marker) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function spawnDetached(p: ManagedProcess, command: string, args: string[], cwd: string): number {
  mkdirSync(dirname(p.logFile), { recursive: true });
  const fd = openSync(p.logFile, 'a');
  try {
    const child = spawn(command, args, { cwd, detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new Error(`could not spawn ${command}`);
    child.unref();
    writeFileSync(p.pidFile, `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to the process group, SIGKILL after `graceMs`; removes the pid file. */
export async function stop(p: ManagedProcess, graceMs = 30000): Promise<boolean> {
  const pid = runningPid(p);
  if (pid === undefined) {
    rmSync(p.pidFile, { force: true });
    return false;
  }
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) {
    signal('SIGKILL');
    while (isAlive(pid)) await sleep(50);
  }
  rmSync(p.pidFile, { force: true });
  return true;
}
