import { describe, it, expect } from 'vitest';
import { MetricType } from '../../../../workers/decode/index.js';
import { CTX, NOW, decode, oneReject, onePoint } from './collect.js';

const T0 = Date.UTC(2024, 0, 15, 10, 30); // 2024-01-15T10:30:00Z, as in the design's example

describe('JSON objects', () => {
  it('decodes the design example object', () => {
    const p = onePoint(
      '{"metric_id": "crypto.key.access_count", "value": 42.0, "timestamp": "2024-01-15T10:30:00Z", ' +
        '"metric_type": "counter", "tags": {"key_type": "encryption"}}',
    );
    expect(p).toEqual({
      metric: 'crypto.key.access_count',
      tags: ['key_type', 'encryption'],
      value: 42,
      tsMs: T0,
      type: MetricType.counter,
      pointIndex: 0,
    });
  });

  it('accepts name for metric_id and labels for tags, and prefers metric_id when both are present', () => {
    expect(onePoint('{"name": "cpu", "value": 1, "labels": {"host": "a"}}')).toMatchObject({
      metric: 'cpu',
      tags: ['host', 'a'],
      type: MetricType.gauge,
    });
    expect(onePoint('{"metric_id": "m1", "name": "m2", "value": 1}').metric).toBe('m1');
  });

  it('keeps tags in input order, stringifies numbers and booleans', () => {
    const p = onePoint('{"name": "m", "value": 1, "tags": {"z": "1", "a": 2.5, "m": true, "b": false}}');
    expect(p.tags).toEqual(['z', '1', 'a', '2.5', 'm', 'true', 'b', 'false']);
  });

  it('accepts numeric strings as values', () => {
    expect(onePoint('{"name": "m", "value": "1.5"}').value).toBe(1.5);
    expect(onePoint('{"name": "m", "value": "-2e3"}').value).toBe(-2000);
    expect(onePoint('{"name": "m", "value": 0}').value).toBe(0);
  });

  it('reads the timestamp from timestamp, time or ts, and falls back to the Kafka timestamp', () => {
    expect(onePoint('{"name": "m", "value": 1, "time": 1705314600}').tsMs).toBe(T0);
    expect(onePoint('{"name": "m", "value": 1, "ts": 1705314600000}').tsMs).toBe(T0);
    expect(onePoint('{"name": "m", "value": 1}').tsMs).toBe(CTX.kafkaTimestampMs);
  });

  it('reads the type from metric_type or type; untyped and missing are gauges', () => {
    expect(onePoint('{"name": "m", "value": 1, "metric_type": "gauge"}').type).toBe(MetricType.gauge);
    expect(onePoint('{"name": "m", "value": 1, "metric_type": "untyped"}').type).toBe(MetricType.gauge);
    expect(onePoint('{"name": "m", "value": 1, "type": "counter"}').type).toBe(MetricType.counter);
    expect(onePoint('{"name": "m_total", "value": 1}').type).toBe(MetricType.gauge); // not Prometheus-shaped
  });

  it('treats null as missing for optional keys', () => {
    const p = onePoint('{"name": "m", "value": 1, "tags": null, "metric_type": null, "timestamp": null}');
    expect(p).toMatchObject({ tags: [], type: MetricType.gauge, tsMs: CTX.kafkaTimestampMs });
  });
});

describe('JSON containers', () => {
  it('decodes an array of objects with consecutive point indexes', () => {
    const { points, rejects } = decode('[{"name": "a", "value": 1}, {"name": "b", "value": 2}]');
    expect(rejects).toEqual([]);
    expect(points.map((p) => [p.metric, p.value, p.pointIndex])).toEqual([
      ['a', 1, 0],
      ['b', 2, 1],
    ]);
  });

  it('decodes {"metrics": [...]} and reports element indexes inside it', () => {
    const { points, rejects } = decode('{"metrics": [{"name": "a", "value": 1}, {"name": "b"}, {"name": "c", "value": 3}]}');
    expect(points.map((p) => [p.metric, p.pointIndex])).toEqual([
      ['a', 0],
      ['c', 2],
    ]);
    expect(rejects).toEqual([
      expect.objectContaining({ code: 'VIGIL_ERR_DECODE_VALUE', element: 1, text: '{"name":"b"}' }),
    ]);
  });

  it('rejects {"metrics": ...} that is not an array, as a whole message', () => {
    const r = oneReject('{"metrics": {"name": "a"}}');
    expect(r.code).toBe('VIGIL_ERR_DECODE_SHAPE');
    expect(r.bytes).toBeUndefined();
    expect(r.reason).toContain('"metrics"');
  });

  it('still treats an object with both "metrics" and "value" as a point', () => {
    expect(onePoint('{"name": "m", "value": 1, "metrics": "x"}').metric).toBe('m');
  });

  it('decodes newline-delimited objects; a bad line in the middle costs only itself', () => {
    const bad = '{"name": "b", "value": }';
    const { points, rejects } = decode(`{"name": "a", "value": 1}\n${bad}\n\n{"name": "c", "value": 3}\n`);
    expect(points.map((p) => [p.metric, p.value, p.pointIndex])).toEqual([
      ['a', 1, 0],
      ['c', 3, 2], // the bad line keeps its index; the blank line has none
    ]);
    expect(rejects).toHaveLength(1);
    expect(rejects[0]).toMatchObject({ code: 'VIGIL_ERR_DECODE_JSON', line: 2, text: bad });
    expect(rejects[0]?.reason).toMatch(/^line 2: /);
    expect(rejects[0]?.element).toBeUndefined();
  });

  it('handles CRLF in newline-delimited JSON and reports line bytes without the CR', () => {
    const { points, rejects } = decode('{"name": "a", "value": 1}\r\n{"name": 5, "value": 1}\r\n{"name": "c", "value": 3}');
    expect(points.map((p) => p.pointIndex)).toEqual([0, 2]);
    expect(rejects).toEqual([expect.objectContaining({ code: 'VIGIL_ERR_DECODE_NAME', line: 2, text: '{"name": 5, "value": 1}' })]);
  });

  it('rejects a line of newline-delimited JSON that is not an object', () => {
    const { points, rejects } = decode('{"name": "a", "value": 1}\n[1, 2]\n');
    expect(points).toHaveLength(1);
    expect(rejects).toEqual([expect.objectContaining({ code: 'VIGIL_ERR_DECODE_SHAPE', line: 2, text: '[1, 2]' })]);
  });
});

