import { getHeapStatistics } from 'node:v8';
import { readSnapshot, writeSnapshot, type SeriesSnapshot } from './snapshot.js';
import { RollupEncoder } from './encode/rollups.js';
import { StateEncoder } from './encode/state.js';
import type { RowBinaryWriter } from './encode/rowbinary.js';
import { AnomalyEncoder } from './encode/anomalies.js';
import { RollupState, type ClosedBucket, type ClosedBucketStage } from './rollup.js';
import { dictEntry, emptyShardResult, filterBatch, lowerHold, REFUSED_SAMPLE_BYTES, snapshotKey, type HeldOffset, type ModelSettings, type RefusedPoints, type RollupSettings, type ShardBatch, type ShardResult, type ShardTask } from './shard-task.js';
import { Ensemble, type SeriesModels } from '../models/ensemble.js';
import { loadLstm } from '../models/lstm-detector.js';
import { RuleEvaluator } from './alerts/evaluator.js';
import { compileMatcher, matchesSeries, tagObject, type CompiledRule } from './alerts/rules.js';
import { ForecastEncoder } from './encode/forecasts.js';
import { Forecaster, forecastLength, initForecast, type ForecastState } from '../models/forecast.js';

/**
 * Per-series state of this thread's shard: the series registry (last seen, for eviction), the
 * rollup buckets, detector state and alert-rule state. Module scope is per thread and a thread serves
 * exactly one shard (pipeline/pool.ts), so nothing here is shared.
 */
interface SeriesState {
  /** The key it is held under: the rollups key their slots by the same object (one BigInt per series, not one per map). */
  id: bigint;
  /** Its tenant ('' the default tenant): what `tenantSeries` counts it under. */
  tenant: string;
  lastSeenMs: number;
  /** The source partition (`topic/partition`) it first came from, and whether another one sent it since. */
  source: string;
  split: boolean;
  /** Detector state, created at the series' first scored bucket. */
  models: SeriesModels | null;
  /**
   * Start of the last bucket of the scored width the detectors and rules have seen (NaN: none),
   * and how many they have: a bucket at or before it is not judged again (a replay after a
   * restore, or the second partial bucket of a series split over partitions).
   */
  lastBucketMs: number;
  buckets: number;
  /** The partition whose unsaved state holds buckets it was judged on since its state was last written (null: none). */
  unsaved: Unsaved | null;
  /**
   * Its forecast state (models/forecast.ts): undefined until its first scored bucket decides
   * whether `forecasts.series` selects it (and again after a restore: the selectors may have
   * changed), null when not selected.
   */
  forecast: ForecastState | null | undefined;
}

/**
 * Per source partition: the series judged on it since their state was last written, and where a
 * replay must start to judge those buckets again (the lowest base offset among them). Writing a
 * series' state after every task cost a 6.8 KB row per scored series per task, as many bytes as
 * the points themselves in a drain; now it is written once the partition's event time has moved
 * `stateIntervalMs` past the first unsaved bucket, and until then `held` keeps the partition's
 * commit at that bucket. A replay restores the last state written and judges the same buckets in
 * the same order to the same scores (detectors and rules are deterministic), and skips those
 * judged before it (`lastBucketMs`).
 */
interface Unsaved {
  topic: string;
  partition: number;
  series: Set<bigint>;
  hold: HeldOffset | null;
  firstStartMs: number;
}
const unsavedParts = new Map<string, Unsaved>();
const partKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

function unsavedOf(topic: string, partition: number): Unsaved {
  const key = partKey(topic, partition);
  let u = unsavedParts.get(key);
  if (!u) unsavedParts.set(key, (u = { topic, partition, series: new Set(), hold: null, firstStartMs: Infinity }));
  return u;
}

const series = new Map<bigint, SeriesState>();
/** The tenant of a restored series, until its next point names it (counted then). */
const UNKNOWN_TENANT = '\u0000';
/** Series held per named tenant (issue 18: `tenants.maxSeriesPerShard`). */
const tenantSeries = new Map<string, number>();

