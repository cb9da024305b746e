import { mulberry32 } from '../random.js';
/**
 * The LSTM forecaster: LSTM(units, last output only) + Dense(1) over windows of `window`
 * normalised bucket values, trained with TensorFlow.js to forecast the next value. One global
 * model is trained across many series, each normalised by its own median and MAD (`normalise`).
 */
import type { LayersModel, Sequential, Tensor } from '@tensorflow/tfjs';
import { VigilError } from '../../core/errors.js';
import { initTf, type Tf, type TfBackend } from './backend.js';
import { LstmForecaster } from './cell.js';
import { normalise, readSeriesCsv } from './data.js';
import { weightsOf } from './persist.js';
import type { RecurrentActivation } from './weights.js';

export interface TrainOptions {
  /** Input length in buckets. Default 32. */
  window?: number;
  /** LSTM units. Default 16. */
  units?: number;
  /** Passes over the training windows. Default 10. */
  epochs?: number;
  /** Windows per gradient step. Default 64. */
  batchSize?: number;
  /** Fraction at the end of each series whose targets are held out for validation, in (0, 1). Default 0.2. */
  validationSplit?: number;
  /** Seeds the weight initialisers and the per-epoch shuffle. Default 42. */
  seed?: number;
  /** Adam learning rate. Default 0.005. */
  learningRate?: number;
  /** Gate activation: tfjs' default `hardSigmoid`, or `sigmoid`. Default 'hardSigmoid'. */
  recurrentActivation?: RecurrentActivation;
  /** Take every `stride`-th window of each series (bounds memory on long histories). Default 1. */
  stride?: number;
}

export const TRAIN_DEFAULTS: Readonly<Required<TrainOptions>> = Object.freeze({
  window: 32,
  units: 16,
  epochs: 10,
  batchSize: 64,
  validationSplit: 0.2,
  seed: 42,
  learningRate: 0.005,
  recurrentActivation: 'hardSigmoid',
  stride: 1,
});

export const NORMALISATION = 'per-series robust (median, 1.4826*MAD)';

/** metadata.json: everything a scorer needs besides the weights, and how the model was made. */
export interface LstmMetadata {
  version: 1;
  kind: 'lstm-forecaster';
  window: number;
  units: number;
  recurrentActivation: RecurrentActivation;
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  validationSplit: number;
  series: number;
  trainWindows: number;
  validationWindows: number;
  /** RMSE of tfjs' forecasts on the held-out windows (each run from a zero state), normalised units. */
  validationRmse: number;
  /**
   * RMSE on the held-out targets when the hand-written cell streams each series from its start
   * with persistent state: what the worker-side detector actually sees, so the z-score
   * denominator.
   */
  streamingValidationRmse: number;
  /** RMSE of forecasting 0 (the series median) on the held-out targets: the no-skill baseline. */
  zeroForecastRmse: number;
  /** Training MSE of the last epoch. */
  finalTrainLoss: number;
  /** ISO 8601. */
  trainedAt: string;
  normalisation: typeof NORMALISATION;
  backend: TfBackend;
}

export interface Trained {
  model: LayersModel;
  metadata: LstmMetadata;
}

/** Builds and compiles an untrained forecaster with seeded initialisers. */
export function buildModel(tf: Tf, options: TrainOptions = {}): Sequential {
  const o = resolveOptions(options);
  const model = tf.sequential({ name: 'lstm_forecaster' });
  model.add(
    tf.layers.lstm({
      name: 'lstm',
      units: o.units,
      inputShape: [o.window, 1],
      returnSequences: false,
      recurrentActivation: o.recurrentActivation,
      // Keras' default, not tfjs': a forget-gate bias of 1 keeps the cell state early in training.
      unitForgetBias: true,
      kernelInitializer: tf.initializers.glorotUniform({ seed: o.seed }),
      recurrentInitializer: tf.initializers.orthogonal({ seed: o.seed + 1 }),
    }),
  );
  model.add(tf.layers.dense({ name: 'dense', units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed: o.seed + 2 }) }));
  model.compile({ optimizer: tf.train.adam(o.learningRate), loss: 'meanSquaredError' });
  return model;
}

/**
 * Trains on already-normalised series. Windows whose target falls in the last `validationSplit`
 * of a series are held out (their inputs may reach back into the training part); windows with a
 * non-finite value are skipped.
 */
