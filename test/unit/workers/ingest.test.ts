import { describe, expect, it, vi } from 'vitest';
import type * as Decode from '../../../workers/decode/index.js';
import { SKIPPED, type IngestTask } from '../../../workers/ingest-task.js';
import { DEFAULT_LIMITS } from './decode/collect.js';
import { POINT_COLUMNS } from '../../../workers/encode/points.js';
import { decodeRowBinary } from '../../helpers/rowbinary.js';

// A decoder bug stand-in: any message starting with "THROW" makes decodeMessage throw after it has
// already emitted a point, so a pass that kept its output would store half a message.
vi.mock('../../../workers/decode/index.js', async (importOriginal) => {
  const real = await importOriginal<typeof Decode>();
  return {
    ...real,
    decodeMessage: (...args: Parameters<typeof real.decodeMessage>) => {
      const [bytes, start, end, , , points] = args;
      const text = new TextDecoder().decode(bytes.subarray(start, end));
      if (text.startsWith('THROW')) {
        points.point('half', [], 1, 1_700_000_000_000, 0, 0);
        throw new RangeError('Maximum call stack size exceeded');
      }
      real.decodeMessage(...args);
    },
  };
});

const { ingest, seriesOf } = await import('../../../workers/ingest.js');
const { seriesId, sortTags } = await import('../../../workers/series.js');

const NOW = 1_700_000_000_000;

function task(messages: (string | null)[], storeFromOffset = 0, kafkaTs = NOW, pointsAfter: readonly [number, number] = [-1, -1]): IngestTask {
  const enc = new TextEncoder();
  const parts = messages.map((m) => (m === null ? new Uint8Array(0) : enc.encode(m)));
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  const bounds = new Uint32Array(parts.length * 2);
  let pos = 0;
  parts.forEach((p, i) => {
    bounds[2 * i] = messages[i] === null ? SKIPPED : pos;
    data.set(p, pos);
    pos += p.length;
    bounds[2 * i + 1] = pos;
  });
  const offsets = Float64Array.from(messages, (_, i) => 100 + i);
  const timestamps = Float64Array.from(messages, () => kafkaTs);
  return { topic: 't', partition: 0, format: 'auto', data, bounds, offsets, timestamps, nowMs: NOW, maxFutureMs: 3_600_000, watermarkMaxAheadMs: 0, limits: DEFAULT_LIMITS, compression: 'none', shards: 2, storeFromOffset, pointsAfter, repartitions: 1, forward: null, tenancy: null };
}

function rows(body: Uint8Array): { metric: string; offset: number }[] {
  return decodeRowBinary(body, POINT_COLUMNS).map((r) => ({ metric: r['metric'] as string, offset: Number(r['source_offset']) }));
}

const point = (name: string) => `{"name":"${name}","value":1,"timestamp":${NOW}}`;

