import { deserialize, Serializer } from 'node:v8';
import type { SeriesModels } from '../models/ensemble.js';
import type { ForecastState } from '../models/forecast.js';
import type { RuleSnapshot } from './alerts/evaluator.js';

/** What `detector_state` holds per series: everything a replay needs to judge the next bucket exactly as without it. */
export interface SeriesSnapshot {
  lastBucketMs: number;
  buckets: number;
  models: SeriesModels | null;
  rules: RuleSnapshot[] | null;
  /** Its forecast state, when the series is forecast (absent in snapshots written before forecasts). */
  forecast?: ForecastState | null;
}

/**
 * A series' snapshot as V8 writes it natively. node:v8's `serialize` hands every typed array to a
 * JavaScript callback (its DefaultSerializer treats them as host objects), which cost about as
 * much as the rest of the snapshot (`npm run bench:snapshot`); V8's own path writes each view and
 * its buffer.
 */
export function writeSnapshot(snapshot: SeriesSnapshot): Buffer {
  const s = new Serializer();
  s.writeHeader();
  s.writeValue(snapshot);
  return s.releaseBuffer();
}

/**
 * Reads what `writeSnapshot` wrote (and node:v8's `serialize` form too). Snapshots of another
 * layout never get here: MODEL_STATE_VERSION is part of the key they are stored under, so a Vigil
 * before it never reads these and this one starts a series written by one before it afresh.
 */
export function readSnapshot(bytes: Uint8Array): SeriesSnapshot {
  return deserialize(bytes) as SeriesSnapshot;
}