export async function train(series: readonly Float64Array[], options: TrainOptions = {}): Promise<Trained> {
  const o = resolveOptions(options);
  const data = makeWindows(series, o);
  if (data.trainCount === 0 || data.validationCount === 0) {
    throw new VigilError('VIGIL_ERR_MODEL_TRAIN', `need training and validation windows of ${o.window + 1} finite values; got ${data.trainCount} and ${data.validationCount} from ${series.length} series`);
  }
  const tf = await initTf();
  const model = buildModel(tf, o);
  try {
    return { model, metadata: await fitAndEvaluate(tf, model, data, series, o) };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/** Trains `model` on the training windows, then measures it on the validation ones. */
async function fitAndEvaluate(tf: Tf, model: LayersModel, data: Windows, series: readonly Float64Array[], o: Required<TrainOptions>): Promise<LstmMetadata> {
  const x = tf.tensor3d(data.trainX, [data.trainCount, o.window, 1]);
  const y = tf.tensor2d(data.trainY, [data.trainCount, 1]);
  const random = mulberry32(o.seed);
  const order = Int32Array.from({ length: data.trainCount }, (_, i) => i);
  let finalTrainLoss = Number.NaN;
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      // Our own seeded shuffle: fit's `shuffle: true` draws from Math.random, so runs would differ.
      shuffle(order, random);
      const idx = tf.tensor1d(order, 'int32');
      const xs = tf.gather(x, idx);
      const ys = tf.gather(y, idx);
      try {
        const history = await model.fit(xs, ys, { epochs: 1, batchSize: o.batchSize, shuffle: false, verbose: 0 });
        const loss = history.history['loss']?.[0];
        finalTrainLoss = typeof loss === 'number' ? loss : Number.NaN;
      } finally {
        tf.dispose([idx, xs, ys]);
      }
    }
  } finally {
    tf.dispose([x, y]);
  }

  const forecasts = await predictWindows(model, data.validationX, o.window);
  let sq = 0;
  let zero = 0;
  for (let i = 0; i < data.validationCount; i++) {
    const target = data.validationY[i]!;
    sq += (target - forecasts[i]!) ** 2;
    zero += target * target;
  }
  return {
    version: 1,
    kind: 'lstm-forecaster',
    window: o.window,
    units: o.units,
    recurrentActivation: o.recurrentActivation,
    epochs: o.epochs,
    batchSize: o.batchSize,
    learningRate: o.learningRate,
    seed: o.seed,
    validationSplit: o.validationSplit,
    series: series.length,
    trainWindows: data.trainCount,
    validationWindows: data.validationCount,
    validationRmse: Math.sqrt(sq / data.validationCount),
    streamingValidationRmse: streamingRmse(new LstmForecaster(await weightsOf(model)), series, o),
    zeroForecastRmse: Math.sqrt(zero / data.validationCount),
    finalTrainLoss,
    trainedAt: new Date().toISOString(),
    normalisation: NORMALISATION,
    backend: tf.getBackend() as TfBackend,
  };
}

/**
 * Reads a `timestamp,value[,series]` CSV, normalises each series by its own median and MAD and
 * trains on all of them. Returns each series' normalisation next to the model.
 */
export async function trainFromCsv(path: string, options: TrainOptions = {}): Promise<Trained & { normalisation: Map<string, { median: number; scale: number }> }> {
  const normalisation = new Map<string, { median: number; scale: number }>();
  const series: Float64Array[] = [];
  for (const [name, values] of await readSeriesCsv(path)) {
    if (!values.some(Number.isFinite)) continue;
    const n = normalise(values);
    normalisation.set(name, { median: n.median, scale: n.scale });
    series.push(n.values);
  }
  return { ...(await train(series, options)), normalisation };
}

/** tfjs forecasts for `windows` (count × window values, row-major), in chunks to bound tensor memory. */
export async function predictWindows(model: LayersModel, windows: Float32Array, window: number, chunk = 4096): Promise<Float32Array> {
  const tf = await initTf();
  const count = windows.length / window;
  if (!Number.isInteger(count)) throw new RangeError(`predictWindows: ${windows.length} values is not a multiple of window ${window}`);
  const out = new Float32Array(count);
  for (let start = 0; start < count; start += chunk) {
    const n = Math.min(chunk, count - start);
    const y = tf.tidy(() => model.predict(tf.tensor3d(windows.subarray(start * window, (start + n) * window), [n, window, 1])) as Tensor);
    try {
      out.set(await y.data(), start);
    } finally {
      y.dispose();
    }
  }
  return out;
}