describe('ingest task: poison isolation', () => {
  it('a message whose decoding throws is set aside whole with VIGIL_ERR_DECODE_INTERNAL; the others are stored, and none of its points', () => {
    const r = ingest(task([point('a'), 'THROW me', point('c'), 'THROW again', point('e')]));
    expect(rows(r.body)).toEqual([
      { metric: 'a', offset: 100 },
      { metric: 'c', offset: 102 },
      { metric: 'e', offset: 104 },
    ]);
    expect(r.rows).toBe(3);
    expect(r.shardBatches.reduce((n, b) => n + b.count, 0)).toBe(3);
    // Whole-message rejects carry the message's bytes (the main thread no longer holds the messages).
    const enc = new TextEncoder();
    expect(r.rejects).toEqual([
      { message: 1, code: 'VIGIL_ERR_DECODE_INTERNAL', reason: 'decoding the message threw: RangeError: Maximum call stack size exceeded', count: 1, value: enc.encode('THROW me') },
      { message: 3, code: 'VIGIL_ERR_DECODE_INTERNAL', reason: 'decoding the message threw: RangeError: Maximum call stack size exceeded', count: 1, value: enc.encode('THROW again') },
    ]);
    // Copies, not views of the task's buffer (a view would post the whole buffer back).
    expect(r.rejects.every((x) => x.value?.buffer.byteLength === x.value?.byteLength)).toBe(true);
  });

  it('a poisoned message below storeFromOffset (already stored) writes no dead letter again', () => {
    const r = ingest(task(['THROW', point('b')], 101));
    expect(r.rejects).toEqual([]);
    expect(rows(r.body)).toEqual([{ metric: 'b', offset: 101 }]);
    expect(r.shardBatches.reduce((n, b) => n + b.count, 0)).toBe(1);
  });

  it('points at or before the partition\'s mark (offset, index) are not encoded again, but still reach the shards; a bad message past it still gets its letter', () => {
    const three = `[${point('a')},${point('b')},${point('c')}]`;
    const r = ingest(task([three, three, 'bad line', three], 0, NOW, [101, 1]));
    // 100 whole and 101's first two points are stored: 101's third and 103's three are written.
    expect(rows(r.body)).toEqual([
      { metric: 'c', offset: 101 },
      { metric: 'a', offset: 103 },
      { metric: 'b', offset: 103 },
      { metric: 'c', offset: 103 },
    ]);
    expect(r.alreadyStored).toBe(5);
    expect(r.shardBatches.reduce((n, b) => n + b.count, 0)).toBe(9);
    expect(r.rejects.map((x) => x.message)).toEqual([2]);
  });

  it('JSON nested deeper than JSON.stringify can recurse: the element is rejected, the letter carries the whole message, the good element is stored', () => {
    const deep = '['.repeat(50_000) + ']'.repeat(50_000);
    const r = ingest(task([`[${point('ok')},${deep}]`]));
    expect(rows(r.body)).toEqual([{ metric: 'ok', offset: 100 }]);
    expect(r.rejects).toHaveLength(1);
    expect(r.rejects[0]).toMatchObject({ message: 0, code: 'VIGIL_ERR_DECODE_SHAPE', count: 1, element: 1 });
    expect(r.rejects[0]?.bytes).toBeUndefined();
  });

  it('one folded reject per bad message: 1,000 bad elements make one reject with the count, and the bad elements as NDJSON', () => {
    const r = ingest(task([`[${point('ok')},${Array.from({ length: 1000 }, (_, i) => String(i)).join(',')}]`, 'bad line']));
    expect(r.rejects).toHaveLength(2);
    const [first, second] = r.rejects;
    expect(first).toMatchObject({ message: 0, code: 'VIGIL_ERR_DECODE_SHAPE', count: 1000, element: 1, items: 1000 });
    expect(new TextDecoder().decode(first?.bytes)).toBe(Array.from({ length: 1000 }, (_, i) => String(i)).join('\n'));
    expect(first?.reason).toBe(
      'element 1: expected a JSON object, got the number 0; element 2: expected a JSON object, got the number 1; element 3: expected a JSON object, got the number 2; ' +
        'element 4: expected a JSON object, got the number 3; element 5: expected a JSON object, got the number 4; … and 995 more',
    );
    expect(second).toMatchObject({ message: 1, count: 1, line: 1 });
    expect(rows(r.body)).toEqual([{ metric: 'ok', offset: 100 }]);
  });
});

