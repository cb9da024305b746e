/**
 * The baseline of DESIGN.md §10: what a user would set up instead of Vigil, i.e. ClickHouse's own
 * Kafka table engine with a materialized view into a MergeTree table, run on the same topic and
 * data as the pipeline. Checked against ClickHouse 18.16.1 (the Debian package, system
 * librdkafka 2.0.2):
 *
 * - Start offset: the engine leaves librdkafka's `auto.offset.reset` at its default (`largest`),
 *   so a new `kafka_group_name` starts at the END of a pre-filled topic and reads nothing. 18.16
 *   has no per-table setting for it; the other fix is server-wide (config.xml
 *   `<kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>`, per the source, not tried).
 *   Instead we commit the topic's earliest offsets for a fresh group before the table exists
 *   (what `kafka-consumer-groups --reset-offsets --to-earliest` does); the engine resumes there.
 * - JSONEachRow: the engine forces `input_format_skip_unknown_fields=1` (no per-table setting:
 *   `kafka_skip_broken_messages` and input_format_* are "Unknown setting ... for storage Kafka").
 *   The nested `tags` object can only be skipped (reading it into a String column fails with
 *   "Cannot parse JSON string: expected opening quote"), and a JSON array message fails with
 *   "Cannot parse input: expected { before: [" — the engine then re-reads that block forever.
 * - So the default mode reads each message line as one String (`kafka_format='TSV'`,
 *   `kafka_row_delimiter='\n'`) and parses it in the view with visitParamExtract*, extractAll and
 *   splitByChar: that keeps tags, handles JSON arrays (ARRAY JOIN over the objects) and Influx line
 *   protocol. Limits: TSV unescapes backslashes (JSON strings with escapes, escaped Influx
 *   characters are not handled), tags must be a flat object of strings, one Influx field `value`.
 *
 *   node <outDir>/bench/kafka-engine.js --points 200000 --format json [--ppm 1] [--mode lines|JSONEachRow|both]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { ClickHouseClient } from '@clickhouse/client';
import { loadConfig, type VigilConfig } from '../core/config/index.js';
import { createKafka } from '../pipeline/kafka.js';
import { componentLogger, rootLogger } from '../core/log.js';
import { produce, type GenFormat } from './generator.js';
import { benchClients, countRows, kcatReference } from './reference.js';

/** How JSON messages are read: typed JSONEachRow columns (tags dropped) or raw lines parsed in the view (tags kept). */
export type KafkaEngineJsonMode = 'lines' | 'JSONEachRow';

export interface KafkaEngineOptions {
  /** Give up after this long (default 600 s). */
  timeoutMs?: number;
  /** Give up when no new row arrived for this long (default 60 s): the engine retries a failing block forever. */
  stallMs?: number;
  /** JSON reading mode (default `lines`); Influx line protocol is always read as lines. */
  json?: KafkaEngineJsonMode;
  /** `kafka_num_consumers` (default 1; with more, 18.16 re-reads uncommitted blocks after the group rebalances: duplicates). */
  consumers?: number;
  /** count() polling interval (default 50 ms). */
  pollMs?: number;
}

export interface KafkaEngineResult {
  /** From creating the Kafka table to the last row counted in the target table. */
  seconds: number;
  /** From creating the Kafka table to the first rows in the target (consumer start-up and group join). */
  firstRowSeconds: number;
  rows: number;
  notes: string;
  /** The target table's name in `db`. */
  table: string;
}

const TARGET_COLUMNS = 'metric String, tags Nested(key String, value String), type String, ts DateTime, ts_ms Int64, value Float64';

const str = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** The view's SELECT list from ISO-8601 `timestamp` text with milliseconds and `Z` (as `Date.toISOString()` writes it). */
function isoTime(iso: string): string {
  return `parseDateTimeBestEffort(${iso}) AS ts, toInt64(toUInt32(ts)) * 1000 + toInt64(toUInt16(substring(${iso}, 21, 3))) AS ts_ms`;
}

/** Tag keys and values of a flat JSON object of strings (`raw`), optionally without one key. */
function jsonTags(raw: string, without?: string): string {
  const keys = `extractAll(${raw}, '"([^"]*)":')`;
  const values = `extractAll(${raw}, ':"([^"]*)"')`;
  if (!without) return `${keys} AS \`tags.key\`, ${values} AS \`tags.value\``;
  return `arrayFilter(k -> k != ${str(without)}, ${keys}) AS \`tags.key\`, arrayFilter((v, k) -> k != ${str(without)}, ${values}, ${keys}) AS \`tags.value\``;
}