function forgetSeries(id: bigint): void {
  const s = series.get(id);
  if (!s) return;
  series.delete(id);
  if (s.tenant === '' || s.tenant === UNKNOWN_TENANT) return;
  const n = (tenantSeries.get(s.tenant) ?? 1) - 1;
  if (n <= 0) tenantSeries.delete(s.tenant);
  else tenantSeries.set(s.tenant, n);
}
/** Forecast states read back from `detector_state`, until the series' next bucket decides whether it is still selected. */
const restoredForecasts = new Map<bigint, ForecastState>();
let rollups: RollupState | undefined;
let rollupKey = '';
let lastSweepMs = 0;
const stages: ClosedBucketStage[] = [];

/** `stateKey`: its detector_state rows' settings tag (a hash of the settings, 21 µs: made once here, not per task). */
let scoring: { key: string; settings: ModelSettings; ensemble: Ensemble; stateKey: string; forecaster: Forecaster; selectors: Selector[] } | undefined;

/** A compiled `forecasts.series` selector: matched as a rule's metric and tags are. */
type Selector = Pick<CompiledRule, 'metric' | 'tags'>;
let rules = new RuleEvaluator();
/** The rules generation the series' forecast decisions were made under. */
let forecastRulesGeneration = 0;
let rulesWidthMs = 0;
/** Closed buckets of the scored (or rules') width, collected by the stage below during one task. */
const toScore: ClosedBucket[] = [];
stages.push((b) => {
  if ((scoring && b.widthMs === scoring.settings.widthMs) || (rules.ruleCount > 0 && b.widthMs === rulesWidthMs)) toScore.push(b);
});

/**
 * Makes the ensemble for `settings` (loading the LSTM model, the one asynchronous part) before
 * `track` needs it. Idempotent for unchanged settings; new settings start the detectors afresh.
 */
export async function prepareModels(settings: ModelSettings): Promise<void> {
  const key = JSON.stringify(settings);
  if (scoring?.key === key) return;
  const lstm = settings.lstmModelDir && settings.ensemble.detectors.includes('lstm') ? await loadLstm(settings.lstmModelDir) : null;
  const ensemble = new Ensemble(settings.ensemble, lstm?.weights ?? null, lstm?.validationRmse ?? 1);
  const selectors = (settings.forecast?.series ?? []).map((sel) => ({ metric: compileMatcher(sel.metric), tags: Object.entries(sel.tags).map(([key, text]) => ({ key, match: compileMatcher(text) })) }));
  scoring = { key, settings, ensemble, stateKey: snapshotKey(settings, settings.widthMs), forecaster: new Forecaster(ensemble.seasonal), selectors };
  for (const s of series.values()) {
    s.models = null;
    s.forecast = undefined;
  }
  restoredForecasts.clear();
}

/**
 * Scores the closed buckets of this task, in closing order, into `anomalies` rows, and runs the
 * alert rules on them (anomaly rules read the score of the same bucket). Each judged series joins
 * its partition's unsaved ones (saveDue writes their state).
 */