describe('ingest task: the watermark an outlier cannot hijack', () => {
  const at = (name: string, ts: number) => `{"name":"${name}","value":1,"timestamp":${ts}}`;

  it("a point stamped 59 minutes ahead is stored, but advances the partition's event-time maximum only to its message's Kafka timestamp + watermarkMaxAheadMs", () => {
    const r = ingest(task([at('on', NOW - 1000), at('ahead', NOW + 59 * 60_000), at('next', NOW - 500)]));
    expect(rows(r.body).map((x) => x.metric)).toEqual(['on', 'ahead', 'next']);
    expect(r.maxTsMs).toBe(NOW);
    // The message after the outlier is judged against the capped maximum, not the outlier's time.
    const batches = r.shardBatches.filter((b) => b.count > 0);
    const maxBefore = new Map<number, number>();
    for (const b of batches) for (let i = 0; i < b.count; i++) maxBefore.set(b.offsets[i] as number, b.maxBeforeMs[i] as number);
    expect([...maxBefore].sort((a, b) => a[0] - b[0])).toEqual([
      [100, -Infinity],
      [101, NOW - 1000],
      [102, NOW],
    ]);
  });

  it('points behind their Kafka timestamp (a backfill) advance it as stamped; a message without a timestamp (-1) is not capped', () => {
    expect(ingest(task([at('old', NOW - 86_400_000)])).maxTsMs).toBe(NOW - 86_400_000);
    expect(ingest(task([at('ahead', NOW + 59 * 60_000)], 0, -1)).maxTsMs).toBe(NOW + 59 * 60_000);
    expect(ingest(task([at('edge', NOW)])).maxTsMs).toBe(NOW);
    expect(ingest(task([at('ahead', NOW + 1)])).maxTsMs).toBe(NOW);
    expect(ingest({ ...task([at('ahead', NOW + 59 * 60_000)]), watermarkMaxAheadMs: 60_000 }).maxTsMs).toBe(NOW + 60_000);
  });
});

describe('series cache (by the series as it arrives)', () => {
  const canonicalId = (metric: string, tags: string[]) => seriesId(metric, sortTags([...tags]));

  it('gives the canonical id and sorted tags whatever the arrival order, and leaves the arriving tags as they are', () => {
    const a = ['region', 'eu', 'host', 'a'];
    const b = ['host', 'a', 'region', 'eu'];
    const first = seriesOf('cache.cpu', a, 4);
    expect(a).toEqual(['region', 'eu', 'host', 'a']);
    expect(first.id).toBe(canonicalId('cache.cpu', a));
    expect(first.tags).toEqual(['host', 'a', 'region', 'eu']);
    expect(first.shard).toBe(Number(first.id % 4n));
    // Known now: the same entry, by a fresh array of equal strings.
    expect(seriesOf('cache.cpu', [...a], 4)).toBe(first);
    const other = seriesOf('cache.cpu', b, 4);
    expect(other.id).toBe(first.id);
    expect(seriesOf('cache.cpu', [], 4).id).toBe(canonicalId('cache.cpu', []));
    expect(seriesOf('cache.cpu', [], 3).shard).toBe(Number(canonicalId('cache.cpu', []) % 3n));
  });

  it('never mixes up series whose joined key is the same (U+0000 inside a tag)', () => {
    const pairs: [string, string[]][] = [
      ['cache.k', ['b\u0000c', 'd']],
      ['cache.k', ['b', 'c\u0000d']],
      ['cache.k\u0000b', ['c', 'd']],
    ];
    // Twice over, so the second round meets the cache entry the first left for the same key.
    for (let round = 0; round < 2; round++) {
      for (const [metric, tags] of pairs) {
        const s = seriesOf(metric, tags, 2);
        expect(s.id, JSON.stringify([metric, tags])).toBe(canonicalId(metric, tags));
        expect(s.metric).toBe(metric);
      }
    }
    expect(new Set(pairs.map(([m, t]) => canonicalId(m, t))).size).toBe(3);
  });

  it('finds a series by a decoder\'s stable tags array and its metric: each metric of one array its own series, the shard count checked', async () => {
    const { stableTags } = await import('../../../workers/decode/types.js');
    const tags = ['host', 'b', 'dc', 'x'];
    stableTags.add(tags);
    const usage = seriesOf('cache.stable.usage', tags, 4);
    const idle = seriesOf('cache.stable.idle', tags, 4);
    expect(usage.id).toBe(canonicalId('cache.stable.usage', tags));
    expect(idle.id).toBe(canonicalId('cache.stable.idle', tags));
    expect(seriesOf('cache.stable.usage', tags, 4)).toBe(usage);
    expect(seriesOf('cache.stable.idle', tags, 4)).toBe(idle);
    expect(seriesOf('cache.stable.usage', tags, 3).shard).toBe(Number(usage.id % 3n));
    expect(tags).toEqual(['host', 'b', 'dc', 'x']);
  });

  it('gives an influx line the same series warm (its section cached) as cold, one per field', () => {
    const line = `cache,host=z,dc=y usage=1,idle=2 ${String(NOW)}`;
    const ids = () => {
      const r = ingest(task([line, line]));
      return decodeRowBinary(r.body, POINT_COLUMNS).map((row) => row['series_id']);
    };
    const [a, b, c, d] = ids();
    expect(a).toBe(seriesId('cache.usage', ['dc', 'y', 'host', 'z']));
    expect(b).toBe(seriesId('cache.idle', ['dc', 'y', 'host', 'z']));
    expect([c, d]).toEqual([a, b]);
    expect(ids()).toEqual([a, b, a, b]);
  });
});

