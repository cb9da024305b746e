import { Readable } from 'node:stream';
import { clickhouseConnection, redactUrls } from '../../core/redact.js';
import { ClickHouseLogLevel, createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import type { VigilConfig } from '../../core/config/index.js';
import { VigilError } from '../../core/errors.js';
import { sqlString } from '../../core/sql.js';
import { capabilitiesOf, type Capabilities } from './capabilities.js';
import { failoverClient, type Failover } from './failover.js';
import { isRowRejection, isServerException } from './errors.js';
import { insertStatement, migrate, type InsertTable } from './schema.js';


/** A point's place in its source partition: the message's offset, the point's index in it. */
export type PointMark = readonly [offset: number, index: number];

/** `a` lies after `b` in their source partition. */
export const isAfter = (a: PointMark, b: PointMark): boolean => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);

/**
 * The ClickHouse sink: detects the server, migrates the schema, sends worker-encoded insert bodies.
 * With `clickhouse.failoverUrls`, `client` goes to whichever replica answers (failover.ts).
 */
export class ClickHouseSink {
  readonly client: ClickHouseClient;
  readonly db: string;
  /** The URLs without user info (what errors show): `clickhouse.url`, then the failover replicas. */
  private readonly urls: string[];
  private caps: Capabilities | undefined;
  private pointsSettings: ClickHouseSettings = {};

  constructor(
    private readonly config: VigilConfig['clickhouse'],
    onFailover: (f: Failover) => void = () => undefined,
  ) {
    this.db = config.database;
    const connections = [config.url, ...config.failoverUrls].map((url) => clickhouseConnection(config, url));
    this.urls = connections.map((c) => c.url);
    const clients = connections.map((connection) =>
      createClient({
        ...connection,
        request_timeout: config.requestTimeoutMs,
        compression: { request: false, response: false },
        // Every error the client raises reaches the caller, which logs it through pino once; the
        // client's own console lines would repeat each one (a split insert refuses many parts).
        log: { level: ClickHouseLogLevel.OFF },
      }),
    );
    this.client = clients.length > 1 ? failoverClient(clients, this.urls, onFailover) : (clients[0] as ClickHouseClient);
  }

  get capabilities(): Capabilities {
    if (!this.caps) throw new Error('ClickHouseSink.start() has not run');
    return this.caps;
  }

  /** Detects the server version and applies pending migrations. Retryable when the server is down. */
  async start(): Promise<void> {
    let version: string;
    try {
      const rs = await this.client.query({
        query: "SELECT version() AS v, (SELECT count() FROM system.settings WHERE name = 'deduplicate_blocks_in_dependent_materialized_views') AS d",
        format: 'JSONEachRow',
      });
      const row = (await rs.json<{ v: string; d: string }>())[0] as { v: string; d: string };
      version = row.v;
      // On a cluster, points go through points_in's views (schema.ts migration 10), which a newer
      // server deduplicates only when the insert asks; 18.16 does without being asked, and
      // refuses a setting it does not know.
      if (this.config.cluster && Number(row.d) > 0) this.pointsSettings = { deduplicate_blocks_in_dependent_materialized_views: 1 };
    } catch (err) {
      throw new VigilError('VIGIL_ERR_CLICKHOUSE_UNAVAILABLE', `${this.urls.join(', ')}: ${redactUrls((err as Error).message)}`, { cause: err, retryable: true });
    }
    this.caps = capabilitiesOf(version);
    await migrate(this.client, this.db, this.caps, this.config.cluster);
  }

  async healthcheck(): Promise<boolean> {
    return (await this.client.ping()).success;
  }

  /**
   * Inserts one RowBinary body, or the chunks one is made of, into `table` (gzip-compressed when
   * `gzip`: then each chunk is a whole gzip member, which ClickHouse reads one after another). Rejects with a
   * non-retryable VIGIL_ERR_CLICKHOUSE_REJECTED when the server blames the rows (errors.ts
   * isRowRejection), else with a retryable VIGIL_ERR_CLICKHOUSE_INSERT (the server refused for
   * its own reasons) or VIGIL_ERR_CLICKHOUSE_UNAVAILABLE (no answer).
   */
  async insert(table: InsertTable, body: Uint8Array | readonly Uint8Array[], gzip: boolean): Promise<void> {
    const chunks = body instanceof Uint8Array ? [body] : body;
    try {
      const result = await this.client.exec({
        query: insertStatement(this.db, table, this.config.cluster),
        ...(table === 'points' ? { clickhouse_settings: this.pointsSettings } : {}),
        // The chunks streamed as they are: a batch of bodies is never copied into one.
        values: Readable.from(
          chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)),
          { objectMode: false },
        ),
        ...(gzip ? { http_headers: { 'Content-Encoding': 'gzip' } } : {}),
      });
      result.stream.resume();
      await new Promise<void>((resolve, reject) => result.stream.once('end', resolve).once('error', reject));
    } catch (err) {
      const message = redactUrls((err as Error).message);
      if (isRowRejection(err)) throw new VigilError('VIGIL_ERR_CLICKHOUSE_REJECTED', message, { cause: err, retryable: false });
      throw new VigilError(isServerException(err) ? 'VIGIL_ERR_CLICKHOUSE_INSERT' : 'VIGIL_ERR_CLICKHOUSE_UNAVAILABLE', message, { cause: err, retryable: true });
    }
  }

  /**
   * The latest detector state per series of the given source partitions (highest version of
   * any of them), for the ensemble settings `settings` at width `widthS`.
   */
  async readDetectorState(topic: string, partitions: readonly number[], widthS: number, settings: string): Promise<{ id: bigint; state: Uint8Array }[]> {
    if (partitions.length === 0) return [];
    const rs = await this.client.query({
      query:
        `SELECT toString(series_id) AS id, hex(argMax(state, version)) AS state FROM ${this.db}.detector_state ` +
        `WHERE source_topic = ${sqlString(topic)} AND source_partition IN (${partitions.map((p) => Math.trunc(p)).join(', ')}) ` +
        `AND width_s = ${Math.trunc(widthS)} AND settings = ${sqlString(settings)} GROUP BY series_id`,
      format: 'JSONEachRow',
    });
    return (await rs.json<{ id: string; state: string }>()).map((r) => ({ id: BigInt(r.id), state: Buffer.from(r.state, 'hex') }));
  }

  /**
   * The furthest point `points` holds of each source partition of `topics` (points_marks, schema
   * migration 8), keyed `topic/partition`: its offset and index in its message. Partitions with
   * no mark are absent.
   */
  async readPointsMarks(topics: readonly string[]): Promise<Map<string, PointMark>> {
    const marks = new Map<string, PointMark>();
    if (topics.length === 0) return marks;
    const rs = await this.client.query({
      query:
        `SELECT source_topic AS t, source_partition AS p, toString(mark_offset) AS o, mark_index AS i FROM ${this.db}.points_marks ` +
        `WHERE source_topic IN (${topics.map(sqlString).join(', ')})`,
      format: 'JSONEachRow',
    });
    for (const r of await rs.json<{ t: string; p: number; o: string; i: number }>()) {
      const key = `${r.t}/${r.p}`;
      const mark: PointMark = [Number(r.o), Number(r.i)];
      const seen = marks.get(key);
      if (!seen || isAfter(mark, seen)) marks.set(key, mark);
    }
    return marks;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
