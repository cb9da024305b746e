import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const cli = new URL('../../../dist/cli/index.js', import.meta.url).pathname;

async function vigil(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run('node', [cli, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// Runs the compiled CLI (npm test builds first), the way an operator does.
describe('vigil CLI', () => {
  it('fails fast on a bad option value, naming the key and what was expected', async () => {
    const r = await vigil(['config'], { VIGIL_HTTP_PORT: '70000' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('VIGIL_ERR_CONFIG_INVALID: http.port = 70000 (from environment variable VIGIL_HTTP_PORT): expected a number <= 65535');
  });

  it('rejects an unknown command and an unknown flag with usage', async () => {
    const r = await vigil(['frobnicate']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('VIGIL_ERR_CLI_USAGE: unknown command "frobnicate"');
    const f = await vigil(['config', '--bogus']);
    expect(f.code).toBe(1);
    expect(f.stderr).toContain('VIGIL_ERR_CLI_USAGE');
  });

  it('prints the effective configuration', async () => {
    const r = await vigil(['config'], { VIGIL_KAFKA_GROUP_ID: 'g1' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).kafka.groupId).toBe('g1');
  });
});
