import { mulberry32 as prng } from '../../../models/random.js';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LstmForecaster,
  buildModel,
  initTf,
  load,
  loadWeights,
  normalise,
  parseSeriesCsv,
  predictWindows,
  readMetadata,
  save,
  tfInitReport,
  train,
  trainFromCsv,
  type LstmWeights,
  type Trained,
} from '../../../models/lstm/index.js';
import { VigilError } from '../../../core/errors.js';


function gaussian(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** Raw sine + noise series around different levels and amplitudes, as a service would report them. */
function syntheticSeries(count: number, length: number, seed: number): Float64Array[] {
  const random = prng(seed);
  return Array.from({ length: count }, () => {
    const level = 50 + 100 * random();
    const amplitude = 5 + 10 * random();
    const period = 16 + Math.floor(16 * random());
    const phase = 2 * Math.PI * random();
    return Float64Array.from({ length }, (_, t) => level + amplitude * Math.sin((2 * Math.PI * t) / period + phase) + 0.1 * amplitude * gaussian(random));
  });
}

/** Max |cell − tfjs| over the windows (count × window values, row-major). */
async function parityError(trained: Trained['model'], weights: LstmWeights, windows: Float32Array, window: number): Promise<number> {
  const expected = await predictWindows(trained, windows, window);
  const cell = new LstmForecaster(weights);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const got = cell.forecastWindow(windows.subarray(i * window, (i + 1) * window));
    worst = Math.max(worst, Math.abs(got - expected[i]!));
  }
  return worst;
}

/** Swaps gate blocks `a` and `b` (0 i, 1 f, 2 c, 3 o) along the last axis of every LSTM weight. */
function swapGates(w: LstmWeights, a: number, b: number): LstmWeights {
  const u = w.units;
  const swap = (src: Float32Array, rows: number): Float32Array => {
    const out = src.slice();
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < u; j++) {
        out[r * 4 * u + a * u + j] = src[r * 4 * u + b * u + j]!;
        out[r * 4 * u + b * u + j] = src[r * 4 * u + a * u + j]!;
      }
    }
    return out;
  };
  return { ...w, kernel: swap(w.kernel, 1), recurrentKernel: swap(w.recurrentKernel, u), bias: swap(w.bias, 1) };
}

/** tfjs-node is optional; where it is not installed (the default), training runs on WASM. */
function tfjsNodeInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}
const expectedBackend = tfjsNodeInstalled() ? 'tensorflow' : 'wasm';

describe('normalise', () => {
  it('centres on the median and scales by 1.4826·MAD, leaving gaps as NaN', () => {
    const n = normalise([1, 2, 3, 4, 100, Number.NaN]);
    expect(n.median).toBe(3);
    expect(n.scale).toBeCloseTo(1.4826 * 1, 12);
    expect(n.values[2]).toBe(0);
    expect(n.values[4]).toBeCloseTo(97 / 1.4826, 9);
    expect(Number.isNaN(n.values[5])).toBe(true);
  });

  it('falls back to the mean absolute deviation when most values are equal, and to 1 for a constant series', () => {
    const sparse = normalise([0, 0, 0, 0, 0, 0, 10]);
    expect(sparse.median).toBe(0);
    expect(sparse.scale).toBeCloseTo((Math.sqrt(Math.PI / 2) * 10) / 7, 12);
    const constant = normalise([5, 5, 5]);
    expect(constant.scale).toBeCloseTo(5e-6, 18);
    expect(normalise([0, 0, 0]).scale).toBe(1);
    expect(() => normalise([Number.NaN])).toThrow(VigilError);
  });
});

