import { describe, it, expect } from 'vitest';
import { MetricType } from '../../../../workers/decode/index.js';
import { CTX, NOW, bytesOf, decode, oneReject, onePoint } from './collect.js';

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
    // and for each fallback key, too
    expect(onePoint('{"name": "m", "value": 1, "labels": null, "type": null, "time": null, "ts": null}')).toMatchObject({
      tags: [],
      type: MetricType.gauge,
      tsMs: CTX.kafkaTimestampMs,
    });
  });

  it('falls back to the next alias when a key is null', () => {
    expect(onePoint('{"metric_id": null, "name": "m", "value": 1}').metric).toBe('m');
    expect(onePoint('{"name": "m", "value": 1, "tags": null, "labels": {"a": "b"}}').tags).toEqual(['a', 'b']);
    expect(onePoint('{"name": "m", "value": 1, "metric_type": null, "type": "counter"}').type).toBe(MetricType.counter);
    expect(onePoint('{"name": "m", "value": 1, "timestamp": null, "time": null, "ts": 1705314600}').tsMs).toBe(T0);
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

  it('reads newline-delimited objects when the last line has no newline', () => {
    const { points, rejects } = decode('{"name": "a", "value": 1}\n{"name": "b", "value": 2}');
    expect(rejects).toEqual([]);
    expect(points.map((p) => [p.metric, p.value, p.pointIndex])).toEqual([
      ['a', 1, 0],
      ['b', 2, 1],
    ]);
  });

  it('rejects invalid JSON with a single non-blank line as a whole message, even after blank lines', () => {
    const { points, rejects } = decode('\n  \n{"name": "m", "value": }\n');
    expect(points).toEqual([]);
    expect(rejects).toEqual([{ code: 'VIGIL_ERR_DECODE_JSON', reason: expect.stringMatching(/^message is not valid JSON: /) as unknown }]);
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
    expect(onePoint('{"name": null, "value": "1", "labels": {"__name__": "up"}}').metric).toBe('up');
  });

  it('prefers name over the __name__ label', () => {
    expect(onePoint('{"name": "a", "value": 1, "labels": {"__name__": "b"}}')).toMatchObject({ metric: 'a', tags: [] });
  });

  it('rejects an empty or non-string __name__ label', () => {
    expect(oneReject('{"value": 1, "labels": {"__name__": ""}}')).toEqual({
      code: 'VIGIL_ERR_DECODE_NAME',
      reason: 'expected "labels.__name__" to be a non-empty string, got the string ""',
    });
    // Not a string, so not a name: the point has none.
    expect(oneReject('{"value": 1, "labels": {"__name__": 5}}')).toEqual({
      code: 'VIGIL_ERR_DECODE_NAME',
      reason: 'expected a metric name in "metric_id" or "name", found neither',
    });
    // With a name, the bad label is still no tag.
    expect(oneReject('{"name": "m", "value": 1, "labels": {"__name__": 5}}')).toEqual({
      code: 'VIGIL_ERR_DECODE_TAGS',
      reason: 'expected "labels.__name__" to be a string, got the number 5',
    });
  });

  it('recognises Prometheus objects by __name__ in "labels" only, never in "tags"', () => {
    expect(onePoint('{"name": "x_total", "value": 1, "tags": {"__name__": "x_total"}}')).toMatchObject({ type: MetricType.gauge, tags: [] });
    expect(onePoint('{"name": "x_total", "value": 1, "labels": {"__name__": "x_total"}}')).toMatchObject({ type: MetricType.counter, tags: [] });
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
    expect(rejects.map((r) => [r.code, r.element, r.text, r.reason])).toEqual([
      ['VIGIL_ERR_DECODE_SHAPE', 0, '1', 'element 0: expected a JSON object, got the number 1'],
      ['VIGIL_ERR_DECODE_SHAPE', 2, '[2]', 'element 2: expected a JSON object, got an array'],
      ['VIGIL_ERR_DECODE_SHAPE', 3, '"x"', 'element 3: expected a JSON object, got the string "x"'],
      ['VIGIL_ERR_DECODE_SHAPE', 4, 'null', 'element 4: expected a JSON object, got null'],
    ]);
  });

  it('still names the element of one too deep to re-encode, and leaves its bytes out', () => {
    // JSON.stringify recurses and throws on this nesting, which JSON.parse reads (far deeper than a
    // worker thread's stack allows to re-encode).
    const depth = 100_000;
    const { points, rejects } = decode(`[${'['.repeat(depth)}${']'.repeat(depth)}, 5]`);
    expect(points).toEqual([]);
    expect(rejects).toEqual([
      { code: 'VIGIL_ERR_DECODE_SHAPE', reason: 'element 0: expected a JSON object, got an array', element: 0 },
      { code: 'VIGIL_ERR_DECODE_SHAPE', reason: 'element 1: expected a JSON object, got the number 5', element: 1, text: '5', bytes: bytesOf('5') },
    ]);
  });

  it('rejects a missing, empty or non-string name, and one past limits.maxMetricNameLength', () => {
    for (const body of ['"value": 1', '"name": "", "value": 1', '"name": 7, "value": 1']) {
      const r = oneReject(`{${body}}`);
      expect(r.code).toBe('VIGIL_ERR_DECODE_NAME');
    }
    expect(oneReject('{"value": 1}').reason).toBe('expected a metric name in "metric_id" or "name", found neither');
    expect(oneReject('{"name": null, "value": 1}').reason).toBe('expected a metric name in "metric_id" or "name", found neither');
    expect(oneReject('{"name": 7, "value": 1}').reason).toBe('expected "name" to be a non-empty string, got the number 7');
    expect(oneReject('{"metric_id": "", "value": 1}').reason).toBe('expected "metric_id" to be a non-empty string, got the string ""');
    expect(oneReject(`{"name": "${'x'.repeat(1025)}", "value": 1}`)).toEqual({ code: 'VIGIL_ERR_LIMIT_NAME', reason: '"name" is 1025 characters, over limits.maxMetricNameLength = 1024' });
    expect(onePoint(`{"name": "${'x'.repeat(1024)}", "value": 1}`).metric).toHaveLength(1024);
  });

  it('rejects NaN, infinities, non-numeric strings, booleans, null and missing values', () => {
    const values = ['"NaN"', '"+Inf"', '"-Inf"', '"Infinity"', '1e999', '-1e999', 'true', 'null', '""', '"0x10"', '" 1"', '"1,5"', '{}'];
    for (const v of values) {
      const r = oneReject(`{"name": "m", "value": ${v}}`);
      expect(r.code, v).toBe('VIGIL_ERR_DECODE_VALUE');
      expect(r.reason).toContain('"value"');
    }
    expect(oneReject('{"name": "m"}')).toEqual({ code: 'VIGIL_ERR_DECODE_VALUE', reason: 'expected "value" (a finite number or numeric string), found none' });
    expect(oneReject('{"name": "m", "value": null}').reason).toBe('expected "value" to be a finite number or numeric string, got null');
    expect(oneReject('{"name": "m", "value": "NaN"}').reason).toBe('expected "value" to be a finite number or numeric string, got the string "NaN"');
  });

  it('rejects tags that are not a flat object of strings, numbers or booleans', () => {
    const bad = ['{"a": {"b": "c"}}', '{"a": [1]}', '{"a": null}', '"a=b"', '[["a", "b"]]', '{"": "x"}', '{"a": 1e999}'];
    for (const tags of bad) {
      const r = oneReject(`{"name": "m", "value": 1, "tags": ${tags}}`);
      expect(r.code, tags).toBe('VIGIL_ERR_DECODE_TAGS');
    }
    expect(oneReject('{"name": "m", "value": 1, "tags": {"a": {"b": "c"}}}').reason).toBe('expected "tags.a" to be a string, finite number or boolean, got an object');
    expect(oneReject('{"name": "m", "value": 1, "labels": {"a": null}}').reason).toBe('expected "labels.a" to be a string, finite number or boolean, got null');
    expect(oneReject('{"name": "m", "value": 1, "tags": "a=b"}').reason).toBe('expected "tags" to be a flat object of strings, got the string "a=b"');
    expect(oneReject('{"name": "m", "value": 1, "tags": {"": "x"}}').reason).toBe('expected every key of "tags" to be non-empty');
  });

  it('accepts 64 tags and rejects 65 (limits.maxTagsPerPoint); tag keys and values past their length limits', () => {
    const tags = (n: number): string => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(i)}`, 'v'])));
    expect(onePoint(`{"name": "m", "value": 1, "tags": ${tags(64)}}`).tags).toHaveLength(128);
    expect(oneReject(`{"name": "m", "value": 1, "tags": ${tags(65)}}`)).toEqual({ code: 'VIGIL_ERR_LIMIT_TAGS', reason: '"tags": more than limits.maxTagsPerPoint = 64 tags' });
    expect(oneReject(`{"name": "m", "value": 1, "labels": {"${'k'.repeat(257)}": "v"}}`)).toEqual({
      code: 'VIGIL_ERR_LIMIT_TAGS',
      reason: `"labels": tag key "${'k'.repeat(64)}…" is 257 characters, over limits.maxTagKeyLength = 256`,
    });
    expect(oneReject(`{"name": "m", "value": 1, "tags": {"k": "${'v'.repeat(1025)}"}}`)).toEqual({
      code: 'VIGIL_ERR_LIMIT_TAGS',
      reason: '"tags": the value of tag "k" is 1025 characters, over limits.maxTagValueLength = 1024',
    });
    expect(decode('{"name": "m", "value": 1, "tags": {"a": "1", "b": "2"}}', 'auto', { ...CTX, limits: { ...CTX.limits, maxTagsPerPoint: 1 } }).rejects.map((r) => r.code)).toEqual(['VIGIL_ERR_LIMIT_TAGS']);
  });

  it('rejects an unknown or non-string metric type', () => {
    for (const t of ['"histogram"', '"Counter"', '1', 'true']) {
      const r = oneReject(`{"name": "m", "value": 1, "metric_type": ${t}}`);
      expect(r.code).toBe('VIGIL_ERR_DECODE_TYPE');
    }
    expect(oneReject('{"name": "m", "value": 1, "type": "summary"}').reason).toBe('expected "type" to be "gauge", "counter" or "untyped", got the string "summary"');
  });

  it('rejects a bad timestamp and names the key and the value', () => {
    const r = oneReject('{"name": "m", "value": 1, "ts": "yesterday"}');
    expect(r.code).toBe('VIGIL_ERR_DECODE_TIMESTAMP');
    expect(r.reason).toBe('"ts": expected an RFC 3339 date-time (like 2024-01-15T10:30:00Z) or epoch digits, got "yesterday"');
  });

  it('rejects a point without a timestamp when the Kafka timestamp is unusable, also when the keys are null', () => {
    const reason = 'no "timestamp" and the Kafka record timestamp 0 (1970-01-01T00:00:00.000Z) is before 2000-01-01T00:00:00Z';
    for (const body of ['', ', "timestamp": null', ', "ts": null']) {
      expect(decode(`{"name": "m", "value": 1${body}}`, 'auto', { ...CTX, kafkaTimestampMs: 0 }).rejects, body).toEqual([{ code: 'VIGIL_ERR_DECODE_TIMESTAMP', reason }]);
    }
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
