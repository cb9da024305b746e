import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { DEFAULT_ENSEMBLE, Ensemble } from '../../../models/ensemble.js';
import { mulberry32 } from '../../../models/random.js';
import type { RuleSnapshot } from '../../../workers/alerts/evaluator.js';
import { readSnapshot, writeSnapshot, type SeriesSnapshot } from '../../../workers/snapshot.js';

/** A series' snapshot after `buckets` scored buckets of a noisy seasonal gauge. */
function snapshotAfter(buckets: number): SeriesSnapshot {
  const ensemble = new Ensemble(DEFAULT_ENSEMBLE, null, 1);
  const models = ensemble.init();
  const rand = mulberry32(7);
  for (let i = 0; i < buckets; i++) {
    const value = 50 + 10 * Math.sin(i / 12) + rand() * 3 + (i === buckets - 5 ? 40 : 0);
    ensemble.step(models, { tsMs: i * 60_000, widthMs: 60_000, value, count: 4, min: value - 1, max: value + 1, std: 0.5 });
  }
  // A rate rule's state as RuleEvaluator.snapshot gives it (its ring copied out).
  const ring = Float64Array.from({ length: 20 }, (_, i) => (i % 4 === 1 ? 5 : i / 3));
  const rule: RuleSnapshot = { ruleId: 'auth-failures', firing: true, since: Number.NaN, lastBad: 1_700_000_000_000, startsAt: 1_699_999_700_000, streak: 0, heldMs: 300_000, seededAt: -Infinity, ring, ringStart: 3, lastEnd: 1_700_000_060_000 };
  return { lastBucketMs: (buckets - 1) * 60_000, buckets, models, rules: [rule] };
}

function views(v: unknown, out: ArrayBufferView[] = []): ArrayBufferView[] {
  if (ArrayBuffer.isView(v)) out.push(v);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) views(x, out);
  return out;
}

describe('detector snapshots (detector_state)', () => {
  for (const buckets of [1, 40, 400]) {
    it(`read back as written, every typed array of the same kind and bits (after ${buckets} buckets)`, () => {
      const snap = snapshotAfter(buckets);
      const back = readSnapshot(writeSnapshot(snap));
      expect(back).toStrictEqual(snap);
      const [a, b] = [views(snap), views(back)];
      expect(b.map((v) => v.constructor.name)).toEqual(a.map((v) => v.constructor.name));
      for (const [i, v] of a.entries()) expect(Buffer.from((b[i] as ArrayBufferView).buffer)).toEqual(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    });
  }

  it('writes no byte beside the detectors’ arrays: each owns its whole buffer', () => {
    for (const v of views(snapshotAfter(400))) expect(v.byteLength).toBe(v.buffer.byteLength);
  });

  it('leaves the live state as it was, and a series continued from its snapshot scores as one never interrupted', () => {
    const ensemble = new Ensemble(DEFAULT_ENSEMBLE, null, 1);
    const live = ensemble.init();
    const rand = mulberry32(11);
    const obs = (i: number) => {
      const value = 20 + 5 * Math.cos(i / 9) + rand() * 2 + (i % 97 === 0 ? 15 : 0);
      return { tsMs: i * 60_000, widthMs: 60_000, value, count: 3, min: value - 1, max: value + 1, std: 0.4 };
    };
    for (let i = 0; i < 200; i++) ensemble.step(live, obs(i));
    const copy = structuredClone(live);
    const bytes = writeSnapshot({ lastBucketMs: 0, buckets: 200, models: live, rules: null });
    expect(live).toStrictEqual(copy);
    const restored = readSnapshot(bytes).models as typeof live;
    expect(restored).toStrictEqual(live);
    for (let i = 200; i < 400; i++) {
      const o = obs(i);
      expect(ensemble.step(restored, o)).toStrictEqual(ensemble.step(live, o));
    }
  });

  it('reads node:v8 serialize’s form too (typed arrays as host objects)', () => {
    const snap = snapshotAfter(120);
    const old = serialize(snap);
    expect(old.equals(writeSnapshot(snap))).toBe(false);
    expect(readSnapshot(old)).toStrictEqual(snap);
  });
});
