import { ClickHouseError } from '@clickhouse/client';

/**
 * Whether the server answered with an exception (it rejected the request) rather than not
 * answering. @clickhouse/client parses current servers' errors into a ClickHouseError with a
 * numeric code; 18.16's text (`Code: 33, e.displayText() = DB::Exception: ...`) it leaves as a
 * plain Error, so the text is recognised too.
 */
export function isServerException(err: unknown): boolean {
  if (err instanceof ClickHouseError) return true;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && /^\d+$/.test(e.code)) return true;
  return typeof e.message === 'string' && /(^|\s)Code: \d+[.,]/.test(e.message) && e.message.includes('DB::Exception');
}

/** The server's numeric error code of an exception it answered with, or undefined. */
export function serverErrorCode(err: unknown): number | undefined {
  if (!isServerException(err)) return undefined;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && /^\d+$/.test(e.code)) return Number(e.code);
  const m = typeof e.message === 'string' ? /(?:^|\s)Code: (\d+)[.,]/.exec(e.message) : null;
  return m ? Number(m[1]) : undefined;
}

/**
 * Server error codes (ClickHouse's src/Common/ErrorCodes.cpp) that blame the inserted rows: a
 * value the server cannot parse, convert or store, or that a column's DEFAULT expression or a
 * CHECK constraint refuses. The same rows fail every time, so the insert is bisected down to them
 * instead of retried. Every other server exception (a missing table or column, access, memory,
 * too many parts, timeouts) is about the server or its schema: retried with backoff, counted by
 * code in vigil_sink_errors_total, and ClickHouse reported not ready until it passes.
 */
const ROW_ERRORS = new Set([
  6, // CANNOT_PARSE_TEXT
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA
  128, // TOO_LARGE_ARRAY_SIZE
  131, // TOO_LARGE_STRING_SIZE
  190, // SIZES_OF_ARRAYS_DOESNT_MATCH
  321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
  349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
  395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
  469, // VIOLATED_CONSTRAINT
]);

/**
 * TOO_MANY_PARTS (252) also names a block whose rows span more partitions than
 * `max_partitions_per_insert_block` allows (a backfill over months): a smaller block passes, so
 * it is split like a row error; its rows all store once the blocks are small enough.
 */
const TOO_MANY_PARTITIONS = /too many partitions for single insert block/i;

/** Whether ClickHouse refused an insert because of the rows it carries (split it), not the server's state (retry it). */
export function isRowRejection(err: unknown): boolean {
  const code = serverErrorCode(err);
  if (code === undefined) return false;
  if (ROW_ERRORS.has(code)) return true;
  return code === 252 && TOO_MANY_PARTITIONS.test(String((err as { message?: unknown }).message));
}
