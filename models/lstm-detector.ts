import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { METADATA_FILE, loadWeights, type LstmWeights } from './lstm/index.js';

/** A trained LSTM as the ensemble uses it: the weights for the typed-array cell, and its validation error. */
export interface LoadedLstm {
  weights: LstmWeights;
  /** Validation RMSE in normalised units: the prior of the per-series residual σ. */
  validationRmse: number;
  dir: string;
}

export async function loadLstm(dir: string): Promise<LoadedLstm> {
  const weights = await loadWeights(dir);
  const metadata = JSON.parse(await readFile(join(dir, METADATA_FILE), 'utf8')) as { validationRmse?: unknown; streamingValidationRmse?: unknown };
  // The streaming error (state carried through each series, as workers run it) is the honest prior;
  // window RMSE from a zero state understates it.
  const pick = (x: unknown): number | null => (typeof x === 'number' && x > 0 ? x : null);
  const rmse = pick(metadata.streamingValidationRmse) ?? pick(metadata.validationRmse) ?? 1;
  return { weights, validationRmse: rmse, dir };
}
