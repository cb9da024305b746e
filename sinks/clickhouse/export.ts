import type { ClickHouseClient } from '@clickhouse/client';
import { Dictionary, Field, Float64, Int32, Int64, List, makeVector, Table, tableToIPC, TimestampSecond, Uint32, Uint64, Uint8, Utf8, vectorFromArray, type DataType, type Vector } from 'apache-arrow';
import { Compression, Table as ParquetTable, writeParquet, WriterPropertiesBuilder } from 'parquet-wasm';
import { sqlString, sqlUInt } from '../../core/sql.js';
import { ANOMALY_COLUMNS } from '../../workers/encode/anomalies.js';
import { BUCKET_KEY_COLUMNS } from '../../workers/encode/rollups.js';
import { mergedRollupsSql } from './schema.js';

/**
 * `vigil export` (issue 15): the rows of `rollups_merged` or `anomalies_dedup` for data scientists,
 * as an Arrow IPC file (Feather v2: `pyarrow.feather.read_table`, `pandas.read_feather`, Polars)
 * or Parquet (zstd). The rows are read the exact and fast way of README "Reading at scale" (the
 * filters inside `FINAL`), so the file holds what the view shows, on 18.16 as on newer servers;
 * Vigil builds the Arrow columns itself (apache-arrow), as 18.16 writes neither format.
 */
export type ExportTable = 'rollups' | 'anomalies';
export type ExportFormat = 'arrow' | 'parquet';

export interface ExportQuery {
  database: string;
  table: ExportTable;
  /** ClickHouse LIKE pattern on the metric name (default: every metric). */
  metricLike?: string;
  /** One width only (default: every width). */
  widthSeconds?: number;
  /** Only buckets of the last this many hours (0: all). */
  hours?: number;
}

type Kind = 'u64' | 'i64' | 'u32' | 'u8' | 'f64' | 'string' | 'label' | 'strings' | 'time';

/** Columns exported per table, with the Arrow kind of each (labels: strings from few values, dictionary-encoded). */
const ROLLUP_EXPORT: readonly (readonly [string, Kind])[] = [
  ...BUCKET_KEY_COLUMNS.map(([name, type]) => [name, kindOf(name, type)] as const),
  ['count', 'u64'],
  ['sum', 'f64'],
  ['min', 'f64'],
  ['max', 'f64'],
  ['last', 'f64'],
  ['last_ts_ms', 'i64'],
  ['sumsq', 'f64'],
  ['mean', 'f64'],
  ['stddev', 'f64'],
];

const ANOMALY_EXPORT: readonly (readonly [string, Kind])[] = ANOMALY_COLUMNS.map(([name, type]) => [name, kindOf(name, type)] as const);

function kindOf(name: string, type: string): Kind {
  if (name === 'metric' || name === 'source_topic' || type.startsWith('Enum8')) return 'label';
  const kinds: Record<string, Kind> = { UInt64: 'u64', Int64: 'i64', UInt32: 'u32', UInt8: 'u8', Float64: 'f64', String: 'string', 'Array(String)': 'strings', DateTime: 'time' };
  const kind = kinds[type];
  if (!kind) throw new Error(`export: no Arrow type for column ${name} ${type}`);
  return kind;
}

export function exportColumns(table: ExportTable): readonly (readonly [string, Kind])[] {
  return table === 'rollups' ? ROLLUP_EXPORT : ANOMALY_EXPORT;
}

/** The SELECT behind an export: the view's rows, filtered inside `FINAL`, in (series, width, bucket) order, times as Unix seconds. */
export function exportSql(q: ExportQuery): string {
  const where: string[] = [];
  if (q.metricLike) where.push(`metric LIKE ${sqlString(q.metricLike)}`);
  if (q.widthSeconds) where.push(`width_s = ${sqlUInt(q.widthSeconds)}`);
  if (q.hours) where.push(`bucket_start >= now() - toIntervalHour(${sqlUInt(q.hours)})`);
  const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  const from = q.table === 'rollups' ? `(${mergedRollupsSql(q.database, filter)})` : `${q.database}.anomalies FINAL${filter}`;
  return `SELECT ${exportSelect(q.table)} FROM ${from} ORDER BY series_id, width_s, bucket_start`;
}

