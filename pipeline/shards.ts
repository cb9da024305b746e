import type { VigilConfig } from '../core/config/index.js';
import { retry, type RetryPolicy } from '../core/retry.js';
import type { Logger } from '../core/log.js';
import type { ClickHouseSink, InsertTable } from '../sinks/clickhouse/index.js';
import type { Transition } from '../workers/alerts/evaluator.js';
import { emptyBatch, snapshotKey, batchBuffers, type ForecastSettings, type ModelSettings, type RollupSettings, type ShardBatch, type ShardResult, type ShardTask } from '../workers/shard-task.js';
import { compileMatcher } from '../workers/alerts/rules.js';
import { VigilError } from '../core/errors.js';
import type { Alerting } from './alerts/index.js';
import type { Metrics } from './metrics.js';
import type { ShardedPool } from './pool.js';

/**
 * The shard stage on the main thread: builds the tasks of the shard threads (where each series'
 * buckets, detector state and rule state live), runs them with their metrics, and prepares the
 * threads for a new consumer group generation (reset, then detector state restored). Per shard,
 * tasks run in submission order (pipeline/pool.ts), which is what keeps a partition's shares in
 * offset order.
 */
export class ShardStage {
  readonly rollups: RollupSettings | null;
  readonly models: ModelSettings | null;
  /** Anomalies scored and flagged so far (the summary line). */
  flagged = 0;
  /** Split series are logged once per process (the counter keeps counting). */
  private splitWarned = false;

  constructor(
    private readonly config: VigilConfig,
    private readonly pool: ShardedPool,
    private readonly sink: ClickHouseSink,
    private readonly alerting: Alerting | null,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    const r = config.rollups;
    this.rollups = r.enabled ? { widthsMs: r.widthsSeconds.map((s) => s * 1000), latenessMs: r.allowedLatenessMs, retentionMs: r.lateRetentionMs } : null;
    this.models = this.rollups ? modelSettings(config) : null;
  }

  get count(): number {
    return this.pool.shards;
  }

  task(shard: number, kind: 'data' | 'idle' | 'save', topic: string, partition: number, batch: ShardBatch, beforeMs: number, afterMs: number, idleWatermarkMs = -Infinity): ShardTask {
    return {
      kind,
      topic,
      partition,
      partitionMaxBeforeMs: beforeMs,
      partitionMaxAfterMs: afterMs,
      idleWatermarkMs,
      batch,
      nowMs: Date.now(),
      seriesIdleMs: this.config.pipeline.seriesIdleTimeoutMs,
      stateIntervalMs: this.config.models.stateIntervalSeconds * 1000,
      maxSeries: this.config.limits.maxSeriesPerShard,
      maxTenantSeries: this.config.tenants.maxSeriesPerShard,
      rollups: this.rollups,
      models: this.models,
      alerts: this.rollups && this.alerting ? this.alerting.settingsFor(shard) : null,
      alertWidthMs: this.alerting?.widthMs ?? 0,
    };
  }

  /** Runs a task on its shard's thread; the result's counters go to the metrics. */
  async run(shard: number, task: ShardTask): Promise<ShardResult> {
    const r = await this.pool.runShard(shard, task, batchBuffers(task.batch));
    const m = this.metrics;
    m.seriesActive.set({ shard: String(shard) }, r.series);
    m.stateBytes.set({ shard: String(shard) }, r.stateBytes);
    if (r.evicted > 0) m.seriesEvicted.inc(r.evicted);
    if (r.closed > 0) m.bucketsClosed.inc(r.closed);
    if (r.late > 0) m.latePoints.inc(r.late);
    if (r.splits > 0) {
      m.seriesSplit.inc(r.splits);
      if (!this.splitWarned) {
        this.splitWarned = true;
        this.log.warn(
          { topic: task.topic, partition: task.partition, series: r.splits, repartition: this.config.kafka.repartition },
          'series reach the shards from more than one source partition and are judged in pieces: their producers do not key messages by series (set kafka.repartition to always, or key by series); counted in vigil_series_split_total',
        );
      }
    }
    if (r.counterOutOfOrder > 0) m.counterOutOfOrder.inc(r.counterOutOfOrder);
    if (r.scored > 0) m.bucketsScored.inc(r.scored);
    if (r.flagged > 0) m.anomaliesFlagged.inc(r.flagged);
    this.flagged += r.flagged;
    return r;
  }

