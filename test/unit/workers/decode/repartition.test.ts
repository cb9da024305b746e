import { describe, expect, it } from 'vitest';
import { readForwarded } from '../../../../workers/decode/repartition.js';
import { PointsEncoder } from '../../../../workers/encode/points.js';
import { RowBinaryWriter } from '../../../../workers/encode/rowbinary.js';

describe('readForwarded: the repartition topic\'s rows', () => {
  it('reads each point\'s series, tenant, type, time, value and source back from the rows PointsEncoder wrote', () => {
    const e = new PointsEncoder(16);
    e.add(7n, 'cpu', ['host', 'a'], 0, 1_700_000_000_123, 1.5, 't', 3, 40, 0, 'acme');
    e.add(2n ** 64n - 1n, 'rate', [], 1, 1_700_000_001_000, -2, 't', 3, 41, 5);
    const body = e.rows.finish();
    expect(readForwarded(body, 0, body.length)).toEqual([
      { seriesId: 7n, metric: 'cpu', tags: ['host', 'a'], tenant: 'acme', type: 0, tsMs: 1_700_000_000_123, value: 1.5, sourceOffset: 40, pointIndex: 0 },
      { seriesId: 2n ** 64n - 1n, metric: 'rate', tags: [], tenant: '', type: 1, tsMs: 1_700_000_001_000, value: -2, sourceOffset: 41, pointIndex: 5 },
    ]);
  });

  it('reads a record written before the tenant column (no layout header) as the default tenant\'s', () => {
    // The row layout before issue 18: the series columns end with the tag values.
    const w = new RowBinaryWriter(16);
    w.bigUint64(7n);
    w.string('cpu');
    w.varUint(1);
    w.string('host');
    w.varUint(1);
    w.string('a');
    w.uint8(1);
    w.uint32(1_700_000_000);
    w.int64(1_700_000_000_123);
    w.float64(1.5);
    w.string('t');
    w.uint32(3);
    w.uint64(40);
    w.uint32(2);
    const body = w.finish();
    expect(readForwarded(body, 0, body.length, false)).toEqual([{ seriesId: 7n, metric: 'cpu', tags: ['host', 'a'], tenant: '', type: 0, tsMs: 1_700_000_000_123, value: 1.5, sourceOffset: 40, pointIndex: 2 }]);
    // Read as the new layout, the same bytes do not parse: the header is what tells them apart.
    expect(() => readForwarded(body, 0, body.length, true)).toThrow(RangeError);
  });
});
