#!/usr/bin/env node
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { configDocs, loadConfig, usesLocalStack, type VigilConfig } from '../core/config/index.js';
import { isVigilError, VigilError } from '../core/errors.js';
import { componentLogger, rootLogger } from '../core/log.js';
import * as infra from '../infra/index.js';
import { dashboardJson, dashboards } from '../infra/grafana/dashboards.js';
// bench/ is loaded only by the commands that drive workloads (produce, start, bench), never by `run`.
import type { GenFormat } from '../bench/generator.js';
import type { BenchOptions, BenchStages } from '../bench/harness.js';
import { join } from 'node:path';
import { capabilitiesOf, schemaStatements } from '../sinks/clickhouse/index.js';
import { createKafka, ensureTopics } from '../pipeline/kafka.js';
import { runPipeline, type RunningPipeline } from '../pipeline/run.js';
import { modelSettings } from '../pipeline/shards.js';
import { clickhouseConnection, redactConfig } from '../core/redact.js';
import { createClient } from '@clickhouse/client';
import { BACKTEST_HEADER, backtest, backtestLine, readBacktestCsv } from '../models/backtest.js';
import { loadLstm } from '../models/lstm-detector.js';
import { readHistory, trainCsv, trainSeries } from '../models/train.js';
import { exportBytes, exportTable } from '../sinks/clickhouse/export.js';
import { capacity, capacityTable } from '../sinks/clickhouse/capacity.js';
import { correlate, correlationTable } from '../sinks/clickhouse/correlate.js';
import { syncTenants } from '../sinks/clickhouse/tenants.js';
import { ClickHouseSink } from '../sinks/clickhouse/index.js';
import { clock, DEMO_WIDTH_SECONDS, recap, storyLine } from './demo.js';
import type { AlertEvent } from '../sinks/alerts/event.js';