interface Windows {
  trainX: Float32Array;
  trainY: Float32Array;
  trainCount: number;
  validationX: Float32Array;
  validationY: Float32Array;
  validationCount: number;
}

/** First target index of a series' validation part. */
function validationStart(length: number, split: number): number {
  return Math.floor(length * (1 - split));
}

function makeWindows(series: readonly Float64Array[], o: Required<TrainOptions>): Windows {
  const w = o.window;
  // Two passes, count then fill, so each set is one flat Float32Array.
  const visit = (fn: (s: Float64Array, t: number, validation: boolean) => void): void => {
    for (const s of series) {
      const cut = validationStart(s.length, o.validationSplit);
      for (let t = w; t < s.length; t += o.stride) {
        if (finiteRange(s, t - w, t + 1)) fn(s, t, t >= cut);
      }
    }
  };
  let trainCount = 0;
  let validationCount = 0;
  visit((_s, _t, validation) => (validation ? validationCount++ : trainCount++));
  const out: Windows = {
    trainX: new Float32Array(trainCount * w),
    trainY: new Float32Array(trainCount),
    trainCount,
    validationX: new Float32Array(validationCount * w),
    validationY: new Float32Array(validationCount),
    validationCount,
  };
  let ti = 0;
  let vi = 0;
  visit((s, t, validation) => {
    if (validation) {
      out.validationX.set(s.subarray(t - w, t), vi * w);
      out.validationY[vi++] = s[t]!;
    } else {
      out.trainX.set(s.subarray(t - w, t), ti * w);
      out.trainY[ti++] = s[t]!;
    }
  });
  return out;
}

function finiteRange(s: Float64Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!Number.isFinite(s[i]!)) return false;
  return true;
}

/** RMSE on the validation targets with the cell streaming each series from a zero state at its start. */
function streamingRmse(cell: LstmForecaster, series: readonly Float64Array[], o: Required<TrainOptions>): number {
  let sq = 0;
  let n = 0;
  for (const s of series) {
    const state = cell.initState();
    const from = Math.max(o.window, validationStart(s.length, o.validationSplit));
    let forecast = Number.NaN;
    for (let t = 0; t < s.length; t++) {
      const v = s[t]!;
      if (t >= from && Number.isFinite(v) && Number.isFinite(forecast)) {
        sq += (v - forecast) ** 2;
        n++;
      }
      forecast = cell.step(state, v);
    }
  }
  return n === 0 ? Number.NaN : Math.sqrt(sq / n);
}

function resolveOptions(options: TrainOptions): Required<TrainOptions> {
  const o = { ...TRAIN_DEFAULTS, ...stripUndefined(options) };
  const positiveInt = (key: 'window' | 'units' | 'epochs' | 'batchSize' | 'stride'): void => {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw optionError(key, o[key], 'a positive integer');
  };
  positiveInt('window');
  positiveInt('units');
  positiveInt('epochs');
  positiveInt('batchSize');
  positiveInt('stride');
  if (!(o.validationSplit > 0 && o.validationSplit < 1)) throw optionError('validationSplit', o.validationSplit, 'a number in (0, 1)');
  if (!(o.learningRate > 0 && Number.isFinite(o.learningRate))) throw optionError('learningRate', o.learningRate, 'a positive number');
  if (!Number.isInteger(o.seed)) throw optionError('seed', o.seed, 'an integer');
  if (o.recurrentActivation !== 'hardSigmoid' && o.recurrentActivation !== 'sigmoid') throw optionError('recurrentActivation', o.recurrentActivation, "'hardSigmoid' or 'sigmoid'");
  return o;
}

function stripUndefined(options: TrainOptions): TrainOptions {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as TrainOptions;
}

function optionError(key: string, value: unknown, expected: string): VigilError {
  return new VigilError('VIGIL_ERR_CONFIG_INVALID', `LSTM training option ${key} must be ${expected}, got ${JSON.stringify(value)}`);
}


function shuffle(a: Int32Array, random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const tmp = a[i]!;
    a[i] = a[j]!;
    a[j] = tmp;
  }
}
