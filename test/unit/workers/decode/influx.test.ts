import { describe, it, expect } from 'vitest';
import { MetricType } from '../../../../workers/decode/index.js';
import { CTX, NOW, bytesOf, decode, oneReject, onePoint } from './collect.js';

const T0 = Date.UTC(2024, 0, 15, 10, 30); // 1705314600000
const NS = '1705314600000000000';

describe('Influx line protocol: points', () => {
  it('turns each numeric field into a gauge with consecutive point indexes and shared tags', () => {
    const { points, rejects } = decode(`cpu,host=a,region=eu value=0.5,idle=98.5,user=1.5 ${NS}`);
    expect(rejects).toEqual([]);
    expect(points).toEqual([
      { metric: 'cpu', tags: ['host', 'a', 'region', 'eu'], value: 0.5, tsMs: T0, type: MetricType.gauge, pointIndex: 0 },
      { metric: 'cpu.idle', tags: ['host', 'a', 'region', 'eu'], value: 98.5, tsMs: T0, type: MetricType.gauge, pointIndex: 1 },
      { metric: 'cpu.user', tags: ['host', 'a', 'region', 'eu'], value: 1.5, tsMs: T0, type: MetricType.gauge, pointIndex: 2 },
    ]);
  });

  it('keeps tags in input order (not sorted)', () => {
    expect(onePoint(`m,z=1,a=2 v=1 ${NS}`).tags).toEqual(['z', '1', 'a', '2']);
  });

  it('continues point indexes across lines', () => {
    const { points } = decode(`a x=1,y=2 ${NS}\nb z=3 ${NS}`);
    expect(points.map((p) => [p.metric, p.pointIndex])).toEqual([
      ['a.x', 0],
      ['a.y', 1],
      ['b.z', 2],
    ]);
  });

  it('reads floats, integers, unsigned integers and every boolean spelling', () => {
    const line = 'm a=1,b=1.5,c=-1e3,d=1.5E+2,e=.5,f=12i,g=-12i,h=12u,i=9223372036854775807i,j=18446744073709551615u';
    const { points, rejects } = decode(line);
    expect(rejects).toEqual([]);
    expect(points.map((p) => [p.metric, p.value])).toEqual([
      ['m.a', 1],
      ['m.b', 1.5],
      ['m.c', -1000],
      ['m.d', 150],
      ['m.e', 0.5],
      ['m.f', 12],
      ['m.g', -12],
      ['m.h', 12],
      ['m.i', 2 ** 63], // the nearest float64
      ['m.j', 2 ** 64],
    ]);
    const bools = decode('m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE');
    expect(bools.rejects).toEqual([]);
    expect(bools.points.map((p) => p.value)).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
  });

  it('skips string fields when the line has another field, without spending a point index', () => {
    const { points, rejects } = decode('m msg="hello, world = x",v=1,note="a b" 1705314600');
    expect(rejects).toEqual([]);
    expect(points).toEqual([expect.objectContaining({ metric: 'm.v', value: 1, pointIndex: 0, tsMs: T0 })]);
  });

  it('unescapes measurement, tag keys, tag values and field keys', () => {
    const p = onePoint('my\\ meas\\,ure,tag\\ k\\,e\\=y=v\\ a\\,l\\=ue fi\\ e\\,l\\=d=1');
    expect(p.metric).toBe('my meas,ure.fi e,l=d');
    expect(p.tags).toEqual(['tag k,e=y', 'v a,l=ue']);
  });

  it('handles escapes in string field values without ending the string early', () => {
    const p = onePoint('m s="say \\"hi\\", x=1 \\\\",v=2');
    expect(p).toMatchObject({ metric: 'm.v', value: 2 });
  });

  it('keeps other backslashes literal, and reads a double backslash as one', () => {
    expect(onePoint('dir\\path,k=a\\b value=1').metric).toBe('dir\\path');
    expect(onePoint('dir\\path,k=a\\b v=1').tags).toEqual(['k', 'a\\b']);
    expect(onePoint('m,k=a\\\\ v=1').tags).toEqual(['k', 'a\\']);
    expect(onePoint('m\\=x value=1').metric).toBe('m\\=x'); // "=" needs no escape in a measurement
  });

  it('skips leading spaces and tabs, so indented, tab-only and tab-indented comment lines are fine', () => {
    const { points, rejects } = decode('\t# a comment\n \t \n\t m v=1');
    expect(rejects).toEqual([]);
    expect(points).toEqual([expect.objectContaining({ metric: 'm.v', tags: [], value: 1 })]);
  });

  it('reads "=" in a measurement as part of its name, as the reference allows', () => {
    expect(onePoint('a=b value=1').metric).toBe('a=b');
  });

  it('skips comment and blank lines, and counts them in line numbers', () => {
    const { points, rejects } = decode(`# a comment\n\n   \n  # indented comment\nm v=1 ${NS}\n\nbad\n`);
    expect(points).toEqual([expect.objectContaining({ metric: 'm.v', pointIndex: 0 })]);
    expect(rejects).toEqual([expect.objectContaining({ code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL', line: 7, text: 'bad' })]);
  });

  it('accepts CRLF line ends, and reports a bad line without its CR', () => {
    const { points, rejects } = decode(`a v=1 ${NS}\r\nb v=oops ${NS}\r\nc v=3 ${NS}\r\n`);
    expect(points.map((p) => [p.metric, p.value, p.pointIndex])).toEqual([
      ['a.v', 1, 0],
      ['c.v', 3, 2],
    ]);
    expect(rejects).toEqual([expect.objectContaining({ code: 'VIGIL_ERR_DECODE_VALUE', line: 2, text: `b v=oops ${NS}` })]);
  });

  it('reads timestamps in s, ms, µs and ns, and uses the Kafka timestamp when there is none', () => {
    expect(onePoint('m v=1 1705314600').tsMs).toBe(T0);
    expect(onePoint('m v=1 1705314600123').tsMs).toBe(T0 + 123);
    expect(onePoint('m v=1 1705314600123456').tsMs).toBe(T0 + 123);
    expect(onePoint('m v=1 1705314600123999999').tsMs).toBe(T0 + 123);
    expect(onePoint('m v=1').tsMs).toBe(CTX.kafkaTimestampMs);
    expect(onePoint('m v=1   ').tsMs).toBe(CTX.kafkaTimestampMs);
  });

  it('decodes multi-byte characters and reports them exactly in a rejected line', () => {
    expect(onePoint('temp,room=küche\\ 🌡 v=21.5').tags).toEqual(['room', 'küche 🌡']);
    const bad = 'temp,room=küche 🌡=x';
    const r = oneReject(bad);
    expect(r.bytes).toEqual(bytesOf(bad));
  });
});

describe('Influx line protocol: rejects', () => {
  it('rejects only the bad lines of a message, with their bytes, line numbers and offsets', () => {
    const lines = [`ok1 v=1 ${NS}`, `cpu,host=a usage=1 ${NS} extra`, `ok2 v=2 ${NS}`, 'cpu,host=a,host=b v=1', `ok3 v=3 ${NS}`];
    const { points, rejects } = decode(lines.join('\n'));
    expect(points.map((p) => [p.metric, p.pointIndex])).toEqual([
      ['ok1.v', 0],
      ['ok2.v', 2],
      ['ok3.v', 4],
    ]);
    expect(rejects).toEqual([
      expect.objectContaining({ code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL', line: 2, text: lines[1] }),
      expect.objectContaining({ code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL', line: 4, text: lines[3] }),
    ]);
    expect(rejects[0]?.reason).toBe('line 2, offset 39: expected the end of the line after the timestamp');
    expect(rejects[1]?.reason).toBe('line 4, offset 11: expected tag keys to be unique, "host" repeats');
  });

  it('rejects lines with no field set', () => {
    const cases: [string, string][] = [
      ['cpu', 'line 1, offset 3: expected a space and a field set (key=value) after the measurement'],
      ['cpu,host=a', 'line 1, offset 10: expected a space and a field set (key=value) after the measurement'],
      ['cpu ', 'line 1, offset 4: expected a field set (key=value)'],
      ['cpu,host=a ', 'line 1, offset 11: expected a field set (key=value)'],
      ['cpu  ', 'line 1, offset 5: expected a field set (key=value)'],
    ];
    for (const [line, reason] of cases) {
      expect(oneReject(line), line).toEqual({ code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL', reason, text: line, bytes: bytesOf(line), line: 1 });
    }
  });

  it('rejects malformed tags and fields', () => {
    const cases: [string, string][] = [
      ['cpu,=a v=1', 'offset 4: expected a tag key after ","'],
      ['cpu,host v=1', 'offset 8: expected "=" after tag key "host"'],
      ['cpu,host= v=1', 'offset 9: expected a value for tag "host"'],
      ['cpu,host=a=b v=1', 'offset 10: expected "=" in the value of tag "host" to be escaped as "\\="'],
      ['cpu, v=1', 'offset 4: expected a tag key after ","'],
      ['cpu =1', 'offset 4: expected a field key'],
      ['cpu v', 'offset 5: expected "=" after field key "v"'],
      ['cpu v=', 'offset 6: expected a value for field "v"'],
      ['cpu v=,w=1', 'offset 6: expected a value for field "v"'],
      ['cpu v=1,', 'offset 8: expected a field key'],
      ['cpu s="unterminated', 'offset 6: expected a closing \'"\' for the string value of field "s"'],
      ['cpu s="a\\"', 'offset 6: expected a closing \'"\' for the string value of field "s"'],
      ['cpu s="a"x,v=1', 'offset 9: expected "," or a space after the closing \'"\''],
    ];
    for (const [line, why] of cases) {
      expect(oneReject(line), line).toEqual({ code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL', reason: `line 1, ${why}`, text: line, bytes: bytesOf(line), line: 1 });
    }
  });

  it('ends a name cut by a backslash at the end of its line, not in the next line', () => {
    const { points, rejects } = decode('cpu,k\\\nm v=1');
    expect(points).toEqual([expect.objectContaining({ metric: 'm.v', pointIndex: 1 })]);
    expect(rejects).toEqual([
      { code: 'VIGIL_ERR_DECODE_LINE_PROTOCOL', reason: 'line 1, offset 6: expected "=" after tag key "k\\\\"', text: 'cpu,k\\', bytes: bytesOf('cpu,k\\'), line: 1 },
    ]);
  });

  it('rejects bad field values, NaN and infinities with VIGIL_ERR_DECODE_VALUE', () => {
    for (const v of ['NaN', 'nan', 'Inf', '+Inf', '-inf', 'Infinity', '1e999', '1.2.3', '0x10', 'abc', 'yes', '1.5i', '1_000', '-1u', '9223372036854775808i', '-9223372036854775809i', '18446744073709551616u', 'i', '"x"y']) {
      const r = oneReject(`m v=${v}`);
      expect(r.code, v).toBe(v === '"x"y' ? 'VIGIL_ERR_DECODE_LINE_PROTOCOL' : 'VIGIL_ERR_DECODE_VALUE');
      expect(r.reason, v).toMatch(/^line 1, offset \d+: /);
    }
    expect(onePoint('m v=-9223372036854775808i').value).toBe(-9223372036854775808);
  });

  it('names the field and the value in a bad value reason, and rejects the whole line for it', () => {
    const unreadable = 'expected field "v" to be a float (1.5), integer (1i), unsigned (1u), boolean or "string", got';
    expect(oneReject('m v=abc,w=1').reason).toBe(`line 1, offset 4: ${unreadable} "abc"`);
    expect(oneReject('m w=1,v=2x').reason).toBe(`line 1, offset 8: ${unreadable} "2x"`);
    expect(oneReject('m v=1e999,w=1').reason).toBe('line 1, offset 4: expected field "v" to be within the float64 range, got "1e999"');
    expect(oneReject('m v=-1e999').reason).toBe('line 1, offset 4: expected field "v" to be within the float64 range, got "-1e999"');
  });

  it('checks integer range by significant digits, ignoring leading zeros', () => {
    expect(onePoint('m v=99i').value).toBe(99); // shorter than the limit, though "99" > "92..." as text
    expect(onePoint('m v=0000000000000000000001i').value).toBe(1); // 22 digits, 1 significant
    expect(onePoint('m v=00018446744073709551615u').value).toBe(2 ** 64);
    expect(onePoint('m v=-0009223372036854775808i').value).toBe(-(2 ** 63));
    expect(onePoint('m v=0i').value).toBe(0);
    expect(onePoint('m v=000u').value).toBe(0);
    expect(oneReject('m v=100000000000000000000u').code).toBe('VIGIL_ERR_DECODE_VALUE'); // 21 digits
    expect(oneReject('m v=10000000000000000000i').code).toBe('VIGIL_ERR_DECODE_VALUE'); // 20 digits
  });

  it('rejects a line with only string fields', () => {
    const r = oneReject('m msg="hello",other="x"');
    expect(r.code).toBe('VIGIL_ERR_DECODE_VALUE');
    expect(r.reason).toBe('line 1, offset 2: expected at least one numeric or boolean field; string fields are not points');
  });

  it('rejects a missing measurement, and a name past limits.maxMetricNameLength', () => {
    expect(oneReject(',host=a v=1')).toMatchObject({ code: 'VIGIL_ERR_DECODE_NAME', reason: 'line 1, offset 0: expected a measurement name' });
    expect(oneReject(`${'m'.repeat(1020)} field=1`)).toMatchObject({
      code: 'VIGIL_ERR_LIMIT_NAME',
      reason: 'line 1, offset 1021: the metric name is 1026 characters, over limits.maxMetricNameLength = 1024',
    });
    expect(onePoint(`${'m'.repeat(1020)} abc=1`).metric).toHaveLength(1024);
  });

  it('rejects more than limits.maxTagsPerPoint tags, and tag keys or values past their length limits', () => {
    const tags = (n: number): string => Array.from({ length: n }, (_, i) => `k${String(i)}=v`).join(',');
    expect(onePoint(`m,${tags(64)} v=1`).tags).toHaveLength(128);
    expect(oneReject(`m,${tags(65)} v=1`)).toMatchObject({ code: 'VIGIL_ERR_LIMIT_TAGS', reason: 'line 1, offset 376: more than limits.maxTagsPerPoint = 64 tags' }); // at the 65th key
    expect(onePoint(`m,${'k'.repeat(256)}=${'v'.repeat(1024)} v=1`).tags).toEqual(['k'.repeat(256), 'v'.repeat(1024)]);
    expect(oneReject(`m,${'k'.repeat(257)}=v v=1`)).toMatchObject({
      code: 'VIGIL_ERR_LIMIT_TAGS',
      reason: `line 1, offset 2: tag key "${'k'.repeat(64)}…" is 257 characters, over limits.maxTagKeyLength = 256`,
    });
    expect(oneReject(`m,k=${'v'.repeat(1025)} v=1`)).toMatchObject({ code: 'VIGIL_ERR_LIMIT_TAGS', reason: 'line 1, offset 2: the value of tag "k" is 1025 characters, over limits.maxTagValueLength = 1024' });
  });

  it('rejects a line with more than limits.maxFieldsPerLine numeric fields (each would be a series); string fields do not count', () => {
    const fields = (n: number): string => Array.from({ length: n }, (_, i) => `f${String(i)}=1`).join(',');
    expect(decode(`m ${fields(256)},s="text"`).points).toHaveLength(256);
    const r = oneReject(`m ${fields(257)}`);
    expect(r.code).toBe('VIGIL_ERR_LIMIT_FIELDS');
    expect(r.reason).toMatch(/^line 1, offset \d+: more than limits.maxFieldsPerLine = 256 numeric or boolean fields$/);
    // A tighter limit from the context.
    expect(decode('m a=1,b=2,c=3', 'auto', { ...CTX, limits: { ...CTX.limits, maxFieldsPerLine: 2 } }).rejects.map((x) => x.code)).toEqual(['VIGIL_ERR_LIMIT_FIELDS']);
  });

  it('rejects non-integer and out-of-range timestamps', () => {
    for (const ts of ['1705314600.5', 'abc', '1e9', '17053146OO']) {
      const r = oneReject(`m v=1 ${ts}`);
      expect(r.code, ts).toBe('VIGIL_ERR_DECODE_TIMESTAMP');
      expect(r.reason).toBe(`line 1, offset 6: expected an integer epoch timestamp after the field set, got "${ts}"`);
    }
    for (const ts of ['0', '-1705314600', '32503680000', String(NOW + CTX.maxFutureMs + 1)]) {
      const r = oneReject(`m v=1 ${ts}`);
      expect(r.code, ts).toBe('VIGIL_ERR_DECODE_TIMESTAMP');
      expect(r.reason).toMatch(new RegExp(`^line 1, offset 6: timestamp ${ts} `));
    }
  });

  it('names the timestamp without trailing spaces in a range reject', () => {
    expect(oneReject('m v=1 0   ').reason).toBe('line 1, offset 6: timestamp 0 (1970-01-01T00:00:00.000Z) is before 2000-01-01T00:00:00Z');
  });

  it('rejects a line without a timestamp when the Kafka timestamp is unusable, naming the line only', () => {
    const { points, rejects } = decode(`m v=1 1705314600\nm v=2`, 'auto', { ...CTX, kafkaTimestampMs: 0 });
    expect(points).toEqual([expect.objectContaining({ metric: 'm.v', value: 1, pointIndex: 0 })]);
    expect(rejects).toEqual([
      {
        code: 'VIGIL_ERR_DECODE_TIMESTAMP',
        reason: 'line 2: no timestamp and the Kafka record timestamp 0 (1970-01-01T00:00:00.000Z) is before 2000-01-01T00:00:00Z',
        text: 'm v=2',
        bytes: bytesOf('m v=2'),
        line: 2,
      },
    ]);
  });

  it('keeps later point indexes stable when a line is rejected for its clock-dependent timestamp', () => {
    const future = String(NOW + 3_600_000); // an hour ahead: too far now, fine an hour later
    const message = `a x=1 ${NS}\nb x=1,y=2,z=3 ${future}\nbroken\nc x=1 ${NS}`;
    const now = decode(message);
    expect(now.points.map((p) => [p.metric, p.pointIndex])).toEqual([
      ['a.x', 0],
      ['c.x', 5],
    ]);
    expect(now.rejects.map((r) => [r.code, r.line])).toEqual([
      ['VIGIL_ERR_DECODE_TIMESTAMP', 2],
      ['VIGIL_ERR_DECODE_LINE_PROTOCOL', 3],
    ]);
    const later = decode(message, 'auto', { ...CTX, nowMs: NOW + 3_600_000 });
    expect(later.points.map((p) => [p.metric, p.pointIndex])).toEqual([
      ['a.x', 0],
      ['b.x', 1],
      ['b.y', 2],
      ['b.z', 3],
      ['c.x', 5],
    ]);
  });

  it('gives the same points and rejects for the same bytes', () => {
    const message = `a x=1,y=2 ${NS}\nbad\nb v=1\n{"not": "influx"}`;
    expect(decode(message)).toEqual(decode(message));
  });
});