function scoreClosed(encoder: AnomalyEncoder, forecasts: ForecastEncoder, withModels: boolean, widthMs: number): { scored: number; flagged: number } {
  let scored = 0;
  let flagged = 0;
  const model = scoring && withModels && scoring.settings.widthMs === widthMs ? scoring : null;
  if (rules.generation !== forecastRulesGeneration) {
    // Another rules file: its forecast rules may need series forecast that were not.
    forecastRulesGeneration = rules.generation;
    for (const s of series.values()) if (s.forecast === null) s.forecast = undefined;
  }
  for (const b of toScore) {
    const s = series.get(b.seriesId);
    if (!s || b.widthMs !== widthMs) continue;
    if (b.startMs <= s.lastBucketMs) continue;
    s.lastBucketMs = b.startMs;
    s.buckets++;
    const u = s.unsaved?.partition === b.partition && s.unsaved.topic === b.topic ? s.unsaved : unsavedOf(b.topic, b.partition);
    s.unsaved = u;
    u.series.add(b.seriesId);
    if (!u.hold || b.baseOffset < u.hold.offset) u.hold = { offset: b.baseOffset, maxBeforeMs: b.baseMaxBeforeMs };
    if (b.startMs < u.firstStartMs) u.firstStartMs = b.startMs;
    if (!model) {
      rules.onBucket(b, null, null);
      continue;
    }
    const { ensemble, settings } = model;
    const m = (s.models ??= ensemble.init());
    const mean = b.sum / b.count;
    const std = Math.sqrt(Math.max(0, b.sumsq / b.count - mean * mean));
    const r = ensemble.step(m, { tsMs: b.startMs, widthMs: b.widthMs, value: mean, count: b.count, min: b.min, max: b.max, std });
    scored++;
    if (r.anomaly) flagged++;
    const fs = settings.forecast;
    let f: ForecastState | null = null;
    if (fs) {
      if (s.forecast === undefined) {
        const restored = restoredForecasts.get(b.seriesId);
        restoredForecasts.delete(b.seriesId);
        const tags = tagObject(b.series.tags);
        const wanted = model.selectors.some((sel) => matchesSeries(sel, b.series.metric, tags)) || rules.wantsForecast(b.series.metric, tags, b.series.tenant);
        // A state of another number of seasonal periods (models.seasonalPeriodsSeconds changed) starts afresh.
        s.forecast = !wanted ? null : restored && restored.numbers.length === forecastLength(ensemble.seasonal.periods) ? restored : initForecast(ensemble.seasonal.periods);
      }
      f = s.forecast;
      if (f) {
        model.forecaster.step(f, m.seasonal, b.startMs, b.widthMs, mean);
        if (model.forecaster.due(f, b.startMs, b.widthMs)) {
          const out = model.forecaster.forecast(f, m.seasonal, b.widthMs, fs, fs.refreshMs);
          const modelJson = JSON.stringify(out.model);
          for (const p of out.points) {
            forecasts.add({ seriesId: b.seriesId, metric: b.series.metric, tags: b.series.tags, tenant: b.series.tenant, type: b.series.type, widthMs: b.widthMs, startMs: p.tsMs, issuedMs: out.issuedMs, value: p.value, lower80: p.lower80, upper80: p.upper80, lower95: p.lower95, upper95: p.upper95, model: modelJson });
          }
        }
      }
    }
    const seasonal = m.seasonal;
    const held = f;
    rules.onBucket(b, r, held ? (withinMs, met) => model.forecaster.crossing(held, seasonal, b.widthMs, withinMs, met) : null);
    if (r.score < settings.minScore) continue;
    encoder.add({
      seriesId: b.seriesId,
      metric: b.series.metric,
      tags: b.series.tags,
      tenant: b.series.tenant,
      type: b.series.type,
      widthMs: b.widthMs,
      startMs: b.startMs,
      value: mean,
      expected: r.expected,
      lower: r.lower,
      upper: r.upper,
      score: r.score,
      anomaly: r.anomaly,
      scores: r.scores,
      explanation: JSON.stringify(r.explanation),
      topic: b.topic,
      partition: b.partition,
      version: m.n,
    });
  }
  toScore.length = 0;
  return { scored, flagged };
}

/** Writes the state of `ids` (series with unsaved buckets) to `states`; they are saved from then on. */
function saveSeries(states: StateEncoder, ids: ReadonlySet<bigint> | readonly bigint[], settings: string, widthMs: number): void {
  const count = 'size' in ids ? ids.size : ids.length;
  stateRowBytes.reserve(states.rows, count);
  for (const seriesId of ids) {
    const s = series.get(seriesId);
    const u = s?.unsaved;
    if (!s || !u) continue;
    s.unsaved = null;
    const snapshot: SeriesSnapshot = { lastBucketMs: s.lastBucketMs, buckets: s.buckets, models: s.models, rules: rules.snapshot(seriesId), forecast: s.forecast ?? null };
    states.add({ topic: u.topic, partition: u.partition, seriesId, widthMs, settings, lastBucketMs: s.lastBucketMs, version: s.buckets, state: writeSnapshot(snapshot) });
  }
  stateRowBytes.learn(states.rows, count);
}

/** Writes the task partition's unsaved series to `states`, when `due` says so of them; its hold goes. */
function savePartitionSeries(states: StateEncoder, task: ShardTask, due: (u: Unsaved) => boolean): void {
  const key = partKey(task.topic, task.partition);
  const u = unsavedParts.get(key);
  if (!u || !due(u)) return;
  unsavedParts.delete(key);
  const { settings, widthMs } = stateSettingsOf(task);
  saveSeries(states, u.series, settings, widthMs);
}

/**
 * After a data task: the partition's unsaved series are written once its event time has moved
 * `stateIntervalMs` past the first unsaved bucket. Idle closes never write (their outputs are not
 * what a commit waits for): their buckets wait, held, for the next data task.
 */