const USAGE = `Usage: vigil <command> [options]

Commands:
  start                     local stack (when no external Kafka/ClickHouse is configured), the
                            pipeline and the demo: history, a live stream and a scripted
                            incident that fires and resolves each kind of alert rule, with a
                            live summary line, a line per alert event and a recap on exit
  run                       the pipeline alone against the configured Kafka and ClickHouse
  produce [options]         load generator: realistic host, service and crypto-key metrics
      --topic T             topic (default: the first of kafka.topics)
      --series N            distinct series (default 1000)
      --points-per-message N  (default 1)
      --format F            json | ndjson | influx | prometheus (default json; ndjson puts
                            several points on separate lines of one message)
      --rate N              points per second, 0 = as fast as possible (default 10000)
      --count N             stop after N points (default 0 = no limit)
      --duration S          stop after S seconds (default 0 = no limit)
      --interval-ms N       event-time step between points of one series (default: real-time
                            pace, series*1000/rate; with --count and --rate 0, 10000 and the
                            stream ends now)
      --labelled            instead: the labelled anomaly workload (bench/anomalies.ts):
                            seasonal and flat series with spikes, dips, level shifts, trend
                            and variance changes, seasonality breaks and dropouts
        --days D            event-time span ending now (default 3), 60 s buckets
        --points-per-bucket N  (default 2)
        --labels FILE       write the labels (JSON: series key, kind, start, end)
  backtest --input F        score a CSV of timestamp,value[,series][,label] rows with the
                            configured detectors, in streaming order; per-row scores and
                            explanations to --output F (default stdout); with a label column,
                            precision/recall/F1/delay to stderr
      --lstm DIR            LSTM model (default models.lstmModelDir)
  train --output DIR        train the LSTM forecaster on ClickHouse history (rollups_merged,
                            width models.widthSeconds) or on --input F (CSV as for backtest)
      --metric PATTERN      LIKE pattern on metric names (default all)
      --hours H             only the last H hours of history (default all)
      --epochs N            (default 10)
  export --table T --output F  the rows of rollups_merged (T = rollups) or anomalies_dedup
                            (T = anomalies) as an Arrow IPC file or Parquet, read exactly
                            (filters inside FINAL)
      --format F            arrow | parquet (default: parquet for a .parquet file, else arrow)
      --metric PATTERN      LIKE pattern on metric names (default all)
      --width S             one bucket width in seconds (default all)
      --hours H             only the last H hours (default all)
  capacity --metric M --threshold T  time to the threshold per series, from each series' latest
                            forecast (forecasts_latest): when the forecast reaches it, and
                            when its 95 % interval does on either side
      --below               a threshold to fall to (free space) instead of to rise to
      --json                one JSON object per series instead of the table
  correlate --metric M       the series whose bucket means move with M's (Pearson's r at the
                            best lag), the brief's find_correlations, from rollups_merged
      --with PATTERN        LIKE patterns of the series to compare, comma-separated (default all)
      --since S             seconds back from M's newest bucket (default 3600)
      --width S             bucket width (default models.widthSeconds)
      --threshold R         |r| at or above which a pair is reported (default 0.7)
      --max-lag N           lags tried, in buckets either way (default 5)
      --json                one JSON object per pair instead of the table
  tenants sync              read isolation per tenant (README "Tenants"): for each tenant a
                            read-only ClickHouse user tenant_<T> that reads only its rows,
                            through its database <db>_tenant_<T>; password made once into
                            <dataDir>/tenants/<T>.password
      --tenant T            this tenant (repeatable; default: the named tenants of points and
                            tenants.topics)
  dashboards [--output DIR]  write the Grafana dashboards over the ClickHouse tables (for the
                            grafana-clickhouse-datasource plugin, data source uid
                            "clickhouse") for the configured database and score threshold
                            (default DIR: infra/docker/grafana/dashboards, what docker-compose
                            mounts)
  schema [--server-version V]  print the ClickHouse DDL Vigil applies (default: 18.16 baseline;
                            ON CLUSTER and replicated with clickhouse.cluster)
  bench [options]           benchmark harness (bench/harness.ts), also npm run bench:
      --preset P            smoke | default | drain | batched (default: default)
      --series, --points-per-message, --format, --rate, --count, --duration  as for produce
      --interval-ms N       drains: event time between a series' points (default 1000; the
                            scored buckets are 10 s, so 2500 puts 4 points in each)
      --stages S            raw | rollups | scoring | alerts (each adds to the one before)
      --anomalies N         first a labelled workload of N series with injected anomalies;
                            reports detection precision/recall/F1 (0: none)
      --workers N, --partitions N
      --tenants N           series spread over N tenants by a tenant tag, t0 noisy (half the
                            points); per-tenant points/s and latency (preset tenants: 100)
      --repartition M       auto | always | never: kafka.repartition for the run (default auto;
                            the generator keys by series, so always measures the repartition cost)
      --out DIR             results folder (default bench/results)
      --compare FILE        earlier result JSON; exit 1 when a figure falls below 0.85x
  infra up|down|status|install
                            manage the local Kafka, ClickHouse, Prometheus and Alertmanager
  config [--docs [--readme F]]  print the effective configuration, or the reference table
                            (written into F between its config markers)

Options:
  -c, --config FILE         configuration file (JSON or YAML); also $VIGIL_CONFIG
  -h, --help                this text
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      docs: { type: 'boolean' },
      readme: { type: 'string' },
      topic: { type: 'string' },
      series: { type: 'string' },
      'points-per-message': { type: 'string' },
      format: { type: 'string' },
      rate: { type: 'string' },
      count: { type: 'string' },
      duration: { type: 'string' },
      'interval-ms': { type: 'string' },
      'server-version': { type: 'string' },
      preset: { type: 'string' },
      stages: { type: 'string' },
      repartition: { type: 'string' },
      workers: { type: 'string' },
      partitions: { type: 'string' },
      out: { type: 'string' },
      compare: { type: 'string' },
      labelled: { type: 'boolean' },
      anomalies: { type: 'string' },
      labels: { type: 'string' },
      days: { type: 'string' },
      'points-per-bucket': { type: 'string' },
      input: { type: 'string' },
      output: { type: 'string' },
      lstm: { type: 'string' },
      metric: { type: 'string' },
      hours: { type: 'string' },
      epochs: { type: 'string' },
      table: { type: 'string' },
      width: { type: 'string' },
      threshold: { type: 'string' },
      below: { type: 'boolean' },
      json: { type: 'boolean' },
      with: { type: 'string' },
      since: { type: 'string' },
      'max-lag': { type: 'string' },
      tenant: { type: 'string', multiple: true },
      tenants: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, sub] = positionals;
  if (values.help || command === undefined) {
    console.log(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (command === 'config' && values.docs) {
    if (values.readme) {
      // Rewrites the reference table between the config markers of the given README.
      const text = readFileSync(values.readme, 'utf8');
      const updated = text.replace(/<!-- config:begin -->[\s\S]*<!-- config:end -->/, () => `<!-- config:begin -->\n${configDocs()}\n<!-- config:end -->`);
      writeFileSync(values.readme, updated);
    } else console.log(configDocs());
    return 0;
  }
  if (command === 'schema') {
    const { database, cluster } = loadConfig({ file: values.config }).clickhouse;
    for (const q of schemaStatements(database, capabilitiesOf(values['server-version'] ?? '18.16.1'), cluster)) console.log(`${q};\n`);
    return 0;
  }
  const config = loadConfig({ file: values.config });
  rootLogger(config.log.level);
  if (command === 'dashboards') return dashboardsCommand(config, values.output);

  switch (command) {
    case 'config':
      // Secrets and URL passwords redacted: the output ends up in terminals, tickets and CI logs.
      console.log(JSON.stringify(redactConfig(config), null, 2));
      return 0;
    case 'infra':
      return infraCommand(config, sub);
    case 'start':
      return start(config, values.config);
    case 'run':
      return run(config);
    case 'produce':
      return produceCommand(config, values);
    case 'bench':
      return benchCommand(config, values);
    case 'backtest':
      return backtestCommand(config, values);
    case 'train':
      return trainCommand(config, values);
    case 'export':
      return exportCommand(config, values);
    case 'capacity':
      return capacityCommand(config, values);
    case 'correlate':
      return correlateCommand(config, values);
    case 'tenants':
      if (sub !== 'sync') throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil tenants ${JSON.stringify(sub ?? null)}: expected sync`);
      return tenantsSyncCommand(config, values);
    default:
      throw new VigilError('VIGIL_ERR_CLI_USAGE', `unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  }
}

function dashboardsCommand(config: VigilConfig, output: string | undefined): number {
  const dir = output ?? join(infra.projectRoot(), 'infra', 'docker', 'grafana', 'dashboards');
  mkdirSync(dir, { recursive: true });
  const all = dashboards({ database: config.clickhouse.database, threshold: config.models.threshold });
  for (const [name, d] of Object.entries(all)) {
    writeFileSync(join(dir, name), dashboardJson(d));
    console.log(`${join(dir, name)}  ${d.title ?? ''} (${d.panels?.length ?? 0} panels)`);
  }
  return 0;
}

async function infraCommand(config: VigilConfig, sub: string | undefined): Promise<number> {
  const log = componentLogger('infra');
  switch (sub) {
    case 'install':
      infra.install(config, log, undefined, { testTools: true });
      return 0;
    case 'up':
      await infra.up(config, log);
      await printStatus(config);
      return 0;
    case 'down':
      await infra.down(config, log);
      return 0;
    case 'status':
      return (await printStatus(config)) ? 0 : 3;
    default:
      throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil infra: expected up, down, status or install, got ${JSON.stringify(sub ?? '')}`);
  }
}

