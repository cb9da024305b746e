import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive, runningPid, spawnDetached, stop, type ManagedProcess } from '../../../infra/process.js';

const dirs: string[] = [];
const procs: ManagedProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await stop(p, 1000);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function managed(marker: string): ManagedProcess {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-process-'));
  dirs.push(dir);
  const p = { pidFile: join(dir, 'x.pid'), logFile: join(dir, 'x.log'), marker };
  procs.push(p);
  return p;
}

describe('spawnDetached', () => {
  it('resolves once the child has exec’d the command that names the marker, not at fork', async () => {
    // The shell's command line holds `$VIGIL_TEST_SLEEP`, not its value: the marker appears only
    // when the shell execs `sleep 30.25`, 300 ms after the fork.
    process.env['VIGIL_TEST_SLEEP'] = '30.25';
    const p = managed('30.25');
    const pid = await spawnDetached(p, 'sh', ['-c', 'sleep 0.3; exec sleep "$VIGIL_TEST_SLEEP"'], tmpdir());
    expect(runningPid(p)).toBe(pid);
    expect(await stop(p, 1000)).toBe(true);
    expect(isAlive(pid)).toBe(false);
  });

  it('rejects with the log file when the child exits before it execs', async () => {
    const p = managed('never-in-any-command-line');
    await expect(spawnDetached(p, 'sh', ['-c', 'exit 3'], tmpdir())).rejects.toThrow(/exited at once; see .*x\.log/);
  });

  it('rejects when the command line never names the marker, and kills what it started', async () => {
    const p = managed('never-in-any-command-line');
    await expect(spawnDetached(p, 'sleep', ['5.75'], tmpdir(), 300)).rejects.toThrow(/did not exec within 300 ms; killed/);
    await new Promise((r) => setTimeout(r, 100));
    expect(execFileSync('ps', ['-eo', 'args']).toString()).not.toMatch(/^sleep 5\.75$/m);
  });
});
