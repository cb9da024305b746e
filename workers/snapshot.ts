import { deserialize, Serializer } from 'node:v8';
import type { SeriesModels } from '../models/ensemble.js';
import type { RuleSnapshot } from './alerts/evaluator.js';

/** What `detector_state` keeps of a series: where its detectors and rules stand. */
export interface SeriesSnapshot {
  lastBucketMs: number;
  buckets: number;
  models: SeriesModels | null;
  rules: RuleSnapshot[] | null;
}

/**
 * A series' snapshot as V8 writes it natively. node:v8's `serialize` hands every typed array to a
 * JavaScript callback (its DefaultSerializer treats them as host objects), which cost about as
 * much as the rest of the snapshot (`npm run bench:snapshot`); V8's own path writes each view and
 * its buffer. The detectors' typed arrays each own their buffer, so nothing beside them is written.
 */
export function writeSnapshot(snapshot: SeriesSnapshot): Buffer {
  const s = new Serializer();
  s.writeHeader();
  s.writeValue(snapshot);
  return s.releaseBuffer();
}

/** Reads what `writeSnapshot` wrote, and what node:v8's `serialize` wrote before it (stored rows restore as they did). */
export function readSnapshot(bytes: Uint8Array): SeriesSnapshot {
  return deserialize(bytes) as SeriesSnapshot;
}
