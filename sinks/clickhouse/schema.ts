import type { ClickHouseClient } from '@clickhouse/client';
import { VigilError } from '../../core/errors.js';
import { POINT_COLUMNS } from '../../workers/encode/points.js';
import { ROLLUP_COLUMNS } from '../../workers/encode/rollups.js';
import { ANOMALY_COLUMNS } from '../../workers/encode/anomalies.js';
import { FORECAST_COLUMNS } from '../../workers/encode/forecasts.js';
import { STATE_COLUMNS } from '../../workers/encode/state.js';
import { capabilitiesOf, type Capabilities } from './capabilities.js';

/**
 * Vigil's tables, created and migrated by Vigil (DESIGN.md §5). Migrations are numbered, applied
 * in order, recorded in `<db>.schema_migrations`, and idempotent (every statement is IF NOT
 * EXISTS), so concurrent or repeated runs converge. `vigil schema` prints them.
 *
 * Read path: `points` holds each point once: a replay does not write the points its partitions'
 * marks (`points_marks`, migration 8) say are stored. It is also a ReplacingMergeTree whose sorting
 * key includes the source topic/partition/offset and the point's index in its message, so a copy
 * that still gets through (README "Output: ClickHouse", known limits) has the same key: it
 * collapses on merge, and the `points_dedup` view (`FINAL`) never shows it twice.
 */
export interface Migration {
  version: number;
  name: string;
  /** `cluster`: `clickhouse.cluster` (empty without one); statements get `ON CLUSTER` afterwards (onCluster). */
  statements(db: string, caps: Capabilities, cluster?: string): string[];
  /**
   * Its statements run on the server Vigil talks to, never `ON CLUSTER`: ALTERs of replicated
   * tables, which replicate themselves. (18.16 runs a replicated table's `ALTER … MODIFY COLUMN ON
   * CLUSTER` on both replicas of the shard, and its DDL worker stops at "Node exists …/executed",
   * holding every DDL after it: seen in a cluster rehearsal.)
   */
  replicated?: boolean;
}

/** The 18.16 baseline: plain types, no codecs (a Null table stores nothing to code). */
const BASELINE = capabilitiesOf('18.16.1');

const quote = (name: string) => (name.includes('.') ? `\`${name}\`` : name);

/** An encoder's column names, quoted where needed, as a SELECT or INSERT lists them. */
const columnList = (columns: readonly (readonly [string, string])[]) => columns.map(([n]) => quote(n)).join(', ');

/**
 * Codecs on servers that have them (issue 19, measured in chdb, bytes per point): timestamps and
 * source offsets climb by near-constant steps within a series, so DoubleDelta (source_offset
 * 3.60 → 0.02). Values kept to a few decimals: Delta then ZSTD(3) — the demo workload (gauges
 * to 0.1, integer counters) 1.39 (ZSTD(1) 1.76, Gorilla + ZSTD(3) 1.94), the query bench's
 * two-decimal noise 2.87 (ZSTD(1) 2.84, Gorilla 4.17): counters gain most, noisy gauges lose 1 %.
 */
const CODECS: Readonly<Record<string, string>> = {
  ts: 'CODEC(DoubleDelta, ZSTD(1))',
  ts_ms: 'CODEC(DoubleDelta, ZSTD(1))',
  last_ts_ms: 'CODEC(DoubleDelta, ZSTD(1))',
  source_offset: 'CODEC(DoubleDelta, ZSTD(1))',
  value: 'CODEC(Delta, ZSTD(3))',
};

function column(name: string, type: string, caps: Capabilities): string {
  if (caps.lowCardinality && (name === 'metric' || name === 'source_topic' || name === 'tenant')) return `${name} LowCardinality(String)`;
  const codec = caps.codecs ? CODECS[name] : undefined;
  return codec ? `${name} ${type} ${codec}` : `${quote(name)} ${type}`;
}

/**
 * An encoder's columns as a table had them before migration 14 added the tenant: the CREATEs of
 * earlier migrations make what they made then, so that every statement sequence `vigil schema`
 * prints runs as it is (18.16 has no `ADD COLUMN IF NOT EXISTS`).
 */
const beforeTenant = (columns: readonly (readonly [string, string])[]) => columns.filter(([n]) => n !== 'tenant');

