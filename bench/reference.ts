import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clickhouseConnection } from '../core/redact.js';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import type { Admin, Kafka } from 'kafkajs';
import { createKafka } from '../pipeline/kafka.js';
import { componentLogger } from '../core/log.js';
import type { VigilConfig } from '../core/config/index.js';

/** The clients a benchmark drives the stack with: ClickHouse, Kafka and a connected Kafka admin. */
export async function benchClients(config: VigilConfig): Promise<{ ch: ClickHouseClient; kafka: Kafka; admin: Admin; close(): Promise<void> }> {
  const ch = createClient(clickhouseConnection(config.clickhouse));
  const kafka = createKafka(config, componentLogger('bench'));
  const admin = kafka.admin();
  await admin.connect();
  return {
    ch,
    kafka,
    admin,
    async close() {
      await admin.disconnect();
      await ch.close();
    },
  };
}

/** Pid of a local-stack service from its pid file (undefined when it is not ours or not running). */
export function servicePid(config: VigilConfig, name: 'kafka' | 'clickhouse'): number | undefined {
  try {
    return Number(readFileSync(join(config.dataDir, `${name}.pid`), 'utf8').trim());
  } catch {
    return undefined;
  }
}

export async function countRows(ch: ClickHouseClient, table: string): Promise<number> {
  const rs = await ch.query({ query: `SELECT count() AS c FROM ${table}`, format: 'JSONEachRow' });
  return Number((await rs.json<{ c: string }>())[0]?.c);
}

/**
 * `producer | consumer` without a shell: argument vectors go to the programs as they are, so no
 * configuration value (a broker address, a topic name) is ever parsed by bash.
 */
function pipe(producer: readonly string[], consumer: readonly string[]): Promise<void> {
  const run = (argv: readonly string[], stdio: ['ignore' | 'pipe', 'pipe' | 'ignore', 'pipe']) => spawn(argv[0] as string, argv.slice(1), { stdio });
  const from = run(producer, ['ignore', 'pipe', 'pipe']);
  const to = run(consumer, ['pipe', 'ignore', 'pipe']);
  from.stdout?.pipe(to.stdin as NodeJS.WritableStream);
  const done = (argv: readonly string[], child: ReturnType<typeof spawn>) =>
    new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${code}: ${err}`))));
    });
  return Promise.all([done(producer, from), done(consumer, to)]).then(() => undefined);
}

/**
 * The raw-copy baseline: `kcat -C | clickhouse-client` copies a topic into a plain MergeTree table
 * in `db` (JSON messages by their scalar fields, line protocol as raw lines). Returns the seconds it
 * took; throws unless `expectedRows` rows arrived.
 */
export async function kcatReference(config: VigilConfig, ch: ClickHouseClient, db: string, topic: string, json: boolean, expectedRows: number): Promise<number> {
  await ch.command({
    query: json
      ? `CREATE TABLE ${db}.ref (metric_id String, value Float64, timestamp String, metric_type String) ENGINE = MergeTree() ORDER BY tuple()`
      : `CREATE TABLE ${db}.ref (line String) ENGINE = MergeTree() ORDER BY tuple()`,
  });
  const broker = config.kafka.brokers[0] as string;
  const port = String(config.infra.clickhouseTcpPort);
  const insert = json
    ? ['clickhouse-client', '--port', port, '--input_format_skip_unknown_fields=1', '--query', `INSERT INTO ${db}.ref FORMAT JSONEachRow`]
    : ['clickhouse-client', '--port', port, '--query', `INSERT INTO ${db}.ref FORMAT TabSeparated`];
  const t0 = performance.now();
  await pipe(['kcat', '-C', '-b', broker, '-t', topic, '-e', '-q', '-f', '%s\\n'], insert);
  const seconds = (performance.now() - t0) / 1000;
  const rows = await countRows(ch, `${db}.ref`);
  if (rows !== expectedRows) throw new Error(`reference stored ${rows} of ${expectedRows} rows`);
  return seconds;
}
