import { mulberry32 } from './random.js';
/**
 * Isolation Forest (Liu, Ting & Zhou 2008), the algorithm of scikit-learn's `IsolationForest`:
 * each tree is grown on `maxSamples` rows drawn without replacement, to depth
 * ceil(log2(maxSamples)), like sklearn's `ExtraTreeRegressor(max_features=1, splitter='random')`:
 * a node draws features uniformly until one is not constant there (range > 1e-7, sklearn's
 * FEATURE_THRESHOLD; a node with only constant features is a leaf), splits at a threshold
 * uniform in [min, max) of that feature, and sends `x <= threshold` left. A sample's path length
 * is the depth of its leaf plus c(leaf size), and the score is sklearn's
 * 2^(-mean path length / c(maxSamples)) in (0, 1], higher is more anomalous; sklearn's
 * `score_samples` returns the negative of this number.
 *
 * Where it differs: the random stream (mulberry32, not numpy's), so forests match sklearn's in
 * distribution, not tree by tree; sklearn rounds inputs to float32, this keeps float64; NaN is
 * rejected at fit and goes right at scoring (sklearn routes it to the larger child).
 */

const EULER_GAMMA = 0.5772156649015329;
/** sklearn's FEATURE_THRESHOLD: a feature whose range in a node is at most this is constant there. */
const FEATURE_THRESHOLD = 1e-7;

export interface IsolationForestOptions {
  /** Number of trees. Default 100 (sklearn's `n_estimators`). */
  nEstimators?: number;
  /** Rows per tree, drawn without replacement, capped at the row count. Default 256, i.e. min(256, rows) like sklearn's `max_samples='auto'`. */
  maxSamples?: number;
  /** PRNG seed: the same data, options and seed give the same forest. Default 0. */
  seed?: number;
}

/**
 * A fitted forest as typed arrays, for a worker `postMessage` (structured clone copies them; their
 * buffers may be transferred). Trees are stored one after another; node arrays share one index.
 */
export interface SerializedForest {
  features: number;
  maxSamples: number;
  /** Root node of each tree. */
  roots: Int32Array;
  /** Split feature, or -1 at a leaf. */
  feature: Int32Array;
  threshold: Float64Array;
  /** Left child; the right child is always `left + 1`, and both come after their parent. */
  left: Int32Array;
  /** Training rows that reached the node (sklearn's `n_node_samples`). */
  size: Int32Array;
  /** At a leaf: its depth + c(size), the path length a sample ending there counts. */
  pathLength: Float64Array;
}

/** c(n), sklearn's `_average_path_length`: the mean path length of an unsuccessful search in a BST of n keys. */
export function averagePathLength(n: number): number {
  if (n <= 1) return 0;
  if (n === 2) return 1;
  return 2 * (Math.log(n - 1) + EULER_GAMMA) - (2 * (n - 1)) / n;
}


function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`IsolationForest: ${name} must be an integer >= 1, got ${value}`);
  return value;
}

export class IsolationForest {
  readonly #f: SerializedForest;
  /** nEstimators * c(maxSamples); 0 when maxSamples is 1, where sklearn defines the score as 1. */
  readonly #norm: number;

  private constructor(forest: SerializedForest) {
    this.#f = forest;
    this.#norm = forest.roots.length * averagePathLength(forest.maxSamples);
  }

  get nEstimators(): number {
    return this.#f.roots.length;
  }

  get maxSamples(): number {
    return this.#f.maxSamples;
  }

  get features(): number {
    return this.#f.features;
  }

