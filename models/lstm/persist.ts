/**
 * Saving and loading the forecaster as `model.json` + `weights.bin` + `metadata.json`. The first
 * two are the standard tfjs layers format (what `tf.loadLayersModel('file://…/model.json')` reads
 * under tfjs-node); pure @tensorflow/tfjs has no file handler in Node, so the artifacts are
 * captured with `withSaveHandler` and written here.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayersModel, io } from '@tensorflow/tfjs';
import { initTf } from './backend.js';
import type { LstmMetadata } from './model.js';
import { METADATA_FILE, MODEL_FILE, WEIGHTS_FILE, parseLstmWeights, readMetadata, readModelFiles, type LstmWeights } from './weights.js';

/** The model's topology, weight specs and weight bytes, as a tfjs save handler receives them. */
export async function modelArtifacts(model: LayersModel): Promise<io.ModelArtifacts & { weightBytes: Uint8Array }> {
  const tf = await initTf();
  let captured: io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!captured?.modelTopology || !captured.weightSpecs || !captured.weightData) throw new Error('tfjs save handler received no topology or weights');
  return { ...captured, weightBytes: new Uint8Array(tf.io.CompositeArrayBuffer.join(captured.weightData)) };
}

/** The in-memory model's weights for the hand-written cell (the same parser `loadWeights` uses). */
export async function weightsOf(model: LayersModel): Promise<LstmWeights> {
  const a = await modelArtifacts(model);
  return parseLstmWeights(a.modelTopology, a.weightSpecs ?? [], a.weightBytes);
}

/** Writes `dir/{model.json,weights.bin,metadata.json}`, creating `dir`; each file is replaced atomically. */
export async function save(dir: string, model: LayersModel, metadata: LstmMetadata): Promise<void> {
  const a = await modelArtifacts(model);
  const modelJson = {
    format: a.format ?? 'layers-model',
    generatedBy: a.generatedBy,
    convertedBy: a.convertedBy ?? null,
    modelTopology: a.modelTopology,
    ...(a.trainingConfig === undefined ? {} : { trainingConfig: a.trainingConfig }),
    weightsManifest: [{ paths: [WEIGHTS_FILE], weights: a.weightSpecs }],
  };
  await mkdir(dir, { recursive: true });
  await writeAtomic(join(dir, WEIGHTS_FILE), a.weightBytes);
  await writeAtomic(join(dir, MODEL_FILE), JSON.stringify(modelJson));
  await writeAtomic(join(dir, METADATA_FILE), `${JSON.stringify(metadata, null, 2)}\n`);
}

/** Reads a saved forecaster back into a tfjs model, with its metadata. */
export async function load(dir: string): Promise<{ model: LayersModel; metadata: LstmMetadata }> {
  const tf = await initTf();
  const files = await readModelFiles(dir);
  // tfjs wants the weights in a standalone ArrayBuffer: copy out of the (possibly pooled) file Buffer.
  const weightData = new Uint8Array(files.data).buffer;
  const artifacts = await tf.io.getModelArtifactsForJSON(files.modelJson as unknown as io.ModelJSON, async () => [files.specs as io.WeightsManifestEntry[], weightData]);
  const model = await tf.loadLayersModel({ load: async () => artifacts });
  return { model, metadata: await readMetadata(dir) };
}

async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
