import type { VigilConfig } from '../core/config/index.js';
import type { Logger } from '../core/log.js';
import type { ClickHouseSink } from '../sinks/clickhouse/index.js';
import { dropExpired, retentionPolicy, tableEngines, ttlStatements } from '../sinks/clickhouse/retention.js';
import type { Metrics } from './metrics.js';

/**
 * The running pipeline's retention (sinks/clickhouse/retention.ts): on a server with TTL, the
 * tables' TTLs brought to `retention.*` once at start; on one without, expired partitions dropped
 * at start and every `retention.checkIntervalMs`. Every instance does it: each step is idempotent
 * (a partition already dropped is not listed again). A failed pass is logged, counted and tried
 * again at the next one; it never stops the pipeline.
 */
export function startRetention(sink: ClickHouseSink, config: VigilConfig, metrics: Metrics, log: Logger): { stop(): void } {
  const policy = retentionPolicy(config.retention);
  const cluster = config.clickhouse.cluster;
  const failed = (err: unknown) => {
    metrics.retentionRuns.inc({ result: 'error' });
    log.warn({ err }, 'retention pass failed; trying again at the next one');
  };
  if (sink.capabilities.ttl) {
    void (async () => {
      const statements = ttlStatements(sink.db, policy, await tableEngines(sink.client, sink.db), cluster);
      for (const query of statements) await sink.client.command({ query });
      metrics.retentionRuns.inc({ result: 'ok' });
      if (statements.length > 0) log.info({ statements }, 'retention: table TTLs set');
    })().catch(failed);
    return { stop: () => undefined };
  }
  let running = false;
  const pass = () => {
    if (running) return;
    running = true;
    dropExpired(sink.client, sink.db, policy, Date.now(), cluster)
      .then((run) => {
        metrics.retentionRuns.inc({ result: 'ok' });
        for (const [table, partitions] of Object.entries(run.dropped)) metrics.retentionDropped.inc({ table }, partitions.length);
        if (run.mutations.length > 0) metrics.retentionDeletes.inc({ table: 'rollups' }, run.mutations.length);
        if (Object.keys(run.dropped).length > 0 || run.mutations.length > 0) log.info({ dropped: run.dropped, deletes: run.mutations }, 'retention: expired rows removed');
      }, failed)
      .finally(() => (running = false));
  };
  pass();
  const timer = setInterval(pass, config.retention.checkIntervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