/** Prints one line per service; returns true when all are running. */
async function printStatus(config: VigilConfig): Promise<boolean> {
  const all = await infra.status(config);
  for (const s of all) {
    const pid = s.pid === undefined ? '' : ` pid ${s.pid}`;
    console.log(`${s.name.padEnd(13)} ${s.state.padEnd(14)}${pid} ports ${s.ports.join(',')}  log ${s.log}`);
  }
  return all.every((s) => s.state === 'running');
}

function intOption(values: Record<string, unknown>, name: string, def: number, min = 0): number {
  const raw = values[name];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new VigilError('VIGIL_ERR_CLI_USAGE', `--${name} = ${JSON.stringify(raw)}: expected an integer >= ${min}`);
  return n;
}

function produceOptions(config: VigilConfig, values: Record<string, unknown>) {
  const format = (values['format'] ?? 'json') as string;
  if (!['json', 'ndjson', 'influx', 'prometheus'].includes(format)) {
    throw new VigilError('VIGIL_ERR_CLI_USAGE', `--format = ${JSON.stringify(format)}: expected json, ndjson, influx or prometheus`);
  }
  const series = intOption(values, 'series', 1000, 1);
  const rate = intOption(values, 'rate', 10000);
  const points = intOption(values, 'count', 0);
  // Event time must not run ahead of the wall clock (Vigil rejects points beyond
  // pipeline.maxFutureMs): a rate-limited stream advances at real-time pace; a fixed count at
  // full speed is laid out so that it ends now.
  const intervalMs = intOption(values, 'interval-ms', rate > 0 ? Math.max(1, Math.round((series * 1000) / rate)) : 10000, 1);
  const steps = points > 0 ? Math.ceil(points / series) : 0;
  const startMs = rate > 0 || points === 0 ? Date.now() : Date.now() - steps * intervalMs;
  return {
    topic: (values['topic'] as string | undefined) ?? config.kafka.topics[0] ?? 'metrics',
    series,
    pointsPerMessage: intOption(values, 'points-per-message', 1, 1),
    format: format as GenFormat,
    rate,
    points,
    durationMs: intOption(values, 'duration', 0) * 1000,
    intervalMs,
    startMs,
    seed: 1,
  };
}