/** The exported columns as a SELECT list (times as Unix seconds); also how a test reads the views to compare. */
export function exportSelect(table: ExportTable): string {
  return exportColumns(table)
    .map(([name, kind]) => (kind === 'time' ? `toUInt32(\`${name}\`) AS \`${name}\`` : `\`${name}\``))
    .join(', ');
}

type Row = Record<string, unknown>;

/** The Arrow type of a kind: the one source of the vectors' types and of ARROW_TYPES. */
function arrowType(kind: Kind): DataType {
  switch (kind) {
    case 'u64':
      return new Uint64();
    case 'i64':
      return new Int64();
    case 'u32':
      return new Uint32();
    case 'u8':
      return new Uint8();
    case 'f64':
      return new Float64();
    case 'string':
      return new Utf8();
    case 'label':
      // A new instance per column: a dictionary type is its dictionary's id.
      return new Dictionary(new Utf8(), new Int32());
    case 'strings':
      return new List(new Field('item', new Utf8(), true));
    case 'time':
      return new TimestampSecond('UTC');
  }
}

/** The Arrow types of the kinds, for documentation and tests. */
export const ARROW_TYPES = Object.fromEntries((['u64', 'i64', 'u32', 'u8', 'f64', 'string', 'label', 'strings', 'time'] as const).map((k) => [k, String(arrowType(k))])) as Record<Kind, string>;

/** A column of JSONEachRow values: 64-bit integers arrive as strings, NaN as null, times as Unix seconds. */
function vector(kind: Kind, values: unknown[]): Vector {
  // Typed arrays where they exist, taken as they are (not through a builder); their Arrow type is
  // arrowType's (the integration test checks the schema against ARROW_TYPES).
  if (kind === 'u64') return makeVector(BigUint64Array.from(values, (v) => BigInt(v as string)));
  if (kind === 'i64') return makeVector(BigInt64Array.from(values, (v) => BigInt(v as string)));
  // ClickHouse writes NaN (no expectation yet) as null in JSON.
  if (kind === 'f64') return makeVector(Float64Array.from(values, (v) => (v === null ? Number.NaN : Number(v))));
  if (kind === 'u32') return makeVector(Uint32Array.from(values as number[]));
  const type = arrowType(kind);
  // Arrow's timestamp builders take milliseconds.
  if (kind === 'time') return vectorFromArray((values as number[]).map((s) => s * 1000), type);
  return vectorFromArray(values, type);
}

/** Reads the export's rows into one Arrow table (columns in the order of exportColumns). */
export async function exportTable(client: ClickHouseClient, q: ExportQuery): Promise<Table> {
  const columns = exportColumns(q.table);
  const values: unknown[][] = columns.map(() => []);
  const rs = await client.query({ query: exportSql(q), format: 'JSONEachRow' });
  for await (const rows of rs.stream()) {
    for (const row of rows) {
      const r = row.json<Row>();
      for (let i = 0; i < columns.length; i++) (values[i] as unknown[]).push(r[(columns[i] as readonly [string, Kind])[0]]);
    }
  }
  return new Table(Object.fromEntries(columns.map(([name, kind], i) => [name, vector(kind, values[i] as unknown[])])));
}

/** The file's bytes: Arrow IPC file format, or Parquet compressed with zstd. */
export function exportBytes(table: Table, format: ExportFormat): Uint8Array {
  if (format === 'arrow') return tableToIPC(table, 'file');
  const props = new WriterPropertiesBuilder().setCompression(Compression.ZSTD).build();
  return writeParquet(ParquetTable.fromIPCStream(tableToIPC(table, 'stream')), props);
}
