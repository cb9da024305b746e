import { randomBytes } from 'node:crypto';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { afterAll } from 'vitest';
import { loadConfig, type VigilConfig } from '../../core/config/index.js';
import { ClickHouseSink } from '../../sinks/clickhouse/index.js';

/** A name no other test or run uses: letters, digits and underscores (valid for topics and databases). */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export function testConfig(overrides: Record<string, unknown> = {}): VigilConfig {
  return loadConfig({ overrides });
}

export function kafkaClient(config: VigilConfig = testConfig()): Kafka {
  return new Kafka({ clientId: uniqueName('test'), brokers: [...config.kafka.brokers], logLevel: logLevel.NOTHING });
}

/**
 * Per-file test resources: topics and databases created through it are removed in afterAll,
 * clients are closed. Call once at the top level of a test file.
 */
export function useResources(config: VigilConfig = testConfig()) {
  const topics: string[] = [];
  const databases: string[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  let admin: Admin | undefined;
  let clickhouse: ClickHouseClient | undefined;

  const res = {
    config,
    kafka: kafkaClient(config),
    async admin(): Promise<Admin> {
      if (!admin) {
        admin = res.kafka.admin();
        await admin.connect();
      }
      return admin;
    },
    clickhouse(): ClickHouseClient {
      clickhouse ??= createClient({ url: config.clickhouse.url, username: config.clickhouse.username, password: config.clickhouse.password });
      return clickhouse;
    },
    /** A fresh topic; `configs` are topic-level settings (e.g. `max.message.bytes`). */
    async topic(prefix: string, partitions = 1, configs: Record<string, string> = {}): Promise<string> {
      const name = uniqueName(prefix);
      topics.push(name);
      const configEntries = Object.entries(configs).map(([name, value]) => ({ name, value }));
      await (await res.admin()).createTopics({ topics: [{ topic: name, numPartitions: partitions, configEntries }], waitForLeaders: true });
      return name;
    },
    async database(prefix: string): Promise<string> {
      const name = uniqueName(prefix);
      databases.push(name);
      await res.clickhouse().command({ query: `CREATE DATABASE ${name}` });
      return name;
    },
    /** A database with Vigil's tables, made as the pipeline makes them (the sink's migrations). */
    async migratedDatabase(prefix: string): Promise<string> {
      const db = uniqueName(prefix);
      databases.push(db);
      const sink = new ClickHouseSink({ ...config.clickhouse, database: db });
      await sink.start();
      await sink.close();
      return db;
    },
    /** Registers a database or topic created by the code under test (e.g. the pipeline's own). */
    own(kind: 'topic' | 'database', name: string): void {
      (kind === 'topic' ? topics : databases).push(name);
    },
    onClose(fn: () => Promise<unknown>): void {
      closers.push(fn);
    },
    /**
     * Topics (metrics with `partitions`, dead letters, alerts), a database and a consumer group of
     * their own for one pipeline under test, as its VIGIL_* environment.
     */
    async pipelineEnv(prefix: string, partitions: number): Promise<{ topic: string; db: string; env: Record<string, string> }> {
      const topic = await res.topic(`${prefix}_metrics`, partitions);
      const db = uniqueName(prefix);
      res.own('database', db);
      const env = {
        VIGIL_KAFKA_TOPICS: topic,
        VIGIL_KAFKA_DLQ_TOPIC: await res.topic(`${prefix}_dlq`, 1),
        VIGIL_KAFKA_ALERTS_TOPIC: await res.topic(`${prefix}_alerts`, 1),
        VIGIL_KAFKA_GROUP_ID: uniqueName(`${prefix}_group`),
        // Created here so that it is removed with the test's other topics (the default name follows the group).
        VIGIL_KAFKA_REPARTITION_TOPIC: await res.topic(`${prefix}_repartition`, 4),
        VIGIL_CLICKHOUSE_DATABASE: db,
      };
      return { topic, db, env };
    },
    /** The first column of the first row of a ClickHouse query, as a number. */
    async scalar(query: string): Promise<number> {
      const rs = await res.clickhouse().query({ query, format: 'JSONEachRow' });
      return Number(Object.values((await rs.json<Record<string, string>>())[0] ?? {})[0]);
    },
  };

  afterAll(async () => {
    for (const fn of closers.reverse()) await fn().catch(() => undefined);
    if (topics.length > 0) {
      const a = await res.admin();
      const existing = new Set(await a.listTopics());
      const gone = topics.filter((t) => existing.has(t));
      if (gone.length > 0) await a.deleteTopics({ topics: gone }).catch(() => undefined);
    }
    for (const db of databases) await res.clickhouse().command({ query: `DROP DATABASE IF EXISTS ${db}` });
    await admin?.disconnect();
    await clickhouse?.close();
  });
  return res;
}
