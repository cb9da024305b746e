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

/**
 * Starts `command` detached and records its pid; resolves once the child's command line names the
 * marker. Between fork and exec the child's command line is still this process's, so `runningPid`
 * would not know it yet: `infra up` once read that as "not running", reported a start failure and
 * left the broker it had just started running (a CI rehearsal under load). Rejects if the child
 * exits first or has not exec'd within `execTimeoutMs`.
 */
export async function spawnDetached(p: ManagedProcess, command: string, args: string[], cwd: string, execTimeoutMs = 10_000): Promise<number> {
  mkdirSync(dirname(p.logFile), { recursive: true });
  const fd = openSync(p.logFile, 'a');
  let pid: number;
  try {
    const child = spawn(command, args, { cwd, detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new Error(`could not spawn ${command}`);
    child.unref();
    pid = child.pid;
    writeFileSync(p.pidFile, `${pid}\n`);
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + execTimeoutMs;
  while (runningPid(p) === undefined) {
    if (!isAlive(pid)) {
      rmSync(p.pidFile, { force: true });
      throw new Error(`${command} exited at once; see ${p.logFile}`);
    }
    if (Date.now() > deadline) {
      // Ours for certain (just forked), though the marker check cannot say so: kill its group.
      killGroup(pid, 'SIGKILL');
      rmSync(p.pidFile, { force: true });
      throw new Error(`${command} (pid ${pid}) did not exec within ${execTimeoutMs} ms; killed`);
    }
    await sleep(10);
  }
  return pid;
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
  killGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) {
    killGroup(pid, 'SIGKILL');
    while (isAlive(pid)) await sleep(50);
  }
  rmSync(p.pidFile, { force: true });
  return true;
}

/** Signals a detached process's group (the pid alone if the group is gone). */
function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}