  /**
   * The assigned partitions' detector state as `detector_state` holds it, split by shard (null:
   * no width is judged). Read before the firing alerts are restored (Ingestor.onGeneration): a
   * series state is written only after the alert events of its task are durable, so whatever state
   * this reads, the alerts read after it include those events.
   */
  async readState(assignment: Record<string, number[]>, policy: RetryPolicy): Promise<ShardStates | null> {
    const settings = this.models;
    const widthMs = settings?.widthMs ?? (this.rollups && this.alerting ? this.alerting.widthMs : 0);
    if (widthMs <= 0) return null;
    const key = snapshotKey(settings, widthMs);
    const perShard = Array.from({ length: this.count }, () => ({ ids: [] as bigint[], states: [] as Uint8Array[], bytes: 0 }));
    for (const [topic, partitions] of Object.entries(assignment)) {
      const rows = await retry(() => this.sink.readDetectorState(topic, partitions, widthMs / 1000, key), policy);
      for (const r of rows) {
        const s = perShard[Number(r.id % BigInt(this.count))] as (typeof perShard)[number];
        s.ids.push(r.id);
        s.states.push(r.state);
        s.bytes += r.state.length;
      }
    }
    return perShard;
  }

  /**
   * A new generation: every shard drops its series state behind the tasks already queued for it,
   * its rules seeded with the firing alerts; then the state `readState` found is restored, so
   * scores continue where the last owner (or this process before a restart) left them instead of
   * warming up again (a series' restored rule state supersedes its seed).
   */
  async prepare(seeds: { fingerprint: string; startsAtMs: number }[] | null, states: ShardStates | null): Promise<void> {
    await Promise.all(Array.from({ length: this.count }, (_, shard) => this.pool.runShard(shard, resetTask(seeds), [])));
    if (!states) return;
    let restored = 0;
    await Promise.all(
      states.map((s, shard) => {
        if (s.ids.length === 0) return undefined;
        restored += s.ids.length;
        const data = new Uint8Array(s.bytes);
        const bounds = new Uint32Array(s.ids.length * 2);
        let pos = 0;
        s.states.forEach((b, i) => {
          bounds[2 * i] = pos;
          data.set(b, pos);
          pos += b.length;
          bounds[2 * i + 1] = pos;
        });
        const task: ShardTask = { ...resetTask(null), kind: 'restore', models: this.models, restore: { ids: BigUint64Array.from(s.ids), bounds, data } };
        return this.pool.runShard(shard, task, [data.buffer, bounds.buffer] as ArrayBuffer[]);
      }),
    );
    if (restored > 0) this.log.info({ series: restored }, 'detector state restored');
  }
}

/** Per shard: the series ids and their serialized states, as `detector_state` holds them. */
export type ShardStates = { ids: bigint[]; states: Uint8Array[]; bytes: number }[];

/** The shard task that drops a shard's series state at a new generation (seeded with the firing alerts). */
function resetTask(seeds: { fingerprint: string; startsAtMs: number }[] | null): ShardTask {
  return {
    kind: 'reset',
    topic: '',
    partition: -1,
    partitionMaxBeforeMs: -Infinity,
    partitionMaxAfterMs: -Infinity,
    idleWatermarkMs: -Infinity,
    batch: emptyBatch(),
    nowMs: Date.now(),
    seriesIdleMs: 0,
    stateIntervalMs: 0,
    maxSeries: 0,
    maxTenantSeries: 0,
    rollups: null,
    models: null,
    alerts: null,
    alertWidthMs: 0,
    seeds,
  };
}

/** The insert bodies and alert transitions of one task's shard results, gathered per table. */
export function shardOutputs() {
  const parts = { rollups: [] as Uint8Array[], anomalies: [] as Uint8Array[], forecasts: [] as Uint8Array[], detector_state: [] as Uint8Array[] };
  const rows = { rollups: 0, anomalies: 0, forecasts: 0, detector_state: 0 };
  const transitions: Transition[] = [];
  return {
    transitions,
    add(r: ShardResult): void {
      transitions.push(...r.alerts);
      parts.rollups.push(r.rollupBody);
      rows.rollups += r.rollupRows;
      parts.anomalies.push(r.anomalyBody);
      rows.anomalies += r.anomalyRows;
      parts.forecasts.push(r.forecastBody);
      rows.forecasts += r.forecastRows;
      parts.detector_state.push(r.stateBody);
      rows.detector_state += r.stateRows;
    },
    // The shards' parts are handed on as they are (the insert streams them, not one copy of them).
    inserts(): { table: InsertTable; body: Uint8Array[]; rows: number }[] {
      return (['rollups', 'anomalies', 'forecasts'] as const).filter((t) => rows[t] > 0).map((table) => ({ table, body: nonEmpty(parts[table]), rows: rows[table] }));
    },
    /**
     * The series state rows, to be written once the task's alert events are durable (and after its
     * anomalies rows, which the insert queue's order guarantees): a restored state never skips a
     * bucket whose outputs could still be missing.
     */
    state(): { body: Uint8Array[]; rows: number } | null {
      return rows.detector_state > 0 ? { body: nonEmpty(parts.detector_state), rows: rows.detector_state } : null;
    },
  };
}

