import { deserialize, Serializer } from 'node:v8';
import type { SeriesModels } from '../models/ensemble.js';
import type { RuleSnapshot } from './alerts/evaluator.js';

/** What `detector_state` holds per series: everything a replay needs to judge the next bucket exactly as without it. */
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
  // The robust detector's sorted window is its ring sorted (an eighth of the bytes): left out,
  // and rebuilt on reading. Swapped for the write rather than copying the models per snapshot;
  // nothing runs between the swap and its undoing.
  const robust = snapshot.models?.robust;
  const sorted = robust?.sorted;
  if (robust) robust.sorted = LEFT_OUT;
  try {
    s.writeValue(snapshot);
  } finally {
    if (robust) robust.sorted = sorted as Float64Array;
  }
  return s.releaseBuffer();
}

const LEFT_OUT = new Float64Array(0);

/**
 * Reads what `writeSnapshot` wrote (and node:v8's `serialize` form too). Snapshots of another
 * layout never get here: MODEL_STATE_VERSION (5 since the sorted window is left out) is part of
 * the key they are stored under, so a Vigil before it never reads these and this one starts a
 * series written by one before it afresh.
 */
export function readSnapshot(bytes: Uint8Array): SeriesSnapshot {
  const snapshot = deserialize(bytes) as SeriesSnapshot;
  const robust = snapshot.models?.robust;
  if (robust && robust.sorted.length === 0 && robust.ring.length > 0) {
    // The values in the window: the whole ring once it has wrapped, else its first n.
    const size = Math.min(robust.n, robust.ring.length);
    robust.sorted = new Float64Array(robust.ring.length);
    robust.sorted.set(robust.ring.subarray(0, size).slice().sort());
  }
  return snapshot;
}