describe('Prometheus adapter objects', () => {
  const adapter =
    '{"timestamp":"2024-01-15T10:30:00Z","value":"1.5","name":"http_requests_total",' +
    '"labels":{"__name__":"http_requests_total","job":"api"}}';

  it('decodes the prometheus-kafka-adapter object as a counter without __name__ in the tags', () => {
    expect(onePoint(adapter)).toEqual({
      metric: 'http_requests_total',
      tags: ['job', 'api'],
      value: 1.5,
      tsMs: T0,
      type: MetricType.counter,
      pointIndex: 0,
    });
    expect(onePoint(adapter, 'prometheus').type).toBe(MetricType.counter);
  });

  it('types by Prometheus naming: _total, _count, _sum, _bucket are counters, anything else a gauge', () => {
    const typeOf = (name: string): number =>
      onePoint(`{"value": "1", "labels": {"__name__": "${name}", "job": "api"}}`).type;
    expect(typeOf('rpc_duration_seconds_count')).toBe(MetricType.counter);
    expect(typeOf('rpc_duration_seconds_sum')).toBe(MetricType.counter);
    expect(typeOf('rpc_duration_seconds_bucket')).toBe(MetricType.counter);
    expect(typeOf('up')).toBe(MetricType.gauge);
    expect(typeOf('total_memory_bytes')).toBe(MetricType.gauge);
  });

  it('takes the name from __name__ when there is no name', () => {
    const p = onePoint('{"value": "1", "labels": {"__name__": "up", "job": "api"}}');
    expect(p.metric).toBe('up');
    expect(p.tags).toEqual(['job', 'api']);
  });

  it('applies the typing rule to every object in prometheus format, and an explicit type wins', () => {
    expect(onePoint('{"name": "x_total", "value": 1}', 'prometheus').type).toBe(MetricType.counter);
    expect(onePoint('{"name": "x_total", "value": 1}', 'json').type).toBe(MetricType.gauge);
    expect(onePoint('{"name": "x_total", "value": 1, "metric_type": "gauge"}', 'prometheus').type).toBe(MetricType.gauge);
  });

  it('drops labels with an empty value, which Prometheus treats as absent', () => {
    expect(onePoint('{"value": "1", "labels": {"__name__": "up", "job": "", "instance": "a"}}').tags).toEqual([
      'instance',
      'a',
    ]);
  });
});

