/**
 * Isolation Forest scoring speed: the flat typed-array forest of models/iforest.ts against the
 * same trees rebuilt as nested objects and walked the obvious way, in the same process. Fits on
 * 10k rows x 4 features, scores 100k rows; reports µs per row for each (best of several rounds)
 * and their ratio. Writes bench/results/iforest-<time>.json.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/iforest.js [--rows N] [--rounds N]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { averagePathLength, IsolationForest, type SerializedForest } from '../models/iforest.js';

const { values } = parseArgs({ options: { rows: { type: 'string' }, rounds: { type: 'string' } } });
const scoreRows = Number(values.rows ?? 100_000);
const rounds = Number(values.rounds ?? 7);
const fitRows = 10_000;
const features = 4;
const resultsDir = new URL('./results/', import.meta.url.includes('/dist/bench/') ? new URL('../../bench/', import.meta.url) : import.meta.url).pathname;
mkdirSync(resultsDir, { recursive: true });

/** Seeded data: a unit Gaussian cluster with 2% of rows five times wider. */
function rowsOf(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  const out = new Float64Array(n * features);
  for (let i = 0; i < out.length; i++) {
    const wide = Math.floor(i / features) % 50 === 0 ? 5 : 1;
    out[i] = wide * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  }
  return out;
}

interface TreeNode {
  feature: number;
  threshold: number;
  left: TreeNode | null;
  right: TreeNode | null;
  pathLength: number;
}

/** The baseline: the same forest as one object per node, every node of one shape. */
function objectTrees(s: SerializedForest): TreeNode[] {
  const build = (i: number): TreeNode => {
    const leaf = s.feature[i]! < 0;
    return { feature: s.feature[i]!, threshold: s.threshold[i]!, left: leaf ? null : build(s.left[i]!), right: leaf ? null : build(s.left[i]! + 1), pathLength: s.pathLength[i]! };
  };
  return Array.from(s.roots, build);
}

function scoreObjects(trees: TreeNode[], norm: number, data: Float64Array, rows: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const offset = r * features;
    let sum = 0;
    for (const root of trees) {
      let node = root;
      while (node.left && node.right) node = data[offset + node.feature]! <= node.threshold ? node.left : node.right;
      sum += node.pathLength;
    }
    out[r] = 2 ** (-sum / norm);
  }
  return out;
}

/**
 * Best wall time of each scorer over `rounds` rounds after one warm-up, in µs per scored row. The
 * scorers alternate within a round so that load from other processes hits both alike.
 */
function timeAll(runs: Record<string, () => Float64Array>): Record<string, { usPerRow: number; scores: Float64Array }> {
  const out: Record<string, { usPerRow: number; scores: Float64Array }> = {};
  for (const [name, run] of Object.entries(runs)) out[name] = { usPerRow: Infinity, scores: run() };
  for (let i = 0; i < rounds; i++) {
    for (const [name, run] of Object.entries(runs)) {
      const t0 = process.hrtime.bigint();
      const scores = run();
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      out[name] = { usPerRow: Math.min(out[name]!.usPerRow, us / scoreRows), scores };
    }
  }
  return out;
}

/** Milliseconds to structured-clone `value`, what a worker postMessage does (best of `rounds`). */
function cloneMs(value: unknown): number {
  let best = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t0 = process.hrtime.bigint();
    structuredClone(value);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

const train = rowsOf(fitRows, 1);
const test = rowsOf(scoreRows, 2);
const fitStart = process.hrtime.bigint();
const forest = IsolationForest.fit(train, fitRows, features, { seed: 0 });
const fitMs = Number(process.hrtime.bigint() - fitStart) / 1e6;
const serialized = forest.serialize();
const trees = objectTrees(serialized);
const norm = forest.nEstimators * averagePathLength(forest.maxSamples);

const timed = timeAll({ flat: () => forest.score(test, scoreRows), objects: () => scoreObjects(trees, norm, test, scoreRows) });
const flat = timed['flat']!;
const objects = timed['objects']!;
// Both walks must give the same scores, or the comparison is between different forests.
const maxDiff = flat.scores.reduce((m, v, i) => Math.max(m, Math.abs(v - objects.scores[i]!)), 0);
if (maxDiff > 1e-12) throw new Error(`flat and object forests disagree by ${maxDiff}`);

const result = {
  startedAt: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  fitRows,
  scoreRows,
  features,
  nEstimators: forest.nEstimators,
  maxSamples: forest.maxSamples,
  nodes: serialized.feature.length,
  rounds,
  fitMs: Math.round(fitMs * 10) / 10,
  flatUsPerRow: flat.usPerRow,
  objectUsPerRow: objects.usPerRow,
  objectOverFlat: objects.usPerRow / flat.usPerRow,
  flatCloneMs: cloneMs(serialized),
  objectCloneMs: cloneMs(trees),
};
const file = join(resultsDir, `iforest-${new Date().toISOString().replaceAll(':', '-').slice(0, 19)}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(`fit ${fitRows} x ${features}: ${result.fitMs} ms; scoring ${scoreRows} rows, best of ${rounds}:`);
console.log(`  flat typed arrays  ${flat.usPerRow.toFixed(3)} µs/row`);
console.log(`  object trees       ${objects.usPerRow.toFixed(3)} µs/row`);
console.log(`  objects / flat     ${result.objectOverFlat.toFixed(2)}x`);
console.log(`structuredClone of the forest (${result.nodes} nodes): flat ${result.flatCloneMs.toFixed(3)} ms, objects ${result.objectCloneMs.toFixed(3)} ms`);
console.log(file);