function saveDue(states: StateEncoder, task: ShardTask): void {
  savePartitionSeries(states, task, (u) => task.partitionMaxAfterMs - u.firstStartMs >= task.stateIntervalMs);
}

/**
 * Room for a task's rows of one table at once: rows × the bytes per row of the last task that
 * wrote any, a little over. Grown by doubling from a small buffer instead, a body of state rows
 * (6.8 KB each) was allocated and copied about twice over: 0.87× the shard stage's CPU per scored
 * bucket without it (`npm run bench:snapshot`). Rollup rows (about 150 bytes) showed no gain
 * (`bench:shard`), so they grow as before.
 */
class RowSizer {
  private perRow: number;
  private from = 0;

  constructor(initial: number) {
    this.perRow = initial;
  }

  reserve(w: RowBinaryWriter, rows: number): void {
    this.from = w.length;
    if (rows > 0) w.reserve(Math.ceil(rows * this.perRow * 1.1));
  }

  learn(w: RowBinaryWriter, rows: number): void {
    if (rows > 0) this.perRow = (w.length - this.from) / rows;
  }
}
const stateRowBytes = new RowSizer(1024);

/** Series state read back from `detector_state` (a new generation): detectors and rules continue from it. */
function restoreSeries(task: ShardTask): ShardResult {
  const r = task.restore;
  if (r) {
    for (let i = 0; i < r.ids.length; i++) {
      const id = r.ids[i] as bigint;
      const snap = readSnapshot(r.data.subarray(r.bounds[2 * i] as number, r.bounds[2 * i + 1] as number));
      // Its source is learnt from its next point.
      // A restored forecast state is kept only while the selectors still select the series: decided at its next bucket.
      series.set(id, { id, tenant: UNKNOWN_TENANT, lastSeenMs: task.nowMs, source: '', split: false, models: task.models ? snap.models : null, lastBucketMs: snap.lastBucketMs, buckets: snap.buckets, unsaved: null, forecast: undefined });
      if (snap.forecast && task.models) restoredForecasts.set(id, snap.forecast);
      if (snap.rules) rules.restoreSeries(id, snap.rules);
    }
  }
  return emptyShardResult();
}

function rollupState(settings: RollupSettings): RollupState {
  const key = JSON.stringify(settings);
  if (!rollups || key !== rollupKey) {
    rollups = new RollupState(settings);
    rollups.stages.push(...stages);
    rollupKey = key;
  }
  return rollups;
}

/**
 * A new consumer group generation: every partition is re-read from its committed offset, so every
 * series starts over as in a fresh thread (rollup buckets, detector state, rule state); the
 * parsed rules and the ensemble stay, and rules seed their firing state from `seeds`.
 */
function resetSeries(seeds: ShardTask['seeds']): ShardResult {
  series.clear();
  tenantSeries.clear();
  restoredForecasts.clear();
  unsavedParts.clear();
  rollups = undefined;
  rollupKey = '';
  toScore.length = 0;
  rules.reset(seeds ?? []);
  return emptyShardResult();
}

/** The `detector_state` settings tag of a task's judged width. */
function stateSettingsOf(task: ShardTask): { settings: string; widthMs: number } {
  const widthMs = task.models?.widthMs ?? task.alertWidthMs;
  return { settings: task.models && scoring?.settings.widthMs === widthMs ? scoring.stateKey : snapshotKey(null, widthMs), widthMs };
}

/**
 * A drained shutdown: the partition's unsaved series are written now, so its commit can move to
 * what the rollups alone still hold, and the next owner does not judge those buckets again.
 */
function savePartition(task: ShardTask): ShardResult {
  const states = new StateEncoder();
  savePartitionSeries(states, task, () => true);
  return { ...emptyShardResult(), series: series.size, stateBody: states.rows.finish(), stateRows: states.count, held: rollups ? rollups.held(task.topic, task.partition) : null };
}