/** Table columns from an encoder's column list; the two tags arrays become one Nested column. */
function tableColumns(columns: readonly (readonly [string, string])[], caps: Capabilities): string {
  const cols: string[] = [];
  for (const [name, type] of columns) {
    if (name === 'tags.value') continue;
    // LowCardinality tags on servers that have it: dictionary-coded per part (demo workload in
    // chdb: 0.30 → 0.06 bytes per point), read and inserted as plain strings.
    if (name === 'tags.key') cols.push(caps.lowCardinality ? 'tags Nested(key LowCardinality(String), value LowCardinality(String))' : 'tags Nested(key String, value String)');
    else cols.push(column(name, type, caps));
  }
  return cols.join(',\n  ');
}


/**
 * rollups_merged's SELECT: versions replaced by FINAL, then partitions' partial rows and correction
 * rows merged per series and bucket. `filter` (a `WHERE …` on the table's columns) goes inside the
 * FINAL, which is how 18.16 reads only the matching key ranges (README "Reading at scale").
 */
export function mergedRollupsSql(db: string, filter = '', withTenant = true): string {
  const tenant = withTenant ? ' tenant,' : '';
  return (
    `SELECT series_id, metric, \`tags.key\`, \`tags.value\`,${tenant} type, width_s, bucket_start, ` +
    `sum(c) AS count, sum(s) AS sum, min(mn) AS min, max(mx) AS max, argMax(l, lt) AS last, max(lt) AS last_ts_ms, sum(sq) AS sumsq, ` +
    `sum / count AS mean, sqrt(greatest(sumsq / count - mean * mean, 0)) AS stddev ` +
    `FROM (SELECT series_id, metric, \`tags.key\`, \`tags.value\`,${tenant} type, width_s, bucket_start, count AS c, sum AS s, min AS mn, max AS mx, last AS l, last_ts_ms AS lt, sumsq AS sq FROM ${db}.rollups FINAL${filter}) ` +
    `GROUP BY series_id, metric, \`tags.key\`, \`tags.value\`,${tenant} type, width_s, bucket_start`
  );
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'points',
    statements: (db, caps) => [
      `CREATE TABLE IF NOT EXISTS ${db}.points (\n  ${tableColumns(beforeTenant(POINT_COLUMNS), caps)}\n) ENGINE = ReplacingMergeTree()\nPARTITION BY toYYYYMMDD(ts)\nORDER BY (metric, series_id, ts_ms, source_topic, source_partition, source_offset, point_index)`,
      `CREATE VIEW IF NOT EXISTS ${db}.points_dedup AS SELECT * FROM ${db}.points FINAL`,
    ],
  },
  {
    version: 2,
    name: 'rollups',
    statements: (db, caps) => [
      `CREATE TABLE IF NOT EXISTS ${db}.rollups (\n  ${tableColumns(beforeTenant(ROLLUP_COLUMNS), caps)}\n) ENGINE = ReplacingMergeTree(version)\nPARTITION BY toYYYYMMDD(bucket_start)\nORDER BY (metric, width_s, series_id, bucket_start, source_topic, source_partition, kind, correction_offset, correction_point)`,
      // The key leads with metric and width, so a dashboard's per-metric time range at one width reads
      // that width's rows only (issue 19: 2.2× faster at 10M points than series_id first); one
      // series still reads by key range. Databases made before keep their key (README "Reading at scale").
      // Versions of a bucket row replace each other (FINAL); partitions' partial rows and
      // correction rows then merge per series and bucket.
      // Source columns are renamed in the subquery so the output aliases cannot shadow them.
      `CREATE VIEW IF NOT EXISTS ${db}.rollups_merged AS ${mergedRollupsSql(db, '', false)}`,
    ],
  },
  {
    version: 3,
    name: 'anomalies',
    statements: (db, caps) => [
      `CREATE TABLE IF NOT EXISTS ${db}.anomalies (\n  ${tableColumns(beforeTenant(ANOMALY_COLUMNS), caps)}\n) ENGINE = ReplacingMergeTree(version)\nPARTITION BY toYYYYMMDD(bucket_start)\nORDER BY (metric, series_id, width_s, bucket_start)`,
      // One row per series and bucket: a replay's re-scored rows (lower version) lose to the originals.
      `CREATE VIEW IF NOT EXISTS ${db}.anomalies_dedup AS SELECT * FROM ${db}.anomalies FINAL`,
    ],
  },
  {
    version: 4,
    name: 'alerts',
    statements: (db) => [
      // Every alert state change, as on the alerts topic. An event's id is derived from event time
      // (fingerprint, status, episode start), so a replay re-inserts the same key and FINAL keeps one.
      `CREATE TABLE IF NOT EXISTS ${db}.alerts (\n  id String,\n  fingerprint String,\n  status Enum8('firing' = 1, 'resolved' = 2),\n  rule_id String,\n  rule_name String,\n  rule_kind Enum8('threshold' = 1, 'rate' = 2, 'anomaly' = 3, 'absent' = 4, 'forecast' = 5),\n  severity Enum8('info' = 1, 'warning' = 2, 'critical' = 3),\n  metric String,\n  tags Nested(key String, value String),\n  value Nullable(Float64),\n  threshold Nullable(Float64),\n  score Nullable(Float64),\n  starts_at DateTime,\n  ends_at Nullable(DateTime),\n  observed_at DateTime,\n  observed_ms Int64,\n  explanation String,\n  labels String,\n  annotations String,\n  event String\n) ENGINE = ReplacingMergeTree(observed_ms)\nPARTITION BY toYYYYMM(starts_at)\nORDER BY (fingerprint, id)`,
      `CREATE VIEW IF NOT EXISTS ${db}.alerts_dedup AS SELECT * FROM ${db}.alerts FINAL`,
    ],
  },
  {
    version: 5,
    name: 'detector_state',
    // Internal: the detectors' per-series state, restored at every consumer group generation.
    // One row per source partition, series and width survives merges (highest version).
    statements: (db, caps) => [
      `CREATE TABLE IF NOT EXISTS ${db}.detector_state (\n  ${tableColumns(STATE_COLUMNS, caps)}\n) ENGINE = ReplacingMergeTree(version)\nORDER BY (source_topic, source_partition, series_id, width_s)`,
    ],
  },
  {
    version: 6,
    name: 'point codecs',
    // Databases made before the codecs of `CODECS` get them (new parts are written with them,
    // merges rewrite old ones); a new database already has them, and an 18.16 server none.
    statements: (db, caps) =>
      caps.codecs
        ? ['ts', 'source_offset', 'value'].map((name) => {
            const type = POINT_COLUMNS.find(([n]) => n === name)?.[1] as string;
            return `ALTER TABLE ${db}.points MODIFY COLUMN ${column(name, type, caps)}`;
          })
        : [],
  },
  {
    version: 7,
    name: 'value codec',
    // Databases that took migration 6's ZSTD(1) for values get Delta, ZSTD(3) (new parts, and old
    // ones as they merge). LowCardinality tags come with new databases only: changing a column's
    // type rewrites every part.
    statements: (db, caps) => (caps.codecs ? [`ALTER TABLE ${db}.points MODIFY COLUMN ${column('value', 'Float64', caps)}`] : []),
  },
  {
    version: 8,
    name: 'points marks',
    // Insert-time deduplication of `points` (issue 19): per source partition, the furthest point
    // (offset, then index in its message) of each insert, written by the same INSERT through a
    // materialized view, after the insert's rows (ClickHouse writes the table's parts, then the
    // views'): a mark is never ahead of the rows. A replay reads the marks and does not write
    // those points again (pipeline/ingest.ts readMarks). Rows per insert collapse to the furthest on merges.
    statements: (db) => [
      `CREATE TABLE IF NOT EXISTS ${db}.points_marks (\n  source_topic String,\n  source_partition UInt32,\n  mark_offset UInt64,\n  mark_index UInt32\n) ENGINE = ReplacingMergeTree(mark_offset)\nORDER BY (source_topic, source_partition)`,
      // 18.16 cannot push an insert through a view whose table sits in a subquery, and an alias may
      // not shadow a column it is computed from: hence one level and new column names.
      marksView(db, 'points'),
    ],
  },
  {
    version: 9,
    name: 'metric rollups',
    // Per metric and minute, over all its series (issue 19): what a dashboard's per-metric panel
    // reads, one row per minute after merges instead of one per series and minute. Written by a
    // materialized view from the points each insert stores, so it is as exact as `points` (each
    // point once) and sees late points too; gauges only (a counter's rate needs its series'
    // previous point: read `rollups`). Monthly partitions: a few rows per metric and minute.
    statements: (db, caps) => [
      `CREATE TABLE IF NOT EXISTS ${db}.metric_rollups (\n  ${column('metric', 'String', caps)},\n  bucket_start DateTime,\n  count AggregateFunction(count),\n  sum AggregateFunction(sum, Float64),\n  min AggregateFunction(min, Float64),\n  max AggregateFunction(max, Float64),\n  sumsq AggregateFunction(sum, Float64)\n) ENGINE = AggregatingMergeTree()\nPARTITION BY toYYYYMM(bucket_start)\nORDER BY (metric, bucket_start)`,
      metricRollupsView(db, 'points', false),
    ],
  },
  {
    version: 10,
    name: 'points through a null table on a cluster',
    // metric_rollups exact across a replica's kill (issue 19). When a replica dies between an
    // insert's `points` part and its views' parts, Vigil's retry is a duplicate of the `points`
    // block, and ClickHouse pushes no duplicate block to the views: metric_rollups and the marks
    // stayed short. So on a cluster Vigil inserts into `points_in` (ENGINE = Null), whose three
    // views write metric_rollups, points and the marks (18.16 runs no view of a view's target, so
    // the marks' view moves there too). The views of a table that cannot deduplicate deduplicate
    // their own blocks (18.16; newer servers when the insert sets
    // deduplicate_blocks_in_dependent_materialized_views, which Vigil does where it exists), so a
    // retry fills exactly the parts the first attempt missed, and on a cluster Vigil always sends
    // the same body again (pipeline/ingest.ts). `insert_hash` (a sum of the points' source hashes)
    // keeps two different inserts that aggregate alike from passing for one. 18.16 runs a table's
    // views in name order: metric_rollups_mv, points_in_mv, points_marks_mv, so a mark is never
    // ahead of its points there either. Without a cluster nothing changes.
    statements: (db, _caps, cluster = '') =>
      cluster
        ? [
            `CREATE TABLE IF NOT EXISTS ${db}.points_in (\n  ${tableColumns(beforeTenant(POINT_COLUMNS), BASELINE)}\n) ENGINE = Null`,
            `ALTER TABLE ${db}.metric_rollups ADD COLUMN insert_hash AggregateFunction(sum, UInt64)`,
            `DROP TABLE IF EXISTS ${db}.metric_rollups_mv`,
            `DROP TABLE IF EXISTS ${db}.points_marks_mv`,
            metricRollupsView(db, 'points_in', false),
            `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.points_in_mv TO ${db}.points AS SELECT ${columnList(beforeTenant(POINT_COLUMNS))} FROM ${db}.points_in`,
            marksView(db, 'points_in'),
          ]
        : [],
  },
  {
    version: 11,
    name: 'forecasts',
    // Forecasts (issue 17): per series and forecast, one row per forecast bucket. A replay issues
    // the same forecast from the same restored state, the same rows, and FINAL keeps one; the
    // latest forecast of each series is what a capacity question reads (`vigil capacity`).
    statements: (db, caps) => [
      `CREATE TABLE IF NOT EXISTS ${db}.forecasts (\n  ${tableColumns(beforeTenant(FORECAST_COLUMNS), caps)}\n) ENGINE = ReplacingMergeTree()\nPARTITION BY toYYYYMMDD(issued_at)\nORDER BY (metric, series_id, width_s, issued_at, bucket_start)`,
      forecastsLatestView(db),
    ],
  },
  {
    version: 12,
    name: 'forecast rules',
    // Alert events of `forecast` rules (issue 17): the kind joins the enum of databases made
    // before it (migration 4 makes it so since), on the server Vigil talks to.
    replicated: true,
    statements: (db) => [`ALTER TABLE ${db}.alerts MODIFY COLUMN rule_kind Enum8('threshold' = 1, 'rate' = 2, 'anomaly' = 3, 'absent' = 4, 'forecast' = 5)`],
  },
  {
    version: 13,
    name: 'incidents',
    // Co-occurring anomaly onsets grouped (issue 17; sinks/clickhouse/incidents.ts): one row per
    // incident and version, the latest kept.
    statements: (db) => [
      `CREATE TABLE IF NOT EXISTS ${db}.incidents (\n  incident_id String,\n  width_s UInt32,\n  started_at DateTime,\n  last_onset_at DateTime,\n  series_count UInt32,\n  members Nested(series_id UInt64, metric String, tags String, onset DateTime, score Float64),\n  related String,\n  version UInt64\n) ENGINE = ReplacingMergeTree(version)\nPARTITION BY toYYYYMM(started_at)\nORDER BY (incident_id)`,
      `CREATE VIEW IF NOT EXISTS ${db}.incidents_dedup AS SELECT * FROM ${db}.incidents FINAL`,
    ],
  },
  {
    version: 14,
    name: 'tenant column',
    // Tenants (issue 18): every table gets the series' tenant ('' the default tenant, which every
    // row written before has); a new database too (the CREATEs before make the tables as they
    // were). metric_rollups aggregates per tenant from now on: the tenant joins the end of its key
    // (18.16 allows a new column there, in the same ALTER).
    replicated: true,
    statements: (db, caps) => [
      ...['points', 'rollups', 'anomalies', 'forecasts', 'alerts', 'incidents'].map((t) => `ALTER TABLE ${db}.${t} ADD COLUMN ${column('tenant', 'String', caps)} DEFAULT ''`),
      `ALTER TABLE ${db}.metric_rollups ADD COLUMN ${column('tenant', 'String', caps)}, MODIFY ORDER BY (metric, bucket_start, tenant)`,
    ],
  },
  {
    version: 15,
    name: 'tenant views',
    // The views made before migration 14 list the columns they had then (a `SELECT *` view's
    // columns are fixed when it is made, 18.16 and current): made again with the tenant. Between
    // the DROP and the CREATE a reader of the view gets an error, and on a live upgrade the
    // points another (older) instance inserts then are not in metric_rollups (README "Tenants").
    statements: (db, _caps, cluster = '') => [
      `DROP TABLE IF EXISTS ${db}.points_dedup`,
      `CREATE VIEW IF NOT EXISTS ${db}.points_dedup AS SELECT * FROM ${db}.points FINAL`,
      `DROP TABLE IF EXISTS ${db}.rollups_merged`,
      `CREATE VIEW IF NOT EXISTS ${db}.rollups_merged AS ${mergedRollupsSql(db)}`,
      `DROP TABLE IF EXISTS ${db}.anomalies_dedup`,
      `CREATE VIEW IF NOT EXISTS ${db}.anomalies_dedup AS SELECT * FROM ${db}.anomalies FINAL`,
      `DROP TABLE IF EXISTS ${db}.alerts_dedup`,
      `CREATE VIEW IF NOT EXISTS ${db}.alerts_dedup AS SELECT * FROM ${db}.alerts FINAL`,
      `DROP TABLE IF EXISTS ${db}.forecasts_latest`,
      forecastsLatestView(db),
      `DROP TABLE IF EXISTS ${db}.incidents_dedup`,
      `CREATE VIEW IF NOT EXISTS ${db}.incidents_dedup AS SELECT * FROM ${db}.incidents FINAL`,
      `DROP TABLE IF EXISTS ${db}.metric_rollups_mv`,
      // On a cluster, points_in (Null: it holds nothing) is made again with the tenant, and its
      // views with it: 18.16 runs no ALTER ON CLUSTER of a table that is not replicated on a
      // cluster of replicas. An insert in between fails and is retried.
      ...(cluster
        ? [
            `DROP TABLE IF EXISTS ${db}.points_in_mv`,
            `DROP TABLE IF EXISTS ${db}.points_marks_mv`,
            `DROP TABLE IF EXISTS ${db}.points_in`,
            `CREATE TABLE IF NOT EXISTS ${db}.points_in (\n  ${tableColumns(POINT_COLUMNS, BASELINE)}\n) ENGINE = Null`,
            `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.points_in_mv TO ${db}.points AS SELECT ${columnList(POINT_COLUMNS)} FROM ${db}.points_in`,
            marksView(db, 'points_in'),
          ]
        : []),
      metricRollupsView(db, cluster ? 'points_in' : 'points', true),
    ],
  },
];

