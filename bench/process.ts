import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

// From bench/ (vitest, sources) or dist/bench/ (compiled): the compiled CLI either way; $PIPELINE_CLI
// points at another build (a frozen copy while dist/ is being rebuilt).
export const CLI = process.env['PIPELINE_CLI'] ?? new URL(import.meta.url.includes('/dist/bench/') ? '../cli/index.js' : '../dist/cli/index.js', import.meta.url).pathname;

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat (clock ticks of 1/100 s). */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/**
 * `vigil run` as an operator runs it: a separate process of the compiled CLI (so that tests can
 * kill -9 it), on its own HTTP port, with the given VIGIL_* environment.
 */
export class PipelineProcess {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly port: number,
    env: Record<string, string>,
    nodeArgs: string[],
    command: 'run' | 'start',
  ) {
    this.child = spawn('node', [...nodeArgs, CLI, command], {
      env: { ...process.env, VIGIL_LOG_LEVEL: 'warn', ...env, VIGIL_HTTP_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // BENCH_PIPELINE_LOG=FILE: the pipeline's whole output appended there (e.g. with NODE_OPTIONS=--trace-gc).
    const logFile = process.env['BENCH_PIPELINE_LOG'];
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-20_000);
      if (logFile) appendFileSync(logFile, d);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** `command`: `run`, or `start` (the demo: pipeline, demo producers, live line and recap). */
  static async start(env: Record<string, string>, nodeArgs: string[] = [], command: 'run' | 'start' = 'run'): Promise<PipelineProcess> {
    const p = new PipelineProcess(await freePort(), env, nodeArgs, command);
    try {
      await waitFor('the pipeline to become ready', async () => {
        if (p.child.exitCode !== null) throw new Error(`pipeline exited ${p.child.exitCode}: ${p.output}`);
        return (await p.readyz()) === 200;
      });
    } catch (err) {
      await p.stop();
      throw new Error(`${(err as Error).message}\n${p.output.slice(-3000)}`, { cause: err });
    }
    return p;
  }

  async readyz(): Promise<number> {
    try {
      return (await fetch(`http://127.0.0.1:${this.port}/readyz`, { signal: AbortSignal.timeout(1000) })).status;
    } catch {
      return 0;
    }
  }

  /** Sum of a metric's samples whose labels include `labels` (0 when absent). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      const m = /^([a-z_:]+)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const set = m[2] ?? '';
      if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) sum += Number(m[3]);
    }
    return sum;
  }

  /** The /metrics lines of the named metrics (a test's diagnosis when a run falls short). */
  async metricLines(names: readonly string[]): Promise<string> {
    try {
      const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
      return text
        .split('\n')
        .filter((line) => names.some((n) => line.startsWith(`${n} `) || line.startsWith(`${n}{`)))
        .join('\n');
    } catch (err) {
      return `(no /metrics: ${(err as Error).message})`;
    }
  }

  /** CPU seconds (user + system, all threads) used so far, from /proc. */
  cpuSeconds(): number {
    return cpuSecondsOf(this.child.pid as number);
  }

  /** Resident set size in bytes, from /proc. */
  rss(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return Number(kb) * 1024;
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