export function track(task: ShardTask): ShardResult {
  if (task.kind === 'reset') return resetSeries(task.seeds);
  if (task.kind === 'restore') return restoreSeries(task);
  if (task.kind === 'save') return savePartition(task);
  const { nowMs } = task;
  const { batch, ids, refused, tenantRefused, splits } = admit(task);
  // Rules first: the buckets this task closes are collected for them.
  if (task.alerts) {
    rules.configure(task.alerts);
    rulesWidthMs = task.alertWidthMs;
  }
  const encoder = new RollupEncoder();
  let closed = 0;
  let late = 0;
  let counterOutOfOrder = 0;
  if (task.rollups) {
    const state = rollupState(task.rollups);
    const out =
      task.kind === 'idle'
        ? state.idle(task.topic, task.partition, task.idleWatermarkMs)
        : state.apply(task.topic, task.partition, batch, task.partitionMaxBeforeMs, task.partitionMaxAfterMs, ids);
    for (const row of out.rows) encoder.add(row);
    ({ closed, late, counterOutOfOrder } = out);
  }
  const anomalies = new AnomalyEncoder();
  const forecasts = new ForecastEncoder();
  const states = new StateEncoder();
  const { settings: stateSettings, widthMs: judgedWidthMs } = stateSettingsOf(task);
  const { scored, flagged } = scoreClosed(anomalies, forecasts, task.models !== null, judgedWidthMs);
  if (task.kind === 'data') saveDue(states, task);
  if (task.rollups && rules.ruleCount > 0) {
    const watermark = task.kind === 'idle' ? task.idleWatermarkMs : task.partitionMaxAfterMs - task.rollups.latenessMs;
    rules.checkAbsent(task.topic, task.partition, watermark, nowMs);
  }
  let evicted = 0;
  // Eviction sweeps at most once a second: state of a series silent for seriesIdleMs goes.
  if (nowMs - lastSweepMs >= 1000) {
    lastSweepMs = nowMs;
    const gone = new Set<bigint>();
    // A series with unsaved buckets goes with its state written, which only a data task's
    // outputs carry to a commit; an idle close leaves it for the next sweep.
    const unsaved: bigint[] = [];
    for (const [id, s] of series) {
      if (nowMs - s.lastSeenMs <= task.seriesIdleMs) continue;
      if (s.unsaved && task.kind !== 'data') continue;
      gone.add(id);
      if (s.unsaved) {
        s.unsaved.series.delete(id);
        unsaved.push(id);
      }
    }
    if (unsaved.length > 0) saveSeries(states, unsaved, stateSettings, judgedWidthMs);
    for (const id of gone) {
      forgetSeries(id);
      restoredForecasts.delete(id);
    }
    if (gone.size > 0) rollups?.forget(gone);
    if (gone.size > 0) rules.forget(gone);
    evicted = gone.size;
  }
  return {
    series: series.size,
    // Measured, not estimated: this thread's own V8 heap (its series state, plus the task's
    // transient data and garbage not yet collected) and the rollup buckets' typed arrays beside
    // it. A per-series estimate was 6× off.
    stateBytes: getHeapStatistics().used_heap_size + (rollups?.arrayBytes ?? 0),
    evicted,
    rollupBody: encoder.rows.finish(),
    rollupRows: encoder.count,
    anomalyBody: anomalies.rows.finish(),
    anomalyRows: anomalies.count,
    forecastBody: forecasts.rows.finish(),
    forecastRows: forecasts.count,
    stateBody: states.rows.finish(),
    stateRows: states.count,
    scored,
    flagged,
    alerts: rules.take(),
    closed,
    late,
    counterOutOfOrder,
    held: lowerHold(task.rollups ? (rollups as RollupState).held(task.topic, task.partition) : null, unsavedParts.get(partKey(task.topic, task.partition))?.hold ?? null),
    refused,
    tenantRefused,
    splits,
  };
}

/**
 * Registers the task's series, up to `maxSeries` held, and up to `maxTenantSeries` of each named
 * tenant: points of a new series past a limit are taken out of the batch (a cardinality burst
 * cannot grow this thread's state without bound, nor one tenant's take the room of the others)
 * and reported, with a sample, for a dead letter. Known series keep flowing; eviction of silent
 * series makes room again.
 */
