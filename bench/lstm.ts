import { mulberry32 } from '../models/random.js';
/**
 * LSTM forecaster inference cost per scored bucket: (a) the hand-written cell, one step per
 * series-bucket with persistent per-series state (what workers do), against (b) TensorFlow.js
 * re-running the full window per bucket (`model.predict` on batches of windows) on the backend
 * `initTf` picks. Both run in this process on the same weights; the ratio is the figure to keep,
 * absolute times on shared machines are noisy. Writes bench/results/lstm-<time>.json.
 * Run: `npx tsc -p tsconfig.json && node dist/bench/lstm.js [--units 16] [--window 32] [--steps 1000000] [--batch 1000]`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LstmForecaster, buildModel, initTf, predictWindows, tfInitReport, weightsOf } from '../models/lstm/index.js';

const { values: args } = parseArgs({
  options: { units: { type: 'string' }, window: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, series: { type: 'string' }, repeats: { type: 'string' } },
});
const units = Number(args.units ?? 16);
const window = Number(args.window ?? 32);
const steps = Number(args.steps ?? 1_000_000);
const batch = Number(args.batch ?? 1000);
const seriesCount = Number(args.series ?? 1000);
const repeats = Number(args.repeats ?? 5);

const resultsDir = new URL('./results/', import.meta.url.includes('/dist/bench/') ? new URL('../../bench/', import.meta.url) : import.meta.url).pathname;
mkdirSync(resultsDir, { recursive: true });


const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] ?? Number.NaN;
};

const initStart = performance.now();
const tf = await initTf();
const initMs = performance.now() - initStart;
const report = tfInitReport();
// Seeded, untrained weights: the cost of either path does not depend on the weight values.
const model = buildModel(tf, { units, window, seed: 42 });
const cell = new LstmForecaster(await weightsOf(model));

const random = mulberry32(1);
// Normalised bucket values, one per (series, bucket) in round-robin order, as a shard sees them.
const inputs = Float64Array.from({ length: 1 << 16 }, () => 2 * random() - 1);
const states = Array.from({ length: seriesCount }, () => cell.initState());

function cellRun(n: number): number {
  let sink = 0;
  const mask = inputs.length - 1;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += cell.step(states[i % seriesCount]!, inputs[i & mask]!);
  const ns = Number(process.hrtime.bigint() - t0);
  if (Number.isNaN(sink)) throw new Error('cell produced NaN');
  return ns / 1000 / n;
}

cellRun(Math.min(steps, 100_000)); // warm-up: let V8 optimise step()
const cellRuns = Array.from({ length: repeats }, () => cellRun(steps));
const cellUsPerStep = median(cellRuns);

const windows = Float32Array.from({ length: batch * window }, () => 2 * random() - 1);
async function tfRun(): Promise<number> {
  const t0 = process.hrtime.bigint();
  // Tensor creation and read-back included: a scorer would pay both per batch.
  const out = await predictWindows(model, windows, window, batch);
  const ns = Number(process.hrtime.bigint() - t0);
  if (out.length !== batch) throw new Error('short prediction');
  return ns / 1000 / batch;
}
await tfRun(); // warm-up: first call compiles kernels and allocates
const tfRuns: number[] = [];
for (let r = 0; r < repeats; r++) tfRuns.push(await tfRun());
const tfUsPerWindow = median(tfRuns);

// Same windows through the cell from a zero state: the like-for-like per-window figure, and a parity check.
const expected = await predictWindows(model, windows, window, batch);
let maxAbsDiff = 0;
const t0 = process.hrtime.bigint();
for (let i = 0; i < batch; i++) {
  const y = cell.forecastWindow(windows.subarray(i * window, (i + 1) * window));
  maxAbsDiff = Math.max(maxAbsDiff, Math.abs(y - expected[i]!));
}
const cellUsPerWindow = Number(process.hrtime.bigint() - t0) / 1000 / batch;
model.dispose();

const result = {
  at: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  backend: report?.backend,
  skippedBackends: report?.skipped,
  tfInitMs: Math.round(initMs),
  units,
  window,
  cell: { steps, series: seriesCount, repeats, usPerStep: cellUsPerStep, runsUsPerStep: cellRuns, usPerWindowFromZero: cellUsPerWindow },
  tfjs: { batch, repeats, usPerWindow: tfUsPerWindow, runsUsPerWindow: tfRuns },
  /** Per scored bucket: tfjs re-running a window vs one cell step. */
  ratioTfjsWindowToCellStep: tfUsPerWindow / cellUsPerStep,
  /** Like for like: a full window from a zero state in each. */
  ratioTfjsWindowToCellWindow: tfUsPerWindow / cellUsPerWindow,
  parityMaxAbsDiff: maxAbsDiff,
};
const file = join(resultsDir, `lstm-${new Date().toISOString().replaceAll(':', '-').slice(0, 19)}.json`);
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`backend ${result.backend} (tfjs init ${result.tfInitMs} ms), units ${units}, window ${window}`);
console.log(`cell  : ${cellUsPerStep.toFixed(3)} µs per step (series-bucket), ${steps} steps over ${seriesCount} series; ${cellUsPerWindow.toFixed(2)} µs per ${window}-step window`);
console.log(`tfjs  : ${tfUsPerWindow.toFixed(2)} µs per ${window}-step window (predict, batch ${batch})`);
console.log(`ratio : tfjs window / cell step = ${result.ratioTfjsWindowToCellStep.toFixed(1)}×, tfjs window / cell window = ${result.ratioTfjsWindowToCellWindow.toFixed(2)}×; parity max |diff| ${maxAbsDiff.toExponential(2)}`);
console.log(`wrote ${file}`);
