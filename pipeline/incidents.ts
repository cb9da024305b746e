import type { VigilConfig } from '../core/config/index.js';
import type { Logger } from '../core/log.js';
import type { ClickHouseSink } from '../sinks/clickhouse/index.js';
import { groupOnsets, incidentRow, incidentVersion, readOnsets, relatedSeries } from '../sinks/clickhouse/incidents.js';
import type { Metrics } from './metrics.js';

/**
 * The running pipeline's incidents (sinks/clickhouse/incidents.ts): every `incidents.intervalMs`
 * the anomaly onsets of the last `incidents.lookbackSeconds` (event time, up to the newest scored
 * bucket) are grouped into incidents and the incidents that changed are written to `incidents`;
 * once an incident is over (no onset for `incidents.windowSeconds` of event time) its related
 * series are looked for and written with it. Read from the anomalies table, so every instance and
 * a replay after a crash compute the same incidents; each pass is idempotent. A failed pass is
 * logged, counted and tried again at the next one; it never stops the pipeline.
 */
export function startIncidents(sink: ClickHouseSink, config: VigilConfig, metrics: Metrics, log: Logger): { stop(): void; pass(): Promise<number> } {
  const o = config.incidents;
  const width = config.models.widthSeconds;
  /** The version of each incident as last written (so a pass writes only what changed). */
  const written = new Map<string, number>();
  const pass = async (): Promise<number> => {
    const rs = await sink.client.query({ query: `SELECT toUInt32(max(bucket_start)) AS t FROM ${sink.db}.anomalies WHERE width_s = ${width}`, format: 'JSONEachRow' });
    const now = Number((await rs.json<{ t: number }>())[0]?.t ?? 0);
    if (now === 0) return 0;
    const from = Math.max(0, now - o.lookbackSeconds);
    const incidents = groupOnsets(await readOnsets(sink.client, sink.db, width, from), o.windowSeconds);
    const rows: Record<string, unknown>[] = [];
    for (const i of incidents) {
      // An incident that may have begun before the lookback is not written from part of it.
      if (from > 0 && i.startS - from <= o.windowSeconds) continue;
      const over = now - i.lastS > o.windowSeconds;
      const version = incidentVersion(i, over);
      if (written.get(i.id) === version) continue;
      const related = over ? await relatedSeries(sink.client, sink.db, width, o.windowSeconds, i, { patterns: o.relatedPatterns, threshold: o.relatedThreshold, max: o.relatedMax, maxLag: 5 }) : null;
      rows.push(incidentRow(i, width, related));
      written.set(i.id, version);
    }
    const current = new Set(incidents.map((i) => i.id));
    for (const id of written.keys()) if (!current.has(id)) written.delete(id);
    if (rows.length > 0) {
      await sink.client.insert({ table: `${sink.db}.incidents`, values: rows, format: 'JSONEachRow' });
      metrics.incidentsWritten.inc(rows.length);
    }
    return rows.length;
  };
  if (!config.models.enabled || !o.enabled) return { stop: () => undefined, pass: () => Promise.resolve(0) };
  let running = false;
  const tick = () => {
    if (running) return;
    running = true;
    pass()
      .then(
        () => metrics.incidentRuns.inc({ result: 'ok' }),
        (err: unknown) => {
          metrics.incidentRuns.inc({ result: 'error' });
          log.warn({ err }, 'incidents pass failed; trying again at the next one');
        },
      )
      .finally(() => (running = false));
  };
  const timer = setInterval(tick, o.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer), pass };
}