async function produceCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  if (values['labelled']) return produceLabelledCommand(config, values);
  const options = produceOptions(config, values);
  const kafka = createKafka(config, componentLogger('produce'));
  await ensureTopics(kafka, config, [options.topic]);
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  process.once('SIGTERM', () => abort.abort());
  const { produce } = await import('../bench/generator.js');
  const summary = await produce(kafka, { ...options, signal: abort.signal });
  console.log(JSON.stringify({ points: summary.points, messages: summary.messages, seconds: summary.elapsedMs / 1000, pointsPerSecond: Math.round((summary.points / summary.elapsedMs) * 1000) }));
  return 0;
}

async function produceLabelledCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const { defaultLabelledOptions, labelledWorkload, produceLabelled } = await import('../bench/anomalies.js');
  const topic = (values['topic'] as string | undefined) ?? config.kafka.topics[0] ?? 'metrics';
  const days = intOption(values, 'days', 3, 1);
  const widthMs = 60_000;
  const buckets = Math.round((days * 86_400_000) / widthMs);
  // The stream ends now: Vigil rejects points beyond pipeline.maxFutureMs.
  const startMs = Math.floor(Date.now() / widthMs) * widthMs - buckets * widthMs;
  const workload = labelledWorkload(defaultLabelledOptions({ series: intOption(values, 'series', 20, 1), buckets, widthMs, startMs }));
  const kafka = createKafka(config, componentLogger('produce'));
  await ensureTopics(kafka, config, [topic]);
  const format = (values['format'] ?? 'json') as GenFormat;
  const t0 = Date.now();
  const { points, labels } = await produceLabelled(kafka, { topic, workload, format, pointsPerBucket: intOption(values, 'points-per-bucket', 2, 1) });
  if (values['labels']) {
    const rows = labels.map((l) => ({ key: l.key, kind: l.kind, start: new Date(l.startMs).toISOString(), end: new Date(l.endMs).toISOString(), magnitude: +l.magnitude.toFixed(2) }));
    writeFileSync(values['labels'] as string, JSON.stringify(rows, null, 2) + '\n');
  }
  console.log(JSON.stringify({ points, series: workload.series.length, buckets, anomalies: labels.length, seconds: (Date.now() - t0) / 1000 }));
  return 0;
}

async function backtestCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const input = values['input'] as string | undefined;
  if (!input) throw new VigilError('VIGIL_ERR_CLI_USAGE', 'vigil backtest: --input FILE (CSV of timestamp,value[,series][,label]) is required');
  const settings = modelSettings(config);
  if (!settings) throw new VigilError('VIGIL_ERR_CLI_USAGE', 'vigil backtest: models.enabled is false');
  const lstmDir = (values['lstm'] as string | undefined) ?? settings.lstmModelDir;
  const lstm = lstmDir && settings.ensemble.detectors.includes('lstm') ? await loadLstm(lstmDir) : null;
  const output = values['output'] as string | undefined;
  const lines: string[] = [BACKTEST_HEADER];
  const result = backtest(readBacktestCsv(input), { settings: settings.ensemble, lstm, onRow: (row, score) => lines.push(backtestLine(row, score)) });
  const text = lines.join('\n') + '\n';
  if (output) writeFileSync(output, text);
  else process.stdout.write(text);
  const summary = { rows: result.rows, series: result.series, lstm: lstm ? lstm.dir : null, ...(result.quality ? { quality: result.quality, windowed: result.windowed } : {}) };
  console.error(JSON.stringify(summary, null, 2));
  return 0;
}