describe('JSON rejects', () => {
  it('rejects invalid single-line JSON as a whole message, with JSON.parse message', () => {
    const r = oneReject('{"name": "m", "value": 1');
    expect(r.code).toBe('VIGIL_ERR_DECODE_JSON');
    expect(r.bytes).toBeUndefined();
    expect(r.line).toBeUndefined();
    expect(r.reason).toMatch(/^message is not valid JSON: .*JSON/);
  });

  it('rejects a top-level value that is not an object or an array', () => {
    for (const text of ['42', '"text"', 'null', 'true']) {
      const r = oneReject(text, 'json');
      expect(r.code).toBe('VIGIL_ERR_DECODE_SHAPE');
      expect(r.bytes).toBeUndefined();
    }
  });

  it('rejects array elements that are not objects with their JSON and element index', () => {
    const { points, rejects } = decode('[1, {"name": "a", "value": 1}, [2], "x", null]');
    expect(points).toEqual([expect.objectContaining({ metric: 'a', pointIndex: 1 })]);
    expect(rejects.map((r) => [r.code, r.element, r.text])).toEqual([
      ['VIGIL_ERR_DECODE_SHAPE', 0, '1'],
      ['VIGIL_ERR_DECODE_SHAPE', 2, '[2]'],
      ['VIGIL_ERR_DECODE_SHAPE', 3, '"x"'],
      ['VIGIL_ERR_DECODE_SHAPE', 4, 'null'],
    ]);
  });

  it('rejects a missing, empty, non-string or too long name', () => {
    for (const body of ['"value": 1', '"name": "", "value": 1', '"name": 7, "value": 1', `"name": "${'x'.repeat(1025)}", "value": 1`]) {
      const r = oneReject(`{${body}}`);
      expect(r.code).toBe('VIGIL_ERR_DECODE_NAME');
    }
    expect(oneReject('{"value": 1}').reason).toContain('"metric_id" or "name"');
    expect(onePoint(`{"name": "${'x'.repeat(1024)}", "value": 1}`).metric).toHaveLength(1024);
  });

  it('rejects NaN, infinities, non-numeric strings, booleans, null and missing values', () => {
    const values = ['"NaN"', '"+Inf"', '"-Inf"', '"Infinity"', '1e999', '-1e999', 'true', 'null', '""', '"0x10"', '" 1"', '"1,5"', '{}'];
    for (const v of values) {
      const r = oneReject(`{"name": "m", "value": ${v}}`);
      expect(r.code, v).toBe('VIGIL_ERR_DECODE_VALUE');
      expect(r.reason).toContain('"value"');
    }
    expect(oneReject('{"name": "m"}').code).toBe('VIGIL_ERR_DECODE_VALUE');
  });

  it('rejects tags that are not a flat object of strings, numbers or booleans', () => {
    const bad = ['{"a": {"b": "c"}}', '{"a": [1]}', '{"a": null}', '"a=b"', '[["a", "b"]]', '{"": "x"}', '{"a": 1e999}'];
    for (const tags of bad) {
      const r = oneReject(`{"name": "m", "value": 1, "tags": ${tags}}`);
      expect(r.code, tags).toBe('VIGIL_ERR_DECODE_TAGS');
    }
    expect(oneReject('{"name": "m", "value": 1, "tags": {"a": {"b": "c"}}}').reason).toContain('"tags.a"');
    expect(oneReject('{"name": "m", "value": 1, "labels": {"a": null}}').reason).toContain('"labels.a"');
  });

  it('accepts 64 tags and rejects 65', () => {
    const tags = (n: number): string => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(i)}`, 'v'])));
    expect(onePoint(`{"name": "m", "value": 1, "tags": ${tags(64)}}`).tags).toHaveLength(128);
    expect(oneReject(`{"name": "m", "value": 1, "tags": ${tags(65)}}`).code).toBe('VIGIL_ERR_DECODE_TAGS');
  });

  it('rejects an unknown or non-string metric type', () => {
    for (const t of ['"histogram"', '"Counter"', '1', 'true']) {
      const r = oneReject(`{"name": "m", "value": 1, "metric_type": ${t}}`);
      expect(r.code).toBe('VIGIL_ERR_DECODE_TYPE');
    }
    expect(oneReject('{"name": "m", "value": 1, "type": "summary"}').reason).toContain('"type"');
  });

  it('rejects a bad timestamp and names the key and the value', () => {
    const r = oneReject('{"name": "m", "value": 1, "ts": "yesterday"}');
    expect(r.code).toBe('VIGIL_ERR_DECODE_TIMESTAMP');
    expect(r.reason).toContain('"ts"');
    expect(r.reason).toContain('yesterday');
  });

  it('keeps the point index of later elements when an earlier one is bad', () => {
    const good = '{"name": "g", "value": 1}';
    const late = `{"name": "f", "value": 1, "timestamp": ${String((NOW + 3_600_000) / 1000)}}`;
    const { points, rejects } = decode(`[{"name": "x"}, ${late}, 5, ${good}]`);
    expect(points.map((p) => [p.metric, p.pointIndex])).toEqual([['g', 3]]);
    expect(rejects.map((r) => [r.code, r.element])).toEqual([
      ['VIGIL_ERR_DECODE_VALUE', 0],
      ['VIGIL_ERR_DECODE_TIMESTAMP', 1],
      ['VIGIL_ERR_DECODE_SHAPE', 2],
    ]);
    // The same bytes decoded when the clock has moved on: the late point is now valid, and no
    // index shifts.
    const later = decode(`[{"name": "x"}, ${late}, 5, ${good}]`, 'auto', { ...CTX, nowMs: NOW + 3_600_000 });
    expect(later.points.map((p) => [p.metric, p.pointIndex])).toEqual([
      ['f', 1],
      ['g', 3],
    ]);
  });
});