describe('parseSeriesCsv', () => {
  it('reads headerless two-column rows into one series ordered by timestamp', () => {
    const m = parseSeriesCsv('3,30\n1,10\n2,\n');
    expect([...m.keys()]).toEqual(['default']);
    const v = m.get('default')!;
    expect(v[0]).toBe(10);
    expect(Number.isNaN(v[1])).toBe(true);
    expect(v[2]).toBe(30);
  });

  it('locates columns by header names, splits by series, reads ISO timestamps and quoted names', () => {
    const m = parseSeriesCsv('series,timestamp,value\n"a,1",2024-01-01T00:01:00Z,2\nb,2024-01-01T00:00:00Z,5\n"a,1",2024-01-01T00:00:00Z,1\n');
    expect([...(m.get('a,1') ?? [])]).toEqual([1, 2]);
    expect([...(m.get('b') ?? [])]).toEqual([5]);
  });

  it('names the line of a bad row', () => {
    expect(() => parseSeriesCsv('ts,value\n1,2\nx,3\n', 'in.csv')).toThrow(/in\.csv:3: timestamp/);
    expect(() => parseSeriesCsv('1,2\n2,abc\n', 'in.csv')).toThrow(/in\.csv:2: value "abc"/);
  });
});

describe('LSTM forecaster', () => {
  const window = 16;
  const raw = syntheticSeries(6, 320, 7);
  const series = raw.map((s) => normalise(s).values);
  let trained: Trained;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vigil-lstm-'));
    trained = await train(series, { window, units: 8, epochs: 3, batchSize: 32, learningRate: 0.01, seed: 1 });
    await save(dir, trained.model, trained.metadata);
  });

  afterAll(async () => {
    trained.model.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs on tfjs-node when installed, else on WASM, and says why it skipped a backend', async () => {
    await initTf();
    const report = tfInitReport();
    expect(report?.backend).toBe(expectedBackend);
    expect(trained.metadata.backend).toBe(expectedBackend);
    expect(report?.skipped.map((s) => s.backend)).toEqual(expectedBackend === 'wasm' ? ['tensorflow'] : []);
    for (const s of report?.skipped ?? []) expect(s.reason).not.toBe('');
  });

  it('learns something: validation RMSE is finite and below that of forecasting the median', () => {
    const m = trained.metadata;
    expect(Number.isFinite(m.validationRmse)).toBe(true);
    expect(m.validationRmse).toBeLessThan(0.8 * m.zeroForecastRmse);
    // The worker-side streaming forecast (persistent state, no window) must be as useful.
    expect(m.streamingValidationRmse).toBeLessThan(0.8 * m.zeroForecastRmse);
    expect(m.trainWindows + m.validationWindows).toBe(6 * (320 - window));
    expect(m.validationWindows).toBe(6 * 64);
  });

  it('saves model.json, weights.bin and metadata.json, and loads a model with identical predictions', async () => {
    for (const f of ['model.json', 'weights.bin', 'metadata.json']) expect(existsSync(join(dir, f))).toBe(true);
    const metadata = await readMetadata(dir);
    expect(metadata).toMatchObject({ version: 1, kind: 'lstm-forecaster', window, units: 8, epochs: 3, normalisation: 'per-series robust (median, 1.4826*MAD)', backend: expectedBackend });
    expect(metadata.trainWindows).toBe(trained.metadata.trainWindows);
    expect(metadata.validationRmse).toBe(trained.metadata.validationRmse);
    expect(Number.isNaN(Date.parse(metadata.trainedAt))).toBe(false);
    const modelJson = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { format: string; weightsManifest: { paths: string[] }[] };
    expect(modelJson.format).toBe('layers-model');
    expect(modelJson.weightsManifest[0]?.paths).toEqual(['weights.bin']);

    const loaded = await load(dir);
    try {
      const windows = Float32Array.from(series[0]!.subarray(0, 20 * window));
      expect(await predictWindows(loaded.model, windows, window)).toEqual(await predictWindows(trained.model, windows, window));
      expect(loaded.metadata).toEqual(metadata);
    } finally {
      loaded.model.dispose();
    }
  });

  it('hand-written cell matches tfjs model.predict within 1e-4 on 50 random windows (hardSigmoid gates)', async () => {
    const weights = await loadWeights(dir);
    expect(weights.recurrentActivation).toBe('hardSigmoid');
    expect(weights).toMatchObject({ window, units: 8 });
    const random = prng(99);
    const windows = new Float32Array(50 * window);
    for (let i = 0; i < 50; i++) {
      const s = series[Math.floor(random() * series.length)]!;
      const start = Math.floor(random() * (s.length - window));
      // Half from the data, half far outside it, to drive the gates into saturation too.
      for (let t = 0; t < window; t++) windows[i * window + t] = i % 2 === 0 ? s[start + t]! : 4 * gaussian(random);
    }
    expect(await parityError(trained.model, weights, windows, window)).toBeLessThan(1e-4);

    // The check above must be able to fail: a cell with two gates swapped, or the wrong gate
    // activation, is far off.
    expect(await parityError(trained.model, swapGates(weights, 0, 1), windows, window)).toBeGreaterThan(1e-2);
    expect(await parityError(trained.model, swapGates(weights, 2, 3), windows, window)).toBeGreaterThan(1e-2);
    expect(await parityError(trained.model, { ...weights, recurrentActivation: 'sigmoid' }, windows, window)).toBeGreaterThan(1e-2);
  });

  it('hand-written cell matches tfjs with sigmoid gates too', async () => {
    const tf = await initTf();
    const model = buildModel(tf, { window: 12, units: 5, recurrentActivation: 'sigmoid', seed: 3 });
    const sigmoidDir = join(dir, 'sigmoid');
    try {
      await save(sigmoidDir, model, trained.metadata);
      const weights = await loadWeights(sigmoidDir);
      expect(weights.recurrentActivation).toBe('sigmoid');
      const random = prng(5);
      const windows = Float32Array.from({ length: 50 * 12 }, () => 2 * gaussian(random));
      expect(await parityError(model, weights, windows, 12)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('steps in place from a zero state, and a gap returns NaN without touching the state', async () => {
    const cell = new LstmForecaster(await loadWeights(dir));
    expect(cell.stateSize).toBe(16);
    const state = cell.initState();
    expect([...state].every((v) => v === 0)).toBe(true);
    cell.step(state, 0.5);
    const before = state.slice();
    expect(before.some((v) => v !== 0)).toBe(true);
    expect(Number.isNaN(cell.step(state, Number.NaN))).toBe(true);
    expect(state).toEqual(before);
  });

  it('rejects a missing or foreign model directory with VIGIL_ERR_MODEL_LOAD', async () => {
    await expect(loadWeights(join(dir, 'nope'))).rejects.toMatchObject({ code: 'VIGIL_ERR_MODEL_LOAD' });
    const foreign = join(dir, 'foreign');
    await save(foreign, trained.model, trained.metadata);
    await writeFile(join(foreign, 'metadata.json'), '{"kind":"isolation-forest","version":1}');
    await expect(readMetadata(foreign)).rejects.toMatchObject({ code: 'VIGIL_ERR_MODEL_LOAD' });
  });

  it('is reproducible for a seed, and trains from a CSV', async () => {
    const rows = ['timestamp,value,series'];
    raw.slice(0, 2).forEach((s, k) => s.forEach((v, t) => rows.push(`${t * 60_000},${v},s${k}`)));
    const path = join(dir, 'series.csv');
    await writeFile(path, rows.join('\n'));
    const options = { window, units: 4, epochs: 1, batchSize: 64, seed: 11 };
    const a = await trainFromCsv(path, options);
    const b = await trainFromCsv(path, options);
    try {
      expect([...a.normalisation.keys()]).toEqual(['s0', 's1']);
      expect(a.normalisation.get('s0')?.median).toBeCloseTo(normalise(raw[0]!).median, 12);
      expect(a.metadata.validationRmse).toBe(b.metadata.validationRmse);
    } finally {
      a.model.dispose();
      b.model.dispose();
    }
  });

  it('refuses options out of range and data too short for one window', async () => {
    await expect(train(series, { window: 0 })).rejects.toMatchObject({ code: 'VIGIL_ERR_CONFIG_INVALID' });
    await expect(train(series, { validationSplit: 1 })).rejects.toMatchObject({ code: 'VIGIL_ERR_CONFIG_INVALID' });
    await expect(train([new Float64Array(10)], { window: 16 })).rejects.toMatchObject({ code: 'VIGIL_ERR_MODEL_TRAIN' });
  });
});