async function trainCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const output = values['output'] as string | undefined;
  if (!output) throw new VigilError('VIGIL_ERR_CLI_USAGE', 'vigil train: --output DIR (where model.json, weights.bin and metadata.json go) is required');
  const options = { epochs: intOption(values, 'epochs', 10, 1) };
  const input = values['input'] as string | undefined;
  let metadata;
  if (input) metadata = await trainCsv(input, options, output);
  else {
    const client = createClient(clickhouseConnection(config.clickhouse));
    try {
      const history = await readHistory(client, {
        database: config.clickhouse.database,
        widthSeconds: config.models.widthSeconds,
        ...(values['metric'] ? { metricLike: values['metric'] as string } : {}),
        hours: intOption(values, 'hours', 0),
      });
      metadata = await trainSeries(history, options, output);
    } finally {
      await client.close();
    }
  }
  console.log(JSON.stringify({ output, ...metadata }, null, 2));
  return 0;
}

async function tenantsSyncCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const sink = new ClickHouseSink(config.clickhouse);
  // Migrated first: the tenant databases read the tenant column.
  await sink.start();
  try {
    const synced = await syncTenants(sink.client, {
      db: config.clickhouse.database,
      readCluster: config.tenants.readCluster,
      cluster: config.clickhouse.cluster,
      usersDir: config.tenants.usersDir || infra.localUsersDir(config),
      secretsDir: join(config.dataDir, 'tenants'),
      ...(values['tenant'] ? { tenants: values['tenant'] as string[] } : {}),
      topicTenants: Object.values(config.tenants.topics),
      connect: (username, password) => createClient({ ...clickhouseConnection(config.clickhouse), username, password }),
    });
    for (const t of synced) console.log(`tenant ${t.tenant}: user ${t.user}, database ${t.database}, password in ${t.passwordFile}`);
    if (synced.length === 0) console.log('no named tenant in points or tenants.topics: nothing to sync');
  } finally {
    await sink.close();
  }
  return 0;
}

async function exportCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const table = values['table'] as string | undefined;
  if (table !== 'rollups' && table !== 'anomalies') throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil export: --table = ${JSON.stringify(table ?? null)}: expected rollups or anomalies`);
  const output = values['output'] as string | undefined;
  if (!output) throw new VigilError('VIGIL_ERR_CLI_USAGE', 'vigil export: --output FILE is required');
  const format = (values['format'] as string | undefined) ?? (output.endsWith('.parquet') ? 'parquet' : 'arrow');
  if (format !== 'arrow' && format !== 'parquet') throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil export: --format = ${JSON.stringify(format)}: expected arrow or parquet`);
  const client = createClient(clickhouseConnection(config.clickhouse));
  try {
    const rows = await exportTable(client, {
      database: config.clickhouse.database,
      table,
      ...(values['metric'] ? { metricLike: values['metric'] as string } : {}),
      widthSeconds: intOption(values, 'width', 0),
      hours: intOption(values, 'hours', 0),
    });
    const bytes = exportBytes(rows, format);
    writeFileSync(output, bytes);
    console.log(JSON.stringify({ output, format, table, rows: rows.numRows, bytes: bytes.length }));
  } finally {
    await client.close();
  }
  return 0;
}

