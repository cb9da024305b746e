/**
 * Reads a saved forecaster (tfjs layers format: model.json + weights.bin) into flat typed arrays
 * for the hand-written cell, without TensorFlow.js: worker threads score with the cell and never
 * load tfjs.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { concat } from '../../core/bytes.js';
import { VigilError } from '../../core/errors.js';
import type { LstmMetadata } from './model.js';

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const METADATA_FILE = 'metadata.json';

export type RecurrentActivation = 'hardSigmoid' | 'sigmoid';

/**
 * One univariate LSTM layer (tanh activation) followed by Dense(1, linear), as Keras/tfjs lay the
 * weights out: gate blocks in the order input (i), forget (f), cell candidate (c), output (o),
 * each `units` wide, along the last axis of the kernels and the bias.
 */
export interface LstmWeights {
  /** Input length the model was trained on (the cell itself steps any number of times). */
  window: number;
  units: number;
  recurrentActivation: RecurrentActivation;
  /** Input kernel [1, 4·units]. */
  kernel: Float32Array;
  /** Recurrent kernel [units, 4·units], row-major: row k multiplies h[k]. */
  recurrentKernel: Float32Array;
  /** [4·units]; zeros when the layer has no bias. */
  bias: Float32Array;
  /** Dense kernel [units, 1]. */
  denseKernel: Float32Array;
  denseBias: number;
}

/** The subset of a tfjs weights-manifest entry this reader needs. */
export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: unknown;
}

export interface WeightsManifestGroup {
  paths: string[];
  weights: WeightSpec[];
}

/** Reads `dir/model.json` and the weight files its manifest names (normally one `weights.bin`). */
export async function loadWeights(dir: string): Promise<LstmWeights> {
  const files = await readModelFiles(dir);
  return parseLstmWeights(files.modelJson['modelTopology'], files.specs, files.data);
}

/** model.json parsed, the weight specs of all manifest groups in order, and their bytes concatenated. */
export async function readModelFiles(dir: string): Promise<{ modelJson: Record<string, unknown>; specs: WeightSpec[]; data: Uint8Array }> {
  const modelJson = await readJson(join(dir, MODEL_FILE));
  if (typeof modelJson !== 'object' || modelJson === null || Array.isArray(modelJson)) throw fileError(`${MODEL_FILE} is not a JSON object`);
  const manifest = field(modelJson, 'weightsManifest');
  if (!Array.isArray(manifest)) throw fileError(`${MODEL_FILE} has no weightsManifest array`);
  const specs: WeightSpec[] = [];
  const shards: Uint8Array[] = [];
  // The weight data of a manifest is its groups' shards concatenated in order (tfjs io convention).
  for (const group of manifest as WeightsManifestGroup[]) {
    if (!Array.isArray(group.paths) || !Array.isArray(group.weights)) throw fileError('a weightsManifest entry lacks paths or weights');
    specs.push(...group.weights);
    for (const path of group.paths) shards.push(await readBinary(join(dir, path)));
  }
  return { modelJson: modelJson as Record<string, unknown>, specs, data: concat(shards) };
}

/**
 * Builds `LstmWeights` from a layers-model topology (as tfjs serialises it: snake_case keys), the
 * weight specs in storage order and the concatenated little-endian float32 weight bytes.
 */
export function parseLstmWeights(topology: unknown, specs: readonly WeightSpec[], data: Uint8Array): LstmWeights {
  const layers = sequentialLayers(topology);
  const lstm = layers.find((l) => l.className === 'LSTM');
  const dense = layers.find((l) => l.className === 'Dense');
  if (!lstm || !dense || layers.indexOf(dense) !== layers.indexOf(lstm) + 1) throw fileError('expected an LSTM layer followed by a Dense layer');
  const units = lstm.config['units'];
  if (typeof units !== 'number' || !Number.isInteger(units) || units < 1) throw fileError('LSTM units is not a positive integer');
  const inputShape = lstm.config['batch_input_shape'] ?? lstm.config['batchInputShape'];
  const window = Array.isArray(inputShape) ? (inputShape as unknown[])[1] : undefined;
  const features = Array.isArray(inputShape) ? (inputShape as unknown[])[2] : undefined;
  if (typeof window !== 'number' || features !== 1) throw fileError(`LSTM input shape must be [null, window, 1], got ${JSON.stringify(inputShape)}`);
  if (configValue(lstm.config, 'return_sequences') === true) throw fileError('LSTM layer returns sequences; a forecaster needs the last output only');
  const activation = configValue(lstm.config, 'activation') ?? 'tanh';
  if (activation !== 'tanh') throw fileError(`LSTM activation ${String(activation)} is not supported (tanh only)`);
  const recurrentActivation = parseRecurrentActivation(configValue(lstm.config, 'recurrent_activation') ?? 'hard_sigmoid');
  if (dense.config['units'] !== 1) throw fileError('Dense layer must have one unit');
  const denseActivation = configValue(dense.config, 'activation') ?? 'linear';
  if (denseActivation !== 'linear') throw fileError(`Dense activation ${String(denseActivation)} is not supported (linear only)`);

  const tensors = sliceTensors(specs, data);
  const take = (name: string, size: number, optional = false): Float32Array => {
    const t = tensors.get(name);
    if (!t) {
      if (optional) return new Float32Array(size);
      throw fileError(`weight ${name} is missing`);
    }
    if (t.length !== size) throw fileError(`weight ${name} has ${t.length} values, expected ${size}`);
    return t;
  };
  const g = 4 * units;
  const lstmBias = configValue(lstm.config, 'use_bias') !== false;
  const denseHasBias = configValue(dense.config, 'use_bias') !== false;
  return {
    window,
    units,
    recurrentActivation,
    kernel: take(`${lstm.name}/kernel`, g),
    recurrentKernel: take(`${lstm.name}/recurrent_kernel`, units * g),
    bias: take(`${lstm.name}/bias`, g, !lstmBias),
    denseKernel: take(`${dense.name}/kernel`, units),
    denseBias: take(`${dense.name}/bias`, 1, !denseHasBias)[0] ?? 0,
  };
}

