import { ClickHouseError } from '@clickhouse/client';
import { describe, expect, it } from 'vitest';
import { isRowRejection, isServerException, serverErrorCode } from '../../../../sinks/clickhouse/errors.js';

/** The text 18.16 answers with (the client leaves it a plain Error). */
const old = (code: number, text: string) => new Error(`Code: ${code}, e.displayText() = DB::Exception: ${text}, e.what() = DB::Exception`);
/** What the client makes of a current server's answer. */
const current = (code: number, text: string) => new ClickHouseError({ message: text, code: String(code), type: 'X' });

describe('ClickHouse insert errors', () => {
  it('reads the server code from 18.16 text and from current servers, none from a network error', () => {
    expect(serverErrorCode(old(395, "Value passed to 'throwIf' function is non zero"))).toBe(395);
    expect(serverErrorCode(current(469, 'Constraint `c` for table t is violated'))).toBe(469);
    const net = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' });
    expect(isServerException(net)).toBe(false);
    expect(serverErrorCode(net)).toBeUndefined();
  });

  it.for([
    ['throwIf in a DEFAULT (18.16)', old(395, "Value passed to 'throwIf' function is non zero"), true],
    ['a violated CHECK constraint', current(469, 'Constraint `positive` for table vigil.points is violated'), true],
    ['a value out of range', current(321, 'Value out of range'), true],
    ['an unparseable number', old(72, 'Cannot parse number'), true],
    ['too many partitions for one block (a backfill)', current(252, "Too many partitions for single INSERT block (more than 100). The limit is controlled by 'max_partitions_per_insert_block' setting."), true],
    ['too many parts (merges behind): the server, not the rows', current(252, 'Too many parts (300). Merges are processing significantly slower than inserts'), false],
    ['a missing table', old(60, "Table vigil.points doesn't exist."), false],
    ['a missing column', current(16, 'No such column guard in table vigil.points'), false],
    ['memory', current(241, 'Memory limit (total) exceeded'), false],
    ['a truncated body', old(33, 'Cannot read all data'), false],
    ['access', current(497, 'Not enough privileges'), false],
    ['a network error', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), false],
  ] as const)('%s: rows to split out → %s', ([, err, rows]) => {
    expect(isRowRejection(err)).toBe(rows);
  });
});