async function capacityCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const metric = values['metric'] as string | undefined;
  if (!metric) throw new VigilError('VIGIL_ERR_CLI_USAGE', 'vigil capacity: --metric NAME is required (a LIKE pattern: disk.%)');
  const text = values['threshold'] as string | undefined;
  const threshold = Number(text);
  if (text === undefined || text.trim() === '' || !Number.isFinite(threshold)) throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil capacity: --threshold = ${JSON.stringify(text ?? null)}: expected a number`);
  const query = { database: config.clickhouse.database, metricLike: metric, threshold, below: values['below'] === true };
  return printRows(config, values, (client) => capacity(client, query), (rows) => capacityTable(rows, query), `no forecasts of ${JSON.stringify(metric)} in ${config.clickhouse.database}.forecasts_latest (select the series with forecasts.series)`);
}

/** Runs a ClickHouse read and prints its rows: one JSON object per line with --json, else as `table` renders them (`none` on stderr when there are none). */
async function printRows<T>(config: VigilConfig, values: Record<string, unknown>, read: (client: ReturnType<typeof createClient>) => Promise<T[]>, table: (rows: T[]) => string, none: string): Promise<number> {
  const client = createClient(clickhouseConnection(config.clickhouse));
  try {
    const rows = await read(client);
    if (values['json']) for (const r of rows) console.log(JSON.stringify(r));
    else if (rows.length === 0) console.error(none);
    else process.stdout.write(table(rows));
  } finally {
    await client.close();
  }
  return 0;
}

async function correlateCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const metric = values['metric'] as string | undefined;
  if (!metric) throw new VigilError('VIGIL_ERR_CLI_USAGE', 'vigil correlate: --metric NAME is required (a LIKE pattern or the name)');
  const text = (values['threshold'] as string | undefined) ?? '0.7';
  const threshold = Number(text);
  if (text.trim() === '' || !(threshold >= 0 && threshold <= 1)) throw new VigilError('VIGIL_ERR_CLI_USAGE', `vigil correlate: --threshold = ${JSON.stringify(text)}: expected a number from 0 to 1`);
  const query = {
    database: config.clickhouse.database,
    metric,
    with: ((values['with'] as string | undefined) ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
    widthSeconds: intOption(values, 'width', config.models.widthSeconds, 1),
    sinceSeconds: intOption(values, 'since', 3600, 1),
    threshold,
    maxLag: intOption(values, 'max-lag', 5),
  };
  return printRows(config, values, (client) => correlate(client, query), correlationTable, `no series correlated with ${JSON.stringify(metric)} at |r| >= ${threshold} in ${config.clickhouse.database}.rollups_merged (width ${query.widthSeconds} s, the last ${query.sinceSeconds} s)`);
}

async function benchCommand(config: VigilConfig, values: Record<string, unknown>): Promise<number> {
  const { BENCH_STAGES, PRESETS, runBench } = await import('../bench/harness.js');
  const presetName = (values['preset'] as string | undefined) ?? 'default';
  const preset = PRESETS[presetName];
  if (!preset) throw new VigilError('VIGIL_ERR_CLI_USAGE', `--preset = ${JSON.stringify(presetName)}: expected one of ${Object.keys(PRESETS).join(', ')}`);
  const stages = (values['stages'] as string | undefined) ?? preset.stages ?? 'rollups';
  if (!(BENCH_STAGES as readonly string[]).includes(stages)) throw new VigilError('VIGIL_ERR_CLI_USAGE', `--stages = ${JSON.stringify(stages)}: expected one of ${BENCH_STAGES.join(', ')}`);
  const format = (values['format'] as string | undefined) ?? preset.format ?? 'json';
  if (!['json', 'ndjson', 'influx', 'prometheus'].includes(format)) throw new VigilError('VIGIL_ERR_CLI_USAGE', `--format = ${JSON.stringify(format)}: expected json, ndjson, influx or prometheus`);
  const repartition = (values['repartition'] as string | undefined) ?? 'auto';
  if (!['auto', 'always', 'never'].includes(repartition)) throw new VigilError('VIGIL_ERR_CLI_USAGE', `--repartition = ${JSON.stringify(repartition)}: expected auto, always or never`);
  if (usesLocalStack(config)) await infra.up(config, componentLogger('infra'));
  const result = await runBench(config, {
    repartition: repartition as BenchOptions['repartition'],
    series: intOption(values, 'series', preset.series ?? 1000, 1),
    pointsPerMessage: intOption(values, 'points-per-message', preset.pointsPerMessage ?? 1, 1),
    format: format as GenFormat,
    rate: intOption(values, 'rate', preset.rate ?? 20000),
    durationSeconds: intOption(values, 'duration', preset.durationSeconds ?? 30, 1),
    points: intOption(values, 'count', preset.points ?? 400_000, 1),
    intervalMs: intOption(values, 'interval-ms', 1000, 1),
    stages: stages as BenchStages,
    anomalies: intOption(values, 'anomalies', preset.anomalies ?? 0),
    workers: intOption(values, 'workers', preset.workers ?? config.pipeline.workers, 1),
    partitions: intOption(values, 'partitions', preset.partitions ?? 4, 1),
    tenants: intOption(values, 'tenants', preset.tenants ?? 0),
    outDir: (values['out'] as string | undefined) ?? join(infra.projectRoot(), 'bench', 'results'),
    compare: values['compare'] as string | undefined,
    regressionRatio: 0.85,
    progress: (line) => process.stderr.write(`\r${line}   `),
  });
  process.stderr.write('\n');
  console.log(readFileSync(result.files.markdown, 'utf8'));
  console.log(`written ${result.files.json}, ${result.files.markdown}, ${result.files.chart}`);
  return result.regressions.length > 0 ? 1 : 0;
}

/** How long after the drain deadline a process that still has not exited is ended (code 1). */
const EXIT_GRACE_MS = 3000;

/**
 * Resolves on the first SIGINT/SIGTERM; a second one exits at once with 128 + the signal's
 * number. The handlers stay installed for the life of the process (a one-shot handler would
 * leave the next signal ignored).
 */
function terminationSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let first: NodeJS.Signals | undefined;
    const on = (signal: NodeJS.Signals): void => {
      if (first) {
        safely(() => componentLogger('pipeline').warn({ signal }, 'second signal: exiting now without draining'));
        process.exit(128 + (constants.signals[signal] ?? 0));
      }
      first = signal;
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

/** Ends the process with `code` once `ms` have passed, whatever still holds the event loop. */
function exitAfter(ms: number, code: number): void {
  setTimeout(() => process.exit(code), ms).unref();
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // Logging must never stand in the way of exiting (a closed stdout).
  }
}

/** Stops the pipeline after a signal or a fatal error, within pipeline.shutdownTimeoutMs. */
async function shutdown(pipeline: RunningPipeline, config: VigilConfig, reason: NodeJS.Signals | 'fatal'): Promise<number> {
  exitAfter(config.pipeline.shutdownTimeoutMs + EXIT_GRACE_MS, 1);
  const code = reason === 'fatal' ? 1 : await pipeline.stop();
  // Stopped: nothing left to wait for, even if a client library still holds a socket or timer.
  exitAfter(1000, code);
  return code;
}

async function run(config: VigilConfig): Promise<number> {
  const pipeline = await runPipeline(config);
  const reason = await Promise.race([terminationSignal(), pipeline.done.then(() => 'fatal' as const)]);
  return shutdown(pipeline, config, reason);
}

function summaryLine(p: RunningPipeline, previous: { at: number; points: number; rows: number }): string {
  const s = p.ingestor.stats;
  const now = Date.now();
  const secs = Math.max(0.001, (now - previous.at) / 1000);
  const a = p.alerting?.counts;
  const alerts = a ? `  alerts firing ${a.active} (events ${a.firing} fired, ${a.resolved} resolved)` : '';
  const line = `points/s in ${Math.round((s.points - previous.points) / secs)}  rows/s out ${Math.round((s.rowsInserted - previous.rows) / secs)}  lag ${s.lag}  dead letters ${s.deadLetters}  rows total ${s.rowsInserted}  anomalies ${s.anomalies}${alerts}${s.paused ? '  [paused: backpressure]' : ''}`;
  Object.assign(previous, { at: now, points: s.points, rows: s.rowsInserted });
  return line;
}

async function start(given: VigilConfig, file: string | undefined): Promise<number> {
  const local = usesLocalStack(given);
  if (local) await infra.up(given, componentLogger('infra'));
  // The demo alerts with the demo rules (the predefined kinds on windows of seconds), through the
  // local Alertmanager when it runs, on 10 s buckets closed 2 s after their end.
  const overrides: Record<string, unknown> = {};
  if (!given.alerts.rulesFile) overrides['alerts.rulesFile'] = join(infra.projectRoot(), 'rules', 'demo.yaml');
  if (!given.alerts.alertmanagerUrl && local) overrides['alerts.alertmanagerUrl'] = `http://127.0.0.1:${given.infra.alertmanagerPort}`;
  overrides['rollups.widthsSeconds'] = [...new Set([...given.rollups.widthsSeconds, DEMO_WIDTH_SECONDS])].sort((a, b) => a - b);
  overrides['models.widthSeconds'] = DEMO_WIDTH_SECONDS;
  overrides['rollups.allowedLatenessMs'] = Math.min(given.rollups.allowedLatenessMs, 2000);
  // The labelled history and the incident go to topics of their own per run: on a topic the
  // group has read before, history would arrive behind the committed watermark, as late data;
  // and each behind the other's. Deleted on exit.
  const run = Date.now().toString(36);
  const demoTopics = [`metrics-demo-${run}`, `metrics-incident-${run}`] as const;
  overrides['kafka.topics'] = [...given.kafka.topics, ...demoTopics];
  overrides['kafka.fromBeginning'] = true;
  const config = loadConfig({ file, overrides });
  const pipeline = await runPipeline(config);
  const story: AlertEvent[] = [];
  // Above the live line on a terminal (carriage return, erase the line); plain lines elsewhere.
  const say = (line: string) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : '\n'}${line}\n`);
  pipeline.alerting?.onPublished((events) => {
    for (const e of events) {
      story.push(e);
      say(storyLine(e));
    }
  });
  const abort = new AbortController();
  const kafka = createKafka(config, componentLogger('produce'));
  // First six hours of labelled history with injected anomalies (spikes, shifts, dropouts, ...)
  // for the detectors and two of the incident's series, then the live streams: history produced
  // after them would arrive behind the partitions' watermarks, as late data.
  const { defaultLabelledOptions, labelledWorkload, produceLabelled } = await import('../bench/anomalies.js');
  const { produce } = await import('../bench/generator.js');
  const { produceIncident, INCIDENT_SECONDS } = await import('../bench/incident.js');
  const widthMs = DEMO_WIDTH_SECONDS * 1000;
  const buckets = Math.round(6 * 3_600_000 / widthMs);
  const workload = labelledWorkload(defaultLabelledOptions({ series: 12, buckets, widthMs, periodMs: 3_600_000, startMs: Math.floor(Date.now() / widthMs) * widthMs - buckets * widthMs, cleanBuckets: Math.round(buckets / 3) }));
  await produceLabelled(kafka, { topic: demoTopics[0], workload, format: 'json', pointsPerBucket: 2 }).catch((err: unknown) => {
    componentLogger('produce').error({ err }, 'labelled demo producer failed');
  });
  const incident = produceIncident(kafka, {
    topic: demoTopics[1],
    historyMs: 2 * 3_600_000,
    signal: abort.signal,
    onStart: (startMs) => say(`demo: a scripted incident starts at ${clock(startMs)} (bench/incident.ts): demo-web-1's CPU above 90 %, a burst of unauthorized accesses to demo-key, demo-db-1 silent, demo-key read ten times as often; each rule fires and resolves by ${clock(startMs + INCIDENT_SECONDS * 1000)}. Ctrl-C stops and prints where to look.`),
  }).catch((err: unknown) => {
    componentLogger('produce').error({ err }, 'incident producer failed');
  });
  const demo = produce(kafka, { ...produceOptions(config, {}), rate: 5000, signal: abort.signal }).catch((err: unknown) => {
    componentLogger('produce').error({ err }, 'demo producer failed');
  });
  const previous = { at: Date.now(), points: 0, rows: 0 };
  const ticker = setInterval(() => process.stderr.write(`\r${summaryLine(pipeline, previous)}   `), 2000);
  const reason = await Promise.race([terminationSignal(), pipeline.done.then(() => 'fatal' as const)]);
  clearInterval(ticker);
  abort.abort();
  await Promise.all([demo, incident]);
  process.stderr.write('\n');
  const code = await shutdown(pipeline, config, reason);
  process.stderr.write(recap(config, story, local));
  const admin = kafka.admin();
  await admin
    .connect()
    .then(() => admin.deleteTopics({ topics: [...demoTopics] }))
    .catch((err: unknown) => componentLogger('produce').warn({ err, topics: demoTopics }, 'could not delete the demo topics'))
    .finally(() => admin.disconnect());
  return code;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (isVigilError(err)) console.error(err.message);
    else if (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) console.error(`VIGIL_ERR_CLI_USAGE: ${err.message}\n\n${USAGE}`);
    else console.error(err);
    process.exitCode = 1;
  },
);