function parseRecurrentActivation(name: unknown): RecurrentActivation {
  // tfjs serialises activations in Keras' snake_case ('hard_sigmoid'); accept the camelCase class name too.
  if (name === 'hard_sigmoid' || name === 'hardSigmoid') return 'hardSigmoid';
  if (name === 'sigmoid') return 'sigmoid';
  throw fileError(`LSTM recurrent activation ${String(name)} is not supported (hard_sigmoid or sigmoid)`);
}

interface LayerInfo {
  className: string;
  name: string;
  config: Record<string, unknown>;
}

function sequentialLayers(topology: unknown): LayerInfo[] {
  if (typeof topology !== 'object' || topology === null) throw fileError('modelTopology is missing');
  // Keras wraps a saved model as { model_config: {...} } in some versions; tfjs writes the config directly.
  const root = field(topology, 'model_config') ?? topology;
  if (field(root, 'class_name') !== 'Sequential') throw fileError(`expected a Sequential model, got ${String(field(root, 'class_name'))}`);
  const config = field(root, 'config');
  const raw = Array.isArray(config) ? config : field(config, 'layers');
  if (!Array.isArray(raw)) throw fileError('Sequential model has no layers');
  return raw.map((layer: unknown) => {
    const className = field(layer, 'class_name');
    const cfg = field(layer, 'config');
    if (typeof className !== 'string' || typeof cfg !== 'object' || cfg === null) throw fileError('a layer lacks class_name or config');
    const name = field(cfg, 'name');
    if (typeof name !== 'string') throw fileError(`${className} layer has no name`);
    return { className, name, config: cfg as Record<string, unknown> };
  });
}

function sliceTensors(specs: readonly WeightSpec[], data: Uint8Array): Map<string, Float32Array> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Map<string, Float32Array>();
  let offset = 0;
  for (const spec of specs) {
    if (spec.dtype !== 'float32' || spec.quantization !== undefined) throw fileError(`weight ${spec.name} is ${spec.dtype}${spec.quantization === undefined ? '' : ' (quantised)'}; only plain float32 is supported`);
    const size = spec.shape.reduce((a, b) => a * b, 1);
    if (offset + size * 4 > data.byteLength) throw fileError(`weight data ends inside ${spec.name} (${data.byteLength} bytes)`);
    const values = new Float32Array(size);
    // DataView rather than a Float32Array view: the file's bytes need not be 4-byte aligned in memory.
    for (let i = 0; i < size; i++) values[i] = view.getFloat32(offset + i * 4, true);
    out.set(spec.name, values);
    offset += size * 4;
  }
  if (offset !== data.byteLength) throw fileError(`weight data has ${data.byteLength - offset} bytes the manifest does not describe`);
  return out;
}

/** A Keras config value under its snake_case name, or tfjs' camelCase one. */
function configValue(config: Record<string, unknown>, snake: string): unknown {
  const v = config[snake];
  if (v !== undefined) return v;
  return config[snake.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())];
}

function field(obj: unknown, key: string): unknown {
  return typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
}


export async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fileError(`cannot read ${path}`, err);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fileError(`${path} is not valid JSON`, err);
  }
}

async function readBinary(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    throw fileError(`cannot read ${path}`, err);
  }
}

function fileError(message: string, cause?: unknown): VigilError {
  return new VigilError('VIGIL_ERR_MODEL_LOAD', message, cause === undefined ? {} : { cause });
}

/** Reads `dir/metadata.json` (no tfjs), checking it describes a version-1 LSTM forecaster. */
export async function readMetadata(dir: string): Promise<LstmMetadata> {
  const metadata = await readJson(join(dir, METADATA_FILE));
  if (field(metadata, 'kind') !== 'lstm-forecaster' || field(metadata, 'version') !== 1) {
    throw fileError(`${join(dir, METADATA_FILE)} is not version-1 lstm-forecaster metadata (kind ${String(field(metadata, 'kind'))}, version ${String(field(metadata, 'version'))})`);
  }
  return metadata as LstmMetadata;
}
