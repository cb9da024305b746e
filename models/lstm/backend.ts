/**
 * Picks the TensorFlow.js backend once per thread: `@tensorflow/tfjs-node` when it is installed
 * (optional: it downloads libtensorflow at install time, which fails offline), else the WASM
 * backend, else the pure-JS 'cpu' backend. TensorFlow.js is loaded with dynamic imports only, so
 * modules that merely import this file (the hand-written cell, weight loading) never pay for it.
 */
import { createRequire } from 'node:module';
import { dirname, sep } from 'node:path';
import type * as TfModule from '@tensorflow/tfjs';

export type Tf = typeof TfModule;

export type TfBackend = 'tensorflow' | 'wasm' | 'cpu';

export interface TfInitReport {
  backend: TfBackend;
  /** Preferred backends that were not used, in order of preference, and why (for the caller to log). */
  skipped: { backend: 'tensorflow' | 'wasm'; reason: string }[];
}

let initialising: Promise<{ tf: Tf; report: TfInitReport }> | undefined;
let report: TfInitReport | undefined;

/** TensorFlow.js with the best available backend selected and ready. Idempotent. */
export async function initTf(): Promise<Tf> {
  initialising ??= pick();
  const picked = await initialising;
  report = picked.report;
  return picked.tf;
}

/** Which backend `initTf` chose and why it skipped the others; undefined before `initTf` resolves. */
export function tfInitReport(): TfInitReport | undefined {
  return report;
}

async function pick(): Promise<{ tf: Tf; report: TfInitReport }> {
  const skipped: TfInitReport['skipped'] = [];
  // A variable specifier keeps TypeScript from requiring the optional package's types.
  const nodeBackend = '@tensorflow/tfjs-node';
  try {
    // A CommonJS package: its module.exports (the default export) is the full tfjs API.
    const mod = (await import(nodeBackend)) as Tf & { default?: Tf };
    const tf = mod.default ?? mod;
    await tf.ready();
    return { tf, report: { backend: 'tensorflow', skipped } };
  } catch (err) {
    skipped.push({ backend: 'tensorflow', reason: reasonOf(err) });
  }

  const tf = await import('@tensorflow/tfjs');
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // In Node the Emscripten loader reads the .wasm binaries from disk: point it at the package's
    // dist folder (tfjs-backend-wasm{,-simd,-threaded-simd}.wasm sit next to its main file).
    const main = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(dirname(main) + sep);
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return { tf, report: { backend: 'wasm', skipped } };
    }
    skipped.push({ backend: 'wasm', reason: 'tf.setBackend("wasm") returned false (initialisation failed; TensorFlow.js warned why)' });
  } catch (err) {
    skipped.push({ backend: 'wasm', reason: reasonOf(err) });
  }

  await tf.setBackend('cpu');
  await tf.ready();
  return { tf, report: { backend: 'cpu', skipped } };
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.name;
  if (typeof err === 'object' && err !== null && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}