function admit(task: ShardTask): { batch: ShardBatch; ids: bigint[]; refused: RefusedPoints | null; tenantRefused: RefusedPoints[]; splits: number } {
  const { batch, nowMs, maxSeries, maxTenantSeries } = task;
  const source = `${task.topic}/${task.partition}`;
  let splits = 0;
  // Series by series, in the order of their first points: the same ones are admitted as point by point.
  const admitted = new Uint8Array(batch.dictIds.length);
  // The admitted series' ids as the registry holds them, by dictionary index (refused: unset).
  const ids = new Array<bigint>(batch.dictIds.length);
  let refusedSeries = 0;
  // Per named tenant refused for its own limit: its distinct series, by dictionary index.
  const byTenant = new Map<number, string>();
  const tenantRefusedSeries = new Map<string, number>();
  for (let d = 0; d < batch.dictIds.length; d++) {
    const id = batch.dictIds[d] as bigint;
    const s = series.get(id);
    if (s) {
      admitted[d] = 1;
      ids[d] = s.id;
      s.lastSeenMs = nowMs;
      if (s.tenant === UNKNOWN_TENANT) {
        // Restored: counted under its tenant now (even past the limit: it was held before).
        s.tenant = dictEntry(batch, d).tenant;
        if (s.tenant !== '') tenantSeries.set(s.tenant, (tenantSeries.get(s.tenant) ?? 0) + 1);
      }
      // Judged in pieces: a producer that does not key by series, with kafka.repartition never
      // (or a key that is not a function of the series).
      if (s.source === '') s.source = source;
      else if (!s.split && s.source !== source) {
        s.split = true;
        splits++;
      }
    } else if (series.size < maxSeries) {
      // A new series: its tenant read from its columns (once per series, not per point).
      const tenant = dictEntry(batch, d).tenant;
      const held = tenant === '' ? 0 : (tenantSeries.get(tenant) ?? 0);
      if (tenant !== '' && held >= maxTenantSeries) {
        byTenant.set(d, tenant);
        tenantRefusedSeries.set(tenant, (tenantRefusedSeries.get(tenant) ?? 0) + 1);
        continue;
      }
      if (tenant !== '') tenantSeries.set(tenant, held + 1);
      admitted[d] = 1;
      ids[d] = id;
      series.set(id, { id, tenant, lastSeenMs: nowMs, source, split: false, models: null, lastBucketMs: Number.NaN, buckets: 0, unsaved: null, forecast: undefined });
    } else refusedSeries++;
  }
  if (refusedSeries === 0 && byTenant.size === 0) return { batch, ids, refused: null, tenantRefused: [], splits };
  const keep = new Uint8Array(batch.count);
  let refused: RefusedPoints | null = null;
  const perTenant = new Map<string, RefusedPoints>();
  const note = (r: RefusedPoints, i: number, offset: number) => {
    r.points++;
    r.lastOffset = offset;
    if (r.sample.length < REFUSED_SAMPLE_BYTES) r.sample += `${refusedLine(batch, i)}\n`;
  };
  for (let i = 0; i < batch.count; i++) {
    const d = batch.dictIndexes[i] as number;
    if (admitted[d] === 1) {
      keep[i] = 1;
      continue;
    }
    const offset = batch.offsets[i] as number;
    const tenant = byTenant.get(d);
    if (tenant !== undefined) {
      let r = perTenant.get(tenant);
      if (!r) perTenant.set(tenant, (r = { points: 0, series: tenantRefusedSeries.get(tenant) ?? 0, firstOffset: offset, lastOffset: offset, sample: '', tenant }));
      note(r, i, offset);
      continue;
    }
    refused ??= { points: 0, series: refusedSeries, firstOffset: offset, lastOffset: offset, sample: '' };
    note(refused, i, offset);
  }
  return { batch: filterBatch(batch, keep), ids, refused, tenantRefused: [...perTenant.values()], splits };
}

/** A refused point as a JSON point Vigil reads back (tags as an object). */
function refusedLine(batch: ShardBatch, i: number): string {
  const { metric, tags } = dictEntry(batch, batch.dictIndexes[i] as number);
  const tagObject: Record<string, string> = {};
  for (let k = 0; k + 1 < tags.length; k += 2) tagObject[tags[k] as string] = tags[k + 1] as string;
  return JSON.stringify({ name: metric, value: batch.values[i], timestamp: batch.tsMs[i], type: batch.types[i] === 1 ? 'counter' : 'gauge', tags: tagObject });
}

/** Test hook: forget everything (a fresh thread has nothing). */
export function resetShardState(): void {
  resetSeries([]);
  scoring = undefined;
  rules = new RuleEvaluator();
  rulesWidthMs = 0;
  lastSweepMs = 0;
}