interface Plan {
  queueColumns: string;
  kafkaFormat: string;
  rowDelimiter: boolean;
  select: (queue: string) => string;
  notes: string;
}

function plan(format: GenFormat, mode: KafkaEngineJsonMode, arrays: boolean): Plan {
  const lines = { queueColumns: 'line String', kafkaFormat: 'TSV', rowDelimiter: true };
  if (format === 'influx') {
    const head = `splitByChar(',', splitByChar(' ', line)[1])`;
    const ns = `toUInt64(splitByChar(' ', line)[3])`;
    return {
      ...lines,
      select: (q) =>
        `SELECT ${head}[1] AS metric, arrayMap(x -> substring(x, 1, position(x, '=') - 1), arraySlice(${head}, 2)) AS \`tags.key\`, ` +
        `arrayMap(x -> substring(x, position(x, '=') + 1), arraySlice(${head}, 2)) AS \`tags.value\`, '' AS type, ` +
        `toDateTime(intDiv(${ns}, 1000000000)) AS ts, toInt64(intDiv(${ns}, 1000000)) AS ts_ms, ` +
        `toFloat64(extract(splitByChar(' ', line)[2], '(?:^|,)value=([^,]*)')) AS value FROM ${q}`,
      notes: 'line protocol read as TSV lines, parsed in the view with splitByChar (no escapes, field `value` only, type empty); tags kept',
    };
  }
  if (mode === 'JSONEachRow') {
    if (arrays) {
      throw new Error(
        'kafka engine: JSON array messages (several points per message) cannot be read with JSONEachRow on ClickHouse 18.16 ' +
          '("Cannot parse input: expected { before: [", retried forever); use the lines mode or ndjson',
      );
    }
    const base = { queueColumns: '', kafkaFormat: 'JSONEachRow', rowDelimiter: false };
    const noTags = 'emptyArrayString() AS `tags.key`, emptyArrayString() AS `tags.value`';
    if (format === 'prometheus') {
      return {
        ...base,
        queueColumns: 'name String, value String, timestamp String',
        select: (q) => `SELECT name AS metric, ${noTags}, '' AS type, ${isoTime('timestamp')}, toFloat64(value) AS value FROM ${q}`,
        notes: 'JSONEachRow columns name/value/timestamp; labels dropped (the engine forces input_format_skip_unknown_fields=1 and 18.16 cannot read an object into a column)',
      };
    }
    return {
      ...base,
      queueColumns: 'metric_id String, value Float64, timestamp String, metric_type String',
      select: (q) => `SELECT metric_id AS metric, ${noTags}, metric_type AS type, ${isoTime('timestamp')}, value FROM ${q}`,
      notes: 'JSONEachRow scalar columns; tags dropped (the engine forces input_format_skip_unknown_fields=1 and 18.16 cannot read an object into a column)',
    };
  }
  if (format === 'prometheus') {
    return {
      ...lines,
      select: (q) =>
        `SELECT visitParamExtractString(line, 'name') AS metric, ${jsonTags("visitParamExtractRaw(line, 'labels')", '__name__')}, '' AS type, ` +
        `${isoTime("visitParamExtractString(line, 'timestamp')")}, toFloat64(visitParamExtractString(line, 'value')) AS value FROM ${q}`,
      notes: 'JSON lines read as TSV lines, parsed in the view with visitParamExtract*/extractAll; labels kept (without __name__)',
    };
  }
  // json (an object, or an array of objects with one nested `tags` object each) and ndjson.
  const obj = arrays ? 'obj' : 'line';
  return {
    ...lines,
    select: (q) =>
      `SELECT visitParamExtractString(${obj}, 'metric_id') AS metric, ${jsonTags(`visitParamExtractRaw(${obj}, 'tags')`)}, ` +
      `visitParamExtractString(${obj}, 'metric_type') AS type, ${isoTime(`visitParamExtractString(${obj}, 'timestamp')`)}, ` +
      `visitParamExtractFloat(${obj}, 'value') AS value FROM ${q}` +
      (arrays ? ` ARRAY JOIN extractAll(line, '\\\\{[^{}]*\\\\{[^{}]*\\\\}[^{}]*\\\\}') AS obj` : ''),
    notes: `JSON read as TSV lines, parsed in the view with visitParamExtract*/extractAll${arrays ? ' (arrays split with ARRAY JOIN extractAll)' : ''}; tags kept`,
  };
}