/** The latest forecast of each series (migrations 11 and 15). */
function forecastsLatestView(db: string): string {
  return `CREATE VIEW IF NOT EXISTS ${db}.forecasts_latest AS SELECT * FROM ${db}.forecasts FINAL WHERE (series_id, issued_at) IN (SELECT series_id, max(issued_at) FROM ${db}.forecasts GROUP BY series_id)`;
}

/** The marks' view over the points inserted into `source` (migrations 8 and 10). */
function marksView(db: string, source: 'points' | 'points_in'): string {
  return `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.points_marks_mv TO ${db}.points_marks AS SELECT source_topic, source_partition, tupleElement(max((source_offset, point_index)), 1) AS mark_offset, tupleElement(max((source_offset, point_index)), 2) AS mark_index FROM ${db}.${source} GROUP BY source_topic, source_partition`;
}

/**
 * metric_rollups' view over the points inserted into `source`: `points` (one server), or
 * `points_in` on a cluster (migration 10), where it also sums the points' source hashes.
 */
function metricRollupsView(db: string, source: 'points' | 'points_in', withTenant: boolean): string {
  const tenant = withTenant ? 'tenant, ' : '';
  const hash = source === 'points_in' ? ', sumState(cityHash64(source_topic, source_partition, source_offset, point_index)) AS insert_hash' : '';
  return (
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.metric_rollups_mv TO ${db}.metric_rollups AS SELECT ${tenant}metric, toStartOfMinute(ts) AS bucket_start, ` +
    `countState() AS count, sumState(value) AS sum, minState(value) AS min, maxState(value) AS max, sumState(value * value) AS sumsq${hash} ` +
    `FROM ${db}.${source} WHERE type = 'gauge' GROUP BY ${tenant}metric, bucket_start`
  );
}

/** The tables workers encode rows for, with the column order of their RowBinary bodies. */
export const INSERT_COLUMNS = { points: POINT_COLUMNS, rollups: ROLLUP_COLUMNS, anomalies: ANOMALY_COLUMNS, forecasts: FORECAST_COLUMNS, detector_state: STATE_COLUMNS } as const;
export type InsertTable = keyof typeof INSERT_COLUMNS;

/** The table an insert of `table`'s rows goes to: on a cluster, points go through `points_in` (migration 10). */
export const insertTarget = (table: InsertTable, cluster: string): string => (table === 'points' && cluster ? 'points_in' : table);

export const insertStatement = (db: string, table: InsertTable, cluster = '') =>
  `INSERT INTO ${db}.${insertTarget(table, cluster)} (${columnList(INSERT_COLUMNS[table])}) FORMAT RowBinary`;

/**
 * Every statement a fresh database gets, in order (what `vigil schema` prints); with `cluster`,
 * as that cluster gets them (see `onCluster`).
 */
export function schemaStatements(db: string, caps: Capabilities, cluster = ''): string[] {
  return [
    ...[`CREATE DATABASE IF NOT EXISTS ${db}`, `CREATE TABLE IF NOT EXISTS ${db}.schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = ReplacingMergeTree() ORDER BY version`].map((q) => onCluster(q, cluster)),
    ...MIGRATIONS.flatMap((m) => m.statements(db, caps, cluster).map((q) => (m.replicated ? q : onCluster(q, cluster)))),
  ];
}

/**
 * A statement as a cluster runs it (`clickhouse.cluster`; unchanged when empty): `ON CLUSTER`
 * after the object's name, and each MergeTree engine replicated, its ZooKeeper path
 * `/clickhouse/tables/{shard}/<database>/<table>` and its replica `{replica}` (the servers'
 * macros). A replicated table also drops an insert block identical to one of its last 100
 * (`replicated_deduplication_window`): a retried insert whose first attempt landed is stored once.
 */
export function onCluster(statement: string, cluster: string): string {
  if (!cluster) return statement;
  const on = ` ON CLUSTER ${cluster}`;
  let m = /^CREATE DATABASE IF NOT EXISTS \S+/.exec(statement);
  if (m) return m[0] + on + statement.slice(m[0].length);
  m = /^(CREATE VIEW IF NOT EXISTS|CREATE MATERIALIZED VIEW IF NOT EXISTS|ALTER TABLE|DROP TABLE IF EXISTS) \S+/.exec(statement);
  if (m) return m[0] + on + statement.slice(m[0].length);
  m = /^CREATE TABLE IF NOT EXISTS \S+/.exec(statement);
  // A Null table stores nothing: every replica has its own, nothing to replicate.
  if (m && / ENGINE = Null$/.test(statement)) return m[0] + on + statement.slice(m[0].length);
  m = /^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)/.exec(statement);
  if (m) {
    const [head, db, table] = m as unknown as [string, string, string];
    const engine = /ENGINE = (\w*)MergeTree\(([^)]*)\)/;
    if (!engine.test(statement)) throw new VigilError('VIGIL_ERR_CLICKHOUSE_SCHEMA', `no MergeTree engine to replicate in: ${statement.slice(0, 80)}`);
    return (
      head +
      on +
      statement
        .slice(head.length)
        .replace(engine, (_, kind: string, args: string) => `ENGINE = Replicated${kind}MergeTree('/clickhouse/tables/{shard}/${db}/${table}', '{replica}'${args ? `, ${args}` : ''})`)
    );
  }
  throw new VigilError('VIGIL_ERR_CLICKHOUSE_SCHEMA', `no ON CLUSTER form for: ${statement.slice(0, 80)}`);
}

/**
 * `query` is an ALTER the table already has: it adds a column the table has, or gives a column the
 * type it has (a database made after the migration). 18.16 has no `ADD COLUMN IF NOT EXISTS`: the
 * column is looked up so that a migration cut after its ALTER runs again cleanly.
 */
async function alreadyAltered(client: ClickHouseClient, query: string): Promise<boolean> {
  const m = /^ALTER TABLE (\w+)\.(\w+) (ADD|MODIFY) COLUMN (\w+) (.+)$/s.exec(query);
  if (!m) return false;
  const rs = await client.query({
    query: `SELECT type FROM system.columns WHERE database = '${m[1]}' AND table = '${m[2]}' AND name = '${m[4]}'`,
    format: 'JSONEachRow',
  });
  const type = (await rs.json<{ type: string }>())[0]?.type;
  if (type === undefined) return false;
  return m[3] === 'ADD' || type.replace(/\s+/g, '') === (m[5] as string).replace(/\s+/g, '');
}

/** Applies the migrations not yet recorded; returns the versions applied by this call. */
export async function migrate(client: ClickHouseClient, db: string, caps: Capabilities, cluster = ''): Promise<number[]> {
  const [createDb, createLog] = schemaStatements(db, caps, cluster);
  const applied: number[] = [];
  try {
    // On a cluster, DDL waits for every replica: a restart while one is down must not need any.
    const exists = await client.query({ query: `SELECT count() AS n FROM system.tables WHERE database = '${db}' AND name = 'schema_migrations'`, format: 'JSONEachRow' });
    if (Number((await exists.json<{ n: string }>())[0]?.n ?? 0) === 0) {
      await client.command({ query: createDb as string });
      await client.command({ query: createLog as string });
    }
    const rs = await client.query({ query: `SELECT DISTINCT version FROM ${db}.schema_migrations`, format: 'JSONEachRow' });
    const done = new Set((await rs.json<{ version: number }>()).map((r) => Number(r.version)));
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      for (const query of m.statements(db, caps, cluster)) {
        if (await alreadyAltered(client, query)) continue;
        await client.command({ query: m.replicated ? query : onCluster(query, cluster) });
      }
      await client.insert({
        table: `${db}.schema_migrations`,
        values: [{ version: m.version, name: m.name, applied_at: Math.floor(Date.now() / 1000) }],
        format: 'JSONEachRow',
      });
      applied.push(m.version);
    }
  } catch (err) {
    throw new VigilError('VIGIL_ERR_CLICKHOUSE_SCHEMA', `migrating database ${db} failed: ${(err as Error).message}`, { cause: err });
  }
  return applied;
}
