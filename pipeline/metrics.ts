import { Registry, collectDefaultMetrics, Counter, Gauge, Histogram } from 'prom-client';

/**
 * Vigil's self-metrics (DESIGN.md §9, STYLE.md instrumentation contract): one registry per
 * process, created with `createMetrics()`. Label values are low-cardinality (error codes,
 * topics, sink names), never series or offsets.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'vigil_' });
  const reg = [registry];
  return {
    registry,
    messagesReceived: new Counter({
      name: 'vigil_messages_received_total',
      help: 'Kafka messages consumed',
      labelNames: ['topic'],
      registers: reg,
    }),
    bytesReceived: new Counter({
      name: 'vigil_bytes_received_total',
      help: 'Bytes of Kafka message values consumed',
      labelNames: ['topic'],
      registers: reg,
    }),
    pointsProcessed: new Counter({
      name: 'vigil_points_processed_total',
      help: 'Valid points decoded by the workers',
      registers: reg,
    }),
    pointsAlreadyStored: new Counter({
      name: 'vigil_points_already_stored_total',
      help: 'Points of a replay not written to points again: ClickHouse already held them (the points marks, insert-time deduplication)',
      registers: reg,
    }),
    pointsForwarded: new Counter({
      name: 'vigil_repartition_points_total',
      help: 'Points forwarded to the repartition topic (kafka.repartition), to be judged whole by the instance owning their series',
      registers: reg,
    }),
    seriesSplit: new Counter({
      name: 'vigil_series_split_total',
      help: 'Series that reached this instance\'s shards from more than one source partition (judged in pieces: key messages by series, or let kafka.repartition forward them)',
      registers: reg,
    }),
    bytesForwarded: new Counter({
      name: 'vigil_repartition_bytes_total',
      help: 'Bytes of forwarded points produced to the repartition topic',
      registers: reg,
    }),
    deadLetters: new Counter({
      name: 'vigil_dead_letters_total',
      help: 'Dead letters produced (one per bad message), by the code of its first bad line or element',
      labelNames: ['code'],
      registers: reg,
    }),
    rejectedItems: new Counter({
      name: 'vigil_rejected_items_total',
      help: 'Bad lines, elements or whole messages inside the dead letters, by code of their letter',
      labelNames: ['code'],
      registers: reg,
    }),
    deadLettersSetAside: new Counter({
      name: 'vigil_dead_letters_set_aside_total',
      help: 'Dead letters the broker refused for good, by outcome: cut (produced cut to 1 KiB) or dropped (refused even then; logged)',
      labelNames: ['outcome'],
      registers: reg,
    }),
    rowsInserted: new Counter({
      name: 'vigil_rows_inserted_total',
      help: 'Rows acknowledged by ClickHouse, by table',
      labelNames: ['table'],
      registers: reg,
    }),
    sinkErrors: new Counter({
      name: 'vigil_sink_errors_total',
      help: 'Failed sink requests (retried), by sink and error code',
      labelNames: ['sink', 'code'],
      registers: reg,
    }),
    clickhouseFailovers: new Counter({
      name: 'vigil_clickhouse_failovers_total',
      help: 'Switches to the next ClickHouse replica of clickhouse.failoverUrls after the current one did not answer, by the replica switched to',
      labelNames: ['to'],
      registers: reg,
    }),
    insertSeconds: new Histogram({
      name: 'vigil_insert_duration_seconds',
      help: 'ClickHouse insert latency',
      labelNames: ['table'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: reg,
    }),
    batchSeconds: new Histogram({
      name: 'vigil_batch_duration_seconds',
      help: 'Time from a worker task being sent to its offsets being committable',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: reg,
    }),
    workerTaskSeconds: new Histogram({
      name: 'vigil_worker_task_duration_seconds',
      help: 'Time a worker spent on one task',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: reg,
    }),
    workerUtilization: new Gauge({
      name: 'vigil_worker_utilization_ratio',
      help: 'Share of time the worker pool was busy (piscina utilization)',
      registers: reg,
    }),
    inFlightBytes: new Gauge({
      name: 'vigil_in_flight_bytes',
      help: 'Message bytes consumed but not yet committed',
      registers: reg,
    }),
    pausedPartitions: new Gauge({
      name: 'vigil_paused_partitions',
      help: 'Partitions paused by backpressure',
      registers: reg,
    }),
    consumerLag: new Gauge({
      name: 'vigil_consumer_lag_messages',
      help: 'High watermark minus committed offset, summed per topic',
      labelNames: ['topic'],
      registers: reg,
    }),
    seriesActive: new Gauge({
      name: 'vigil_series_active',
      help: 'Series with state in a shard (evicted after pipeline.seriesIdleTimeoutMs of silence)',
      labelNames: ['shard'],
      registers: reg,
    }),
    stateBytes: new Gauge({
      name: 'vigil_state_bytes',
      help: "Heap in use by the shard's thread (series state plus transient task data), measured in the thread",
      labelNames: ['shard'],
      registers: reg,
    }),
    tenantSeriesRefused: new Counter({
      name: 'vigil_tenant_series_refused_total',
      help: 'New series of a named tenant a shard turned away at tenants.maxSeriesPerShard (counted once per task that saw them)',
      labelNames: ['tenant'],
      registers: reg,
    }),
    seriesRefused: new Counter({
      name: 'vigil_series_refused_total',
      help: 'New series a shard turned away at limits.maxSeriesPerShard (counted once per task that saw them)',
      labelNames: ['shard'],
      registers: reg,
    }),
    seriesEvicted: new Counter({
      name: 'vigil_series_evicted_total',
      help: 'Series whose state was evicted after silence',
      registers: reg,
    }),
    alertEvents: new Counter({
      name: 'vigil_alert_events_total',
      help: 'Alert events made durable (alerts topic and table), by status',
      labelNames: ['status'],
      registers: reg,
    }),
    alertsDelivered: new Counter({
      name: 'vigil_alerts_delivered_total',
      help: 'Alert events accepted by a best-effort output (alertmanager, webhook)',
      labelNames: ['sink'],
      registers: reg,
    }),
    alertsDropped: new Counter({
      name: 'vigil_alerts_dropped_total',
      help: 'Alert events an output gave up on, by sink and reason (queue_full, rejected, max_attempts, shutdown, ...)',
      labelNames: ['sink', 'reason'],
      registers: reg,
    }),
    rulesReloads: new Counter({
      name: 'vigil_rules_reloads_total',
      help: 'Alert rules file reloads, by result (ok, error: the previous rules stay)',
      labelNames: ['result'],
      registers: reg,
    }),
    bucketsScored: new Counter({
      name: 'vigil_buckets_scored_total',
      help: 'Closed buckets scored by the anomaly ensemble',
      registers: reg,
    }),
    anomaliesFlagged: new Counter({
      name: 'vigil_anomalies_flagged_total',
      help: 'Episodes of anomaly started: scored buckets flagged at their onset (at or above models.threshold after a calm)',
      registers: reg,
    }),
    bucketsClosed: new Counter({
      name: 'vigil_buckets_closed_total',
      help: 'Rollup buckets closed (handed to the closed-bucket stages)',
      registers: reg,
    }),
    latePoints: new Counter({
      name: 'vigil_late_points_total',
      help: 'Points that reached a bucket after it closed (stored raw, corrected in rollups, not scored)',
      registers: reg,
    }),
    counterOutOfOrder: new Counter({
      name: 'vigil_counter_out_of_order_total',
      help: 'Counter points older than their series\' previous point (stored raw, no rate)',
      registers: reg,
    }),
    ready: new Gauge({
      name: 'vigil_ready',
      help: '1 when every dependency answers and commits advance (the /readyz state)',
      registers: reg,
    }),
    rebalances: new Counter({
      name: 'vigil_rebalances_total',
      help: 'Consumer group (re)joins: each starts every assigned partition over from its committed offset',
      registers: reg,
    }),
    consumerCrashes: new Counter({
      name: 'vigil_consumer_crashes_total',
      help: 'Kafka consumer crashes kafkajs reported (restart: whether it restarted the consumer itself)',
      labelNames: ['restart'] as const,
      registers: reg,
    }),
    commitStalled: new Gauge({
      name: 'vigil_commit_stalled',
      help: '1 while input waits and no offset commit has advanced for pipeline.stallTimeoutMs',
      registers: reg,
    }),
    retentionDropped: new Counter({
      name: 'vigil_retention_partitions_dropped_total',
      help: 'Expired partitions dropped by Vigil (servers without TTL), by table',
      labelNames: ['table'] as const,
      registers: reg,
    }),
    retentionDeletes: new Counter({
      name: 'vigil_retention_deletes_total',
      help: 'Deletes (mutations) started for a rollup width that expires before the others (servers without TTL)',
      labelNames: ['table'] as const,
      registers: reg,
    }),
    incidentRuns: new Counter({
      name: 'vigil_incidents_runs_total',
      help: 'Incident passes (grouping anomaly onsets of the anomalies table): result ok, or error (logged, tried again at the next pass)',
      labelNames: ['result'] as const,
      registers: reg,
    }),
    incidentsWritten: new Counter({
      name: 'vigil_incidents_written_total',
      help: 'Incident rows written (a new incident, or a new version of one: more members, or its related series)',
      registers: reg,
    }),
    retentionRuns: new Counter({
      name: 'vigil_retention_runs_total',
      help: 'Retention passes: result ok, or error (logged, tried again at the next pass)',
      labelNames: ['result'] as const,
      registers: reg,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
