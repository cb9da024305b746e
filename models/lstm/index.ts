/**
 * LSTM forecaster (DESIGN.md §8): trained with TensorFlow.js, scored in workers one step per
 * closed bucket by a hand-written typed-array cell. Importing this module does not load tfjs;
 * `initTf`, `train`, `save` and `load` do, on first use.
 */
export { initTf, tfInitReport } from './backend.js';
export type { Tf, TfBackend, TfInitReport } from './backend.js';
export { LstmForecaster } from './cell.js';
export { DEFAULT_SERIES, normalise, parseSeriesCsv, readSeriesCsv } from './data.js';
export type { Normalised } from './data.js';
export { NORMALISATION, TRAIN_DEFAULTS, buildModel, predictWindows, train, trainFromCsv } from './model.js';
export type { LstmMetadata, TrainOptions, Trained } from './model.js';
export { load, modelArtifacts, save, weightsOf } from './persist.js';
export { METADATA_FILE, MODEL_FILE, WEIGHTS_FILE, loadWeights, parseLstmWeights, readMetadata } from './weights.js';
export type { LstmWeights, RecurrentActivation, WeightSpec } from './weights.js';