  /** Fits a forest on `rows` x `features` values, row-major. */
  static fit(data: Float64Array, rows: number, features: number, options: IsolationForestOptions = {}): IsolationForest {
    positiveInteger('rows', rows);
    positiveInteger('features', features);
    const nEstimators = positiveInteger('nEstimators', options.nEstimators ?? 100);
    const maxSamples = Math.min(positiveInteger('maxSamples', options.maxSamples ?? 256), rows);
    if (data.length !== rows * features) throw new RangeError(`IsolationForest: data has ${data.length} values, expected rows * features = ${rows * features}`);
    if (!data.every(Number.isFinite)) throw new RangeError('IsolationForest: data contains NaN or an infinite value');

    const rand = mulberry32(options.seed ?? 0);
    const maxDepth = Math.ceil(Math.log2(Math.max(maxSamples, 2)));
    // A tree with at most maxSamples leaves has at most 2 * maxSamples - 1 nodes.
    const capacity = nEstimators * (2 * maxSamples - 1);
    const feature = new Int32Array(capacity);
    const threshold = new Float64Array(capacity);
    const left = new Int32Array(capacity);
    const size = new Int32Array(capacity);
    const pathLength = new Float64Array(capacity);
    const roots = new Int32Array(nEstimators);
    const pool = Int32Array.from({ length: rows }, (_, i) => i);
    const sample = new Int32Array(maxSamples);
    const candidates = new Int32Array(features);
    let next = 0;

    // Grows the node holding sample[start, end), partitioning that range in place.
    const grow = (node: number, start: number, end: number, depth: number): void => {
      const n = end - start;
      feature[node] = -1;
      size[node] = n;
      pathLength[node] = depth + averagePathLength(n);
      if (depth >= maxDepth || n < 2) return;
      for (let i = 0; i < features; i++) candidates[i] = i;
      for (let remaining = features; remaining > 0; ) {
        const j = Math.floor(rand() * remaining);
        const f = candidates[j]!;
        candidates[j] = candidates[--remaining]!;
        let lo = Infinity;
        let hi = -Infinity;
        for (let k = start; k < end; k++) {
          const v = data[sample[k]! * features + f]!;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        if (hi <= lo + FEATURE_THRESHOLD) continue;
        let t = lo + rand() * (hi - lo);
        // Rounding can land on max, which would leave the right side empty; sklearn maps it to min.
        if (t >= hi) t = lo;
        let mid = start;
        for (let k = start; k < end; k++) {
          const row = sample[k]!;
          if (data[row * features + f]! <= t) {
            sample[k] = sample[mid]!;
            sample[mid++] = row;
          }
        }
        const child = next;
        next += 2;
        feature[node] = f;
        threshold[node] = t;
        left[node] = child;
        grow(child, start, mid, depth + 1);
        grow(child + 1, mid, end, depth + 1);
        return;
      }
    };

    for (let tree = 0; tree < nEstimators; tree++) {
      // Partial Fisher-Yates: the first maxSamples slots of the pool become a uniform draw without replacement.
      for (let i = 0; i < maxSamples; i++) {
        const j = i + Math.floor(rand() * (rows - i));
        const row = pool[j]!;
        pool[j] = pool[i]!;
        pool[i] = row;
        sample[i] = row;
      }
      const root = next++;
      roots[tree] = root;
      grow(root, 0, maxSamples, 0);
    }
    const used = { features, maxSamples, roots, feature: feature.slice(0, next), threshold: threshold.slice(0, next), left: left.slice(0, next), size: size.slice(0, next), pathLength: pathLength.slice(0, next) };
    return new IsolationForest(used);
  }

  /** Anomaly score of one row (its first `features` values) in (0, 1]; sklearn's `-score_samples`. */
  scoreSamples(row: ArrayLike<number>): number {
    if (row.length < this.#f.features) throw new RangeError(`IsolationForest: row has ${row.length} values, expected ${this.#f.features}`);
    return this.#score(row, 0);
  }

  /** Scores `rows` row-major rows. */
  score(data: Float64Array, rows: number): Float64Array {
    const { features } = this.#f;
    if (data.length < rows * features) throw new RangeError(`IsolationForest: data has ${data.length} values, expected rows * features = ${rows * features}`);
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) out[r] = this.#score(data, r * features);
    return out;
  }

  #score(x: ArrayLike<number>, offset: number): number {
    if (this.#norm === 0) return 1;
    // Flat typed arrays, not node objects: a forest is a few buffers that post to a worker as a copy
    // of bytes, and a walk reads contiguous memory without pointer chasing (bench/iforest.ts measures both).
    const { roots, feature, threshold, left, pathLength } = this.#f;
    let sum = 0;
    for (let tree = 0; tree < roots.length; tree++) {
      let node = roots[tree]!;
      let f = feature[node]!;
      while (f >= 0) {
        node = left[node]! + (x[offset + f]! <= threshold[node]! ? 0 : 1);
        f = feature[node]!;
      }
      sum += pathLength[node]!;
    }
    return 2 ** (-sum / this.#norm);
  }

  /** Copies of the forest's arrays, safe to transfer. */
  serialize(): SerializedForest {
    const f = this.#f;
    return { features: f.features, maxSamples: f.maxSamples, roots: f.roots.slice(), feature: f.feature.slice(), threshold: f.threshold.slice(), left: f.left.slice(), size: f.size.slice(), pathLength: f.pathLength.slice() };
  }

  /** Rebuilds a forest from `serialize()`'s output, checking that every walk stays in bounds and terminates. */
  static deserialize(s: SerializedForest): IsolationForest {
    positiveInteger('features', s.features);
    positiveInteger('maxSamples', s.maxSamples);
    const nodes = s.feature.length;
    const typed = s.roots instanceof Int32Array && s.feature instanceof Int32Array && s.threshold instanceof Float64Array && s.left instanceof Int32Array && s.size instanceof Int32Array && s.pathLength instanceof Float64Array;
    if (!typed || s.roots.length === 0 || [s.threshold, s.left, s.size, s.pathLength].some((a) => a.length !== nodes)) throw new RangeError('IsolationForest: serialized forest has missing or mismatched arrays');
    const bad = (i: number): boolean => {
      const f = s.feature[i]!;
      const l = s.left[i]!;
      // Children after their parent means every walk moves forward, so it ends at a leaf.
      return f < -1 || f >= s.features || (f >= 0 && (l <= i || l + 1 >= nodes));
    };
    for (let i = 0; i < nodes; i++) if (bad(i)) throw new RangeError(`IsolationForest: serialized forest has a bad node ${i}`);
    if (s.roots.some((r) => r < 0 || r >= nodes)) throw new RangeError('IsolationForest: serialized forest has a root out of range');
    return new IsolationForest(s);
  }
}