describe('ingest task: tenants (issue 18)', () => {
  const tagged = (name: string, tags: Record<string, string>) => `{"name":"${name}","value":1,"timestamp":${NOW},"tags":${JSON.stringify(tags)}}`;
  const tenantRows = (body: Uint8Array) => decodeRowBinary(body, POINT_COLUMNS).map((r) => ({ metric: r['metric'], tenant: r['tenant'], keys: r['tags.key'], id: r['series_id'] }));

  it('takes the tag out of the tags, then the header, then the topic; the same metric and tags in two tenants are two series', () => {
    const t = task([tagged('a', { host: 'h', tenant: 'gamma' }), tagged('b', { host: 'h' }), tagged('c', { host: 'h' }), 'cpu,host=h,tenant=gamma v=1']);
    t.tenancy = { tag: 'tenant', topic: '', header: 'vigil-tenant', headers: ['', 'beta', '', ''] };
    const r = ingest(t);
    expect(r.rejects).toEqual([]);
    const tags = sortTags(['host', 'h']);
    expect(tenantRows(r.body)).toEqual([
      { metric: 'a', tenant: 'gamma', keys: ['host'], id: seriesId('a', tags, 'gamma') },
      { metric: 'b', tenant: 'beta', keys: ['host'], id: seriesId('b', tags, 'beta') },
      { metric: 'c', tenant: '', keys: ['host'], id: seriesId('c', tags) },
      { metric: 'cpu.v', tenant: 'gamma', keys: ['host'], id: seriesId('cpu.v', tags, 'gamma') },
    ]);
    expect(seriesId('a', tags, 'gamma')).not.toBe(seriesId('a', tags));
  });

  it('a topic\'s tenant is every point\'s: a tag or header claiming another is refused, one naming it is taken', () => {
    const t = task([tagged('a', { tenant: 'beta' }), tagged('b', {}), tagged('c', { tenant: 'acme' }), 'cpu,tenant=beta v=1,w=2\ncpu v=3', tagged('d', { tenant: 'bad name' })]);
    t.tenancy = { tag: 'tenant', topic: 'acme', header: 'vigil-tenant', headers: ['', 'beta', '', '', ''] };
    const r = ingest(t);
    expect(r.rejects.map((x) => [x.message, x.code, x.count])).toEqual([
      [0, 'VIGIL_ERR_DECODE_TENANT', 1],
      [1, 'VIGIL_ERR_DECODE_TENANT', 1],
      [3, 'VIGIL_ERR_DECODE_TENANT', 1],
      [4, 'VIGIL_ERR_DECODE_TENANT', 1],
    ]);
    expect(r.rejects[0]?.reason).toContain('tag "tenant" claims tenant "beta", but the topic "t" is tenant "acme"\'s');
    expect(r.rejects[1]?.reason).toBe('header "vigil-tenant" claims tenant "beta", but the topic is tenant "acme"\'s');
    expect(r.rejects[2]?.line).toBe(1);
    expect(tenantRows(r.body).map((x) => [x.metric, x.tenant])).toEqual([
      ['c', 'acme'],
      ['cpu.v', 'acme'],
    ]);
  });
});
