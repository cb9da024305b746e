import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';

/**
 * The worker pool. Compiled code runs workers/ingest.js beside it; under vitest (TypeScript
 * sources) the compiled copy in dist/ is used, since worker threads load JavaScript.
 */
export function workerFile(name: string): string {
  const beside = fileURLToPath(new URL(`../workers/${name}.js`, import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL(`../dist/workers/${name}.js`, import.meta.url));
}

export function createPool(threads: number, maxQueue: number): Piscina {
  return new Piscina({
    filename: workerFile('ingest'),
    minThreads: threads,
    maxThreads: threads,
    // Work in flight is bounded in bytes by the consumer (pipeline.maxInFlightBytes); this finite
    // queue is a second guard so that a bug can never queue without limit.
    maxQueue,
    idleTimeout: 60_000,
  });
}