const nonEmpty = (parts: Uint8Array[]) => parts.filter((p) => p.byteLength > 0);

/** What the shard threads need to score closed buckets (models/ensemble.ts). */
export function modelSettings(config: VigilConfig): ModelSettings | null {
  const m = config.models;
  if (!m.enabled) return null;
  return {
    widthMs: m.widthSeconds * 1000,
    lstmModelDir: m.lstmModelDir,
    minScore: m.minScore,
    forecast: forecastSettings(config),
    ensemble: {
      detectors: [...m.detectors],
      threshold: m.threshold,
      learningBuckets: m.learningBuckets,
      seasonal: { periodsMs: m.seasonalPeriodsSeconds.map((x) => x * 1000), maxSlots: m.seasonalMaxSlots },
      robust: { window: m.robustWindow },
      ewma: { alpha: m.ewmaAlpha },
      iforest: { trees: m.forestTrees, samples: m.forestSamples, refitEvery: m.forestRefitEvery, reservoir: Math.max(m.forestSamples * 16, 4096), seed: 1 },
    },
  };
}

/**
 * The forecasts' settings for the shard threads: the series `forecasts.series` selects, and the
 * horizon, spacing and refresh of every forecast (also of the series a `forecast` alert rule
 * needs forecast). The selectors' matchers are compiled here once, at start, so a bad one stops
 * the start with the key that holds it.
 */
export function forecastSettings(config: VigilConfig): ForecastSettings {
  const f = config.forecasts;
  const series = f.series.map((text, i) => {
    const key = `forecasts.series[${i}]`;
    const sel = parseSelector(text);
    if (typeof sel === 'string') throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `${key} = ${JSON.stringify(text)}: ${sel}`);
    for (const [what, matcher] of [['metric', sel.metric], ...Object.entries(sel.tags).map(([k, v]) => [`tag ${k}`, v])] as [string, string][]) {
      try {
        compileMatcher(matcher);
      } catch (err) {
        throw new VigilError('VIGIL_ERR_CONFIG_INVALID', `${key} = ${JSON.stringify(text)}: its ${what} matcher ${JSON.stringify(matcher)} ${(err as Error).message}`, { cause: err });
      }
    }
    return sel;
  });
  const widthMs = config.models.widthSeconds * 1000;
  return {
    series,
    horizonMs: f.horizonSeconds * 1000,
    stepMs: Math.max(widthMs, Math.round((f.stepSeconds * 1000) / widthMs) * widthMs),
    refreshMs: f.refreshSeconds * 1000,
  };
}

const SELECTOR = /^\s*([^{}\s]+)\s*(?:\{(.*)\})?\s*$/s;
const TAG_MATCHER = /\s*([A-Za-z_][A-Za-z0-9_.:-]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)/y;

/** `metric{tag="matcher", …}` into its matchers, or what is wrong with it. */
export function parseSelector(text: string): { metric: string; tags: Record<string, string> } | string {
  const m = SELECTOR.exec(text);
  if (!m) return 'expected metric{tag="matcher", ...} (the tag part optional)';
  const tags: Record<string, string> = {};
  const body = m[2] ?? '';
  TAG_MATCHER.lastIndex = 0;
  while (TAG_MATCHER.lastIndex < body.length && body.slice(TAG_MATCHER.lastIndex).trim() !== '') {
    const at = TAG_MATCHER.lastIndex;
    const t = TAG_MATCHER.exec(body);
    if (!t) return `expected tag="matcher" at character ${at} of the braces' ${JSON.stringify(body)}`;
    tags[t[1] as string] = (t[2] as string).replace(/\\(.)/g, '$1');
    if (t[3] === '') break;
  }
  return { metric: m[1] as string, tags };
}
