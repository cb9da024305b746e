import { ClickHouseSink } from '../sinks/clickhouse/index.js';
import { DeadLetterProducer } from '../sinks/kafka/dlq.js';
import type { VigilConfig } from '../core/config/index.js';
import { VigilError } from '../core/errors.js';
import { redactUrls } from '../core/redact.js';
import { retry } from '../core/retry.js';
import { Readiness, startHttpServer } from './http.js';
import { Ingestor } from './ingest.js';
import { createKafka, ensureTopics } from './kafka.js';
import { repartitionLayout, repartitionTopicOf } from './repartition.js';
import { RepartitionProducer } from '../sinks/kafka/repartition.js';
import type { Repartition } from './ingest.js';
import { componentLogger, type Logger } from '../core/log.js';
import { createMetrics } from './metrics.js';
import { ShardedPool } from './pool.js';
import { Alerting } from './alerts/index.js';
import { startRetention } from './retention.js';
import { startIncidents } from './incidents.js';

export interface RunningPipeline {
  ingestor: Ingestor;
  alerting: Alerting | null;
  httpPort: number;
  /** Drains and stops; resolves with the process exit code (0 drained, 1 timed out or failed). */
  stop(): Promise<number>;
  /** Resolves when the pipeline stopped by itself (a fatal error), with the exit code. */
  done: Promise<number>;
}

/** Retries `op` with backoff until it succeeds (a dependency not up yet), logging each failure. */
function untilUp<T>(what: string, log: Logger, op: () => Promise<T>, config: VigilConfig): Promise<T> {
  return retry(op, {
    initialMs: config.pipeline.retryInitialMs,
    maxMs: config.pipeline.retryMaxMs,
    retryable: (err) => !(err instanceof VigilError && !err.retryable),
    onRetry: (err, retryInMs) => log.warn({ err, retryInMs }, `${what} not available yet`),
  });
}

/**
 * `vigil run`: the pipeline alone against the configured Kafka and ClickHouse. A start that fails
 * for good (a rules file that does not load, a topic that cannot be created) closes what it had
 * opened, so that the process exits with the error instead of living on with a server, clients
 * and timers and nothing to run.
 */
export async function runPipeline(config: VigilConfig): Promise<RunningPipeline> {
  const opened: (() => unknown)[] = [];
  try {
    return await startPipeline(config, opened);
  } catch (err) {
    for (const close of opened.reverse()) await Promise.resolve().then(close).catch(() => undefined);
    throw err;
  }
}

async function startPipeline(config: VigilConfig, opened: (() => unknown)[]): Promise<RunningPipeline> {
  const log = componentLogger('pipeline');
  const metrics = createMetrics();
  const readiness = new Readiness();
  readiness.set('kafka', false);
  readiness.set('clickhouse', false);
  const http = await startHttpServer({ ...config.http, registry: metrics.registry, readiness, log: componentLogger('http') });
  opened.push(() => http.close());

  const kafka = createKafka(config, componentLogger('kafka'));
  const created = await untilUp('kafka', log, () => ensureTopics(kafka, config), config);
  if (created.length > 0) log.info({ topics: created }, 'created topics');
  const sink = new ClickHouseSink(config.clickhouse, ({ from, to, err }) => {
    metrics.clickhouseFailovers.inc({ to });
    log.warn({ from, to, err: redactUrls((err as Error | undefined)?.message ?? String(err)) }, 'clickhouse replica did not answer; moving to the next');
  });
  opened.push(() => sink.close());
  await untilUp('clickhouse', log, () => sink.start(), config);
  readiness.set('clickhouse', true);
  log.info({ version: sink.capabilities.version, database: sink.db }, 'clickhouse schema ready');
  const retention = startRetention(sink, config, metrics, componentLogger('retention'));
  opened.push(() => retention.stop());
  const incidents = startIncidents(sink, config, metrics, componentLogger('incidents'));
  opened.push(() => incidents.stop());
  const dlq = new DeadLetterProducer(kafka, config.kafka.dlqTopic);
  opened.push(() => dlq.close());
  await untilUp('kafka producer', log, () => dlq.start(), config);
  let repartition: Repartition | null = null;
  if (config.kafka.repartition !== 'never') {
    const topic = repartitionTopicOf(config);
    const producer = new RepartitionProducer(kafka, topic);
    opened.push(() => producer.close());
    await untilUp('repartition producer', log, () => producer.start(), config);
    const { partitions, sources } = await untilUp('repartition topic', log, () => repartitionLayout(kafka, config), config);
    repartition = { producer, topic, partitions, sources };
    log.info({ topic, partitions, mode: config.kafka.repartition }, 'repartition topic ready');
  }

  const alerting = config.alerts.enabled && (config.alerts.rulesFile || config.alerts.tenantRulesDir) ? new Alerting(config, kafka, sink.client, config.pipeline.workers, metrics, componentLogger('alerts')) : null;
  if (alerting) {
    opened.push(() => alerting.close());
    await untilUp('alerting', log, () => alerting.start(), config);
  }

  // Each pool's queue holds at most every ingest task plus one shard share per task in flight.
  const pool = new ShardedPool(config.pipeline.workers, 2 * config.pipeline.maxTasksInFlight + 1, config.pipeline.workerMaxHeapMb);
  opened.push(() => pool.destroy());
  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let stopping: Promise<number> | undefined;

  const stop = (): Promise<number> =>
    (stopping ??= (async () => {
      clearInterval(timer);
      retention.stop();
      log.info('stopping: draining in-flight work');
      const drained = await ingestor.stop(config.pipeline.shutdownTimeoutMs).catch((err: unknown) => {
        log.error({ err }, 'drain failed');
        return false;
      });
      if (!drained) log.error({ code: 'VIGIL_ERR_SHUTDOWN_TIMEOUT', timeoutMs: config.pipeline.shutdownTimeoutMs }, 'drain did not finish; uncommitted work will be re-read on restart');
      await Promise.allSettled([pool.destroy(), dlq.close(), repartition?.producer.close(), alerting?.close(), sink.close(), http.close()]);
      log.info({ drained }, 'stopped');
      return drained ? 0 : 1;
    })());

  const ingestor = new Ingestor(config, kafka, pool, sink, dlq, metrics, readiness, componentLogger('ingest'), () => {
    readiness.set('pipeline', false);
    void stop().then(() => resolveDone(1));
  }, alerting, repartition);
  readiness.set('pipeline', true);

  // Readiness follows ClickHouse even when no data flows; utilisation is sampled, not per task.
  const timer = setInterval(() => {
    metrics.workerUtilization.set(pool.utilization);
    const stalled = ingestor.stalled(config.pipeline.stallTimeoutMs);
    metrics.commitStalled.set(stalled ? 1 : 0);
    readiness.set('commits', !stalled);
    metrics.ready.set(readiness.ready ? 1 : 0);
    sink.healthcheck().then(
      (ok) => readiness.set('clickhouse', ok),
      () => readiness.set('clickhouse', false),
    );
  }, 2000);
  timer.unref();
  opened.push(() => clearInterval(timer));

  await ingestor.start();
  log.info({ topics: config.kafka.topicPattern || config.kafka.topics, workers: config.pipeline.workers }, 'pipeline running');
  return { ingestor, alerting, httpPort: http.port, stop, done };
}
