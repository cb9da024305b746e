import { afterAll } from 'vitest';
import { PipelineProcess } from '../../bench/process.js';

// The tests run the pipeline exactly as the benchmark does: one implementation in bench/.
export { PipelineProcess, freePort, waitFor } from '../../bench/process.js';

/**
 * Per-file pipeline processes: the returned `start` launches one with `env` and every one started
 * is stopped in afterAll. Call once at the top level of a test file.
 */
export function usePipelines(): (env: Record<string, string>) => Promise<PipelineProcess> {
  const running: PipelineProcess[] = [];
  afterAll(async () => {
    for (const p of running) await p.stop();
  });
  return async (env) => {
    const p = await PipelineProcess.start(env);
    running.push(p);
    return p;
  };
}