/**
 * Copies `topic` into a MergeTree table in `db` with ClickHouse's Kafka engine and a materialized
 * view, from the topic's first offsets, and measures the seconds from creating the Kafka table to
 * the `expectedRows`-th row in the target. The Kafka table and view are dropped afterwards (the
 * consumer stops) and so is the consumer group; the target table `<db>.ke_<id>` stays with the database. Throws on timeout,
 * on a stall (a block failing to parse is retried forever by the engine), on duplicate rows, or on
 * an unsupported case.
 */
export async function kafkaEngineReference(
  config: VigilConfig,
  ch: ClickHouseClient,
  db: string,
  topic: string,
  format: GenFormat,
  expectedRows: number,
  options: KafkaEngineOptions = {},
): Promise<KafkaEngineResult> {
  const timeoutMs = options.timeoutMs ?? 600_000;
  const stallMs = options.stallMs ?? 60_000;
  const pollMs = options.pollMs ?? 50;
  const consumers = options.consumers ?? 1;
  const id = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const target = `${db}.ke_${id}`;
  const queue = `${db}.ke_${id}_queue`;
  const view = `${db}.ke_${id}_mv`;
  const group = `vigil_ke_${db}_${id}`;

  // A new group starts at the end of the topic (librdkafka's default auto.offset.reset=largest,
  // which 18.16 only lets the server config change): commit the earliest offsets for it first.
  const kafka = createKafka(config, componentLogger('bench'));
  const admin = kafka.admin();
  await admin.connect();
  let messages = 0;
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    messages = offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    await admin.setOffsets({ groupId: group, topic, partitions: offsets.map((p) => ({ partition: p.partition, offset: p.low })) });
  } finally {
    await admin.disconnect();
  }
  const arrays = format === 'json' && messages < expectedRows;
  const p = plan(format, options.json ?? 'lines', arrays);

  const broker = config.kafka.brokers[0] as string;
  const settings = [
    `kafka_broker_list = ${str(broker)}`,
    `kafka_topic_list = ${str(topic)}`,
    `kafka_group_name = ${str(group)}`,
    `kafka_format = ${str(p.kafkaFormat)}`,
    ...(p.rowDelimiter ? [`kafka_row_delimiter = '\\n'`] : []),
    `kafka_num_consumers = ${consumers}`,
  ];
  await ch.command({ query: `CREATE TABLE ${target} (${TARGET_COLUMNS}) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY (metric, ts_ms)` });
  const t0 = performance.now();
  let tLast = t0;
  let tFirst = t0;
  let rows = 0;
  try {
    await ch.command({ query: `CREATE TABLE ${queue} (${p.queueColumns}) ENGINE = Kafka SETTINGS ${settings.join(', ')}` });
    await ch.command({ query: `CREATE MATERIALIZED VIEW ${view} TO ${target} AS ${p.select(queue)}` });
    let lastChange = performance.now();
    while (rows < expectedRows) {
      await new Promise((r) => setTimeout(r, pollMs));
      const n = await countRows(ch, target);
      const now = performance.now();
      if (n !== rows) {
        if (rows === 0) tFirst = now;
        rows = n;
        tLast = now;
        lastChange = now;
      }
      if (now - t0 > timeoutMs) throw new Error(`kafka engine: ${rows} of ${expectedRows} rows after ${timeoutMs} ms`);
      if (now - lastChange > stallMs) {
        throw new Error(`kafka engine: stuck at ${rows} of ${expectedRows} rows for ${stallMs} ms (a block that fails to parse is retried forever; see the ClickHouse error log)`);
      }
    }
  } finally {
    await ch.command({ query: `DROP TABLE IF EXISTS ${view}` });
    await ch.command({ query: `DROP TABLE IF EXISTS ${queue}` });
    // Dropping the Kafka table closed its consumer; forget the group's committed offsets too.
    const cleanup = kafka.admin();
    await cleanup.connect();
    await cleanup.deleteGroups([group]).catch(() => undefined);
    await cleanup.disconnect();
  }
  rows = await countRows(ch, target);
  if (rows !== expectedRows) {
    // The engine commits offsets only after a block is stored; a rebalance (e.g. when a second
    // consumer joins the group) hands uncommitted partitions over and they are read again.
    throw new Error(`kafka engine: stored ${rows} rows for ${expectedRows} points (duplicates after a consumer-group rebalance; use 1 consumer)`);
  }
  return {
    seconds: (tLast - t0) / 1000,
    firstRowSeconds: (tFirst - t0) / 1000,
    rows,
    table: `ke_${id}`,
    notes: `ClickHouse Kafka engine (${consumers} consumer${consumers > 1 ? 's' : ''}) → materialized view → MergeTree; ${p.notes}; group offsets pre-committed at the earliest offsets`,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      points: { type: 'string' },
      format: { type: 'string' },
      ppm: { type: 'string' },
      mode: { type: 'string' },
      consumers: { type: 'string' },
      partitions: { type: 'string' },
    },
  });
  const points = Number(values.points ?? 200_000);
  const format = (values.format ?? 'json') as GenFormat;
  const pointsPerMessage = Number(values.ppm ?? (format === 'json' ? 1 : 100));
  const modes: KafkaEngineJsonMode[] = values.mode === 'both' ? ['lines', 'JSONEachRow'] : [(values.mode ?? 'lines') as KafkaEngineJsonMode];
  const consumers = Number(values.consumers ?? 1);
  rootLogger('warn');
  const config = loadConfig();
  const clients = await benchClients(config);
  const { ch, kafka, admin } = clients;
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const topic = `bench_ke_${runId}`;
  const db = `bench_ke_${runId}`;
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: Number(values.partitions ?? 4) }], waitForLeaders: true });
    const series = 1000;
    const sent = await produce(kafka, {
      topic, series, pointsPerMessage, format, rate: 0, points, durationMs: 0, intervalMs: 1000,
      startMs: Date.now() - Math.ceil(points / series) * 1000 - 60_000, seed: 11,
    });
    console.log(`${format}, ${pointsPerMessage} pt/msg: produced ${sent.points} points in ${sent.messages} messages`);
    await ch.command({ query: `CREATE DATABASE ${db}` });
    let kcatSeconds: number | undefined;
    try {
      kcatSeconds = await kcatReference(config, ch, db, topic, format !== 'influx', sent.points);
      console.log(`kcat | clickhouse-client: ${kcatSeconds.toFixed(2)} s, ${Math.round(sent.points / kcatSeconds)} points/s`);
    } catch (err) {
      console.log(`kcat | clickhouse-client: failed: ${(err as Error).message.split('\n')[0]}`);
    }
    for (const json of modes) {
      const label = `kafka engine [${format === 'influx' ? 'lines' : json}]`;
      let r: KafkaEngineResult;
      try {
        r = await kafkaEngineReference(config, ch, db, topic, format, sent.points, { json, consumers });
      } catch (err) {
        console.log(`${label}: failed: ${(err as Error).message}`);
        continue;
      }
      const ratio = kcatSeconds === undefined ? '' : `, ${(r.seconds / kcatSeconds).toFixed(2)}× kcat's time`;
      console.log(`${label}: ${r.seconds.toFixed(2)} s, ${Math.round(r.rows / r.seconds)} points/s, ${r.rows} rows${ratio}; first rows after ${r.firstRowSeconds.toFixed(2)} s`);
      console.log(`  ${r.notes}`);
      const check = await ch.query({
        query: `SELECT sum(value) AS s, uniqExact(metric, tags.key, tags.value) AS series, min(ts_ms) AS t0, max(ts_ms) AS t1 FROM ${db}.${r.table}`,
        format: 'JSONEachRow',
      });
      const c = (await check.json<{ s: number; series: string; t0: string; t1: string }>())[0];
      console.log(`  check: sum(value) ${c?.s.toFixed(3)} (sent ${sent.valueSum.toFixed(3)}), ${c?.series} distinct series, ts_ms ${c?.t0}..${c?.t1}`);
    }
  } finally {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${db}` });
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await clients.close();
  }
}
