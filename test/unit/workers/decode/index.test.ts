import { describe, it, expect } from 'vitest';
import { MetricType, decodeMessage } from '../../../../workers/decode/index.js';
import type { Format } from '../../../../workers/decode/index.js';
import { CTX, bytesOf, decode, oneReject, onePoint } from './collect.js';

const BOM = [0xef, 0xbb, 0xbf];

function concat(...parts: (number[] | Uint8Array)[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

describe('public surface', () => {
  it('exposes metric types as small integers', () => {
    expect(MetricType).toEqual({ gauge: 0, counter: 1 });
  });
});

describe('UTF-8', () => {
  it('rejects invalid UTF-8 as a whole message and names the byte offset', () => {
    const r = oneReject(Uint8Array.from([0xc3, 0x28]));
    expect(r.code).toBe('VIGIL_ERR_DECODE_UTF8');
    expect(r.bytes).toBeUndefined();
    expect(r.reason).toBe('message is not valid UTF-8: invalid sequence at byte offset 0 (0xC3)');
  });

  it('finds the offset of a bad sequence later in the message', () => {
    expect(oneReject(concat(bytesOf('cpu v=1 # é'), [0xff])).reason).toBe('message is not valid UTF-8: invalid sequence at byte offset 12 (0xFF)');
    // a surrogate
    expect(oneReject(concat(bytesOf('{"name":"'), [0xed, 0xa0, 0x80], bytesOf('"}'))).reason).toBe(
      'message is not valid UTF-8: invalid sequence at byte offset 9 (0xED)',
    );
    // overlong "/"
    expect(oneReject(concat(bytesOf('{"name":"'), [0xc0, 0xaf], bytesOf('"}'))).reason).toBe(
      'message is not valid UTF-8: invalid sequence at byte offset 9 (0xC0)',
    );
    // truncated
    expect(oneReject(concat(bytesOf('m v=1 '), [0xe2, 0x82])).reason).toBe('message is not valid UTF-8: invalid sequence at byte offset 6 (0xE2)');
  });

  it('accepts valid multi-byte UTF-8', () => {
    expect(onePoint('{"name": "température.°C", "value": 1, "tags": {"ville": "Zürich 🇨🇭"}}').tags).toEqual([
      'ville',
      'Zürich 🇨🇭',
    ]);
  });
});

describe('empty messages', () => {
  it('rejects an empty message', () => {
    const r = oneReject(new Uint8Array(0));
    expect(r).toEqual({ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message is empty' });
  });

  it('rejects whitespace-only messages in every format', () => {
    for (const format of ['auto', 'json', 'influx', 'prometheus'] as Format[]) {
      expect(oneReject(' \n\t\r\n ', format)).toEqual({ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message contains only whitespace' });
    }
  });

  it('rejects a message holding only a BOM and whitespace', () => {
    const reject = { code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message contains only a byte order mark and whitespace' };
    expect(oneReject(Uint8Array.from(BOM))).toEqual(reject);
    expect(oneReject(concat(BOM, bytesOf(' \n')))).toEqual(reject);
  });

  it('rejects a well-formed message without points (every message yields points or a dead letter)', () => {
    expect(decode('[]')).toEqual({ points: [], rejects: [{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'the array has no elements' }] });
    expect(decode('{"metrics": []}')).toEqual({ points: [], rejects: [{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'the array has no elements' }] });
    expect(decode('# only a comment\n\n  # another\n')).toEqual({ points: [], rejects: [{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message contains only blank and comment lines' }] });
  });
});

describe('byte order mark', () => {
  it('skips a leading BOM before JSON', () => {
    expect(onePoint(concat(BOM, bytesOf('{"name": "m", "value": 1}'))).metric).toBe('m');
    expect(onePoint(concat(BOM, bytesOf('\n{"name": "m", "value": 1}'))).metric).toBe('m');
  });

  it('skips a leading BOM before line protocol, keeping line numbers and excluding it from line bytes', () => {
    expect(onePoint(concat(BOM, bytesOf('cpu value=1'))).metric).toBe('cpu');
    const r = oneReject(concat(BOM, bytesOf('cpu')));
    expect(r.line).toBe(1);
    expect(r.bytes).toEqual(bytesOf('cpu'));
  });

  it('rejects JSON with a BOM that is not at the start', () => {
    expect(oneReject(bytesOf('{"name": "m", "value": 1}\uFEFF')).code).toBe('VIGIL_ERR_DECODE_JSON');
  });
});

describe('format detection', () => {
  it('sends { and [ (after blanks) to the JSON decoder and anything else to line protocol', () => {
    expect(onePoint('  \n {"name": "m", "value": 1}').metric).toBe('m');
    expect(onePoint('\t[{"name": "m", "value": 1}]').metric).toBe('m');
    expect(onePoint('m value=1').metric).toBe('m');
    // Not JSON, so line protocol, which reports it as a bad line rather than bad JSON.
    expect(oneReject('"just a string"').code).toBe('VIGIL_ERR_DECODE_LINE_PROTOCOL');
  });

  it('uses the fixed decoder when the format is not auto', () => {
    expect(oneReject('{"name": "m", "value": 1}', 'influx').code).toBe('VIGIL_ERR_DECODE_LINE_PROTOCOL');
    expect(oneReject('m value=1', 'json').code).toBe('VIGIL_ERR_DECODE_JSON');
    expect(oneReject('m value=1', 'prometheus').code).toBe('VIGIL_ERR_DECODE_JSON');
  });
});

describe('decodeMessage(bytes, start, end)', () => {
  it('decodes only the slice of a larger buffer', () => {
    const before = bytesOf('garbage\xff{"name": "nope", "value": 9}\n');
    const message = bytesOf('cpu,host=a value=1\nbad line\nmem free=2');
    const after = concat([0xc3, 0x28], bytesOf('\nother value=3'));
    const buf = concat(before, message, after);
    const { points, rejects } = decode(buf, 'auto', CTX, before.length, before.length + message.length);
    expect(points.map((p) => [p.metric, p.value, p.pointIndex])).toEqual([
      ['cpu', 1, 0],
      ['mem.free', 2, 2],
    ]);
    expect(rejects).toEqual([expect.objectContaining({ line: 2, text: 'bad line' })]);
  });

  it('reports UTF-8 offsets relative to the slice, and an empty slice as empty', () => {
    const buf = concat(bytesOf('xxxx'), bytesOf('m v='), [0xff], bytesOf('yyyy'));
    expect(decode(buf, 'auto', CTX, 4, 9)).toEqual({
      points: [],
      rejects: [{ code: 'VIGIL_ERR_DECODE_UTF8', reason: 'message is not valid UTF-8: invalid sequence at byte offset 4 (0xFF)' }],
    });
    expect(decode(buf, 'auto', CTX, 3, 3).rejects).toEqual([{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message is empty' }]);
  });

  it('looks for content only inside the slice', () => {
    // Blanks inside the slice, more blanks and then content after it.
    const buf = bytesOf('  \t  x value=1');
    expect(decode(buf, 'auto', CTX, 0, 2).rejects).toEqual([{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message contains only whitespace' }]);
    expect(decode(buf, 'auto', CTX, 1, 4).rejects).toEqual([{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message contains only whitespace' }]);
  });

  it('clamps a start or end outside the buffer', () => {
    const buf = bytesOf('m value=1');
    expect(decode(buf, 'auto', CTX, -5, 100).points).toEqual([expect.objectContaining({ metric: 'm', value: 1 })]);
    expect(decode(buf, 'auto', CTX, 5, 2).rejects).toEqual([{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message is empty' }]);
    expect(decode(buf, 'auto', CTX, 20, 30).rejects).toEqual([{ code: 'VIGIL_ERR_DECODE_EMPTY', reason: 'message is empty' }]);
  });
});

describe('robustness', () => {
  it('never throws, whatever the bytes, and emits only well-formed points', () => {
    // Deterministic xorshift so a failure reproduces.
    let seed = 0x9e3779b9;
    const rand = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const seeds = [
      'cpu,host=a\\ b,r=x usage=1.5,idle=2i,ok=t,msg="a \\"b\\"" 1705314600000000000\n# c\nm v=1u',
      '[{"name":"a","value":"1.5","labels":{"__name__":"a_total","job":"x"},"timestamp":"2024-01-15T10:30:00.123Z"}]',
      '{"metrics":[{"metric_id":"m","value":1,"ts":1705314600,"tags":{"k":"v"}}]}\n{"name":"b","value":2}',
    ].map(bytesOf);
    const alphabet = bytesOf(' ,="\\\n\r{}[]:0123456789.eEi-+tuTF#abc');
    const formats: Format[] = ['auto', 'json', 'influx', 'prometheus'];
    let points = 0;
    for (let round = 0; round < 3000; round++) {
      const base = seeds[round % seeds.length] as Uint8Array;
      const bytes = Uint8Array.from(base);
      for (let k = 0, edits = 1 + rand(6); k < edits; k++) {
        bytes[rand(bytes.length)] = rand(4) === 0 ? rand(256) : (alphabet[rand(alphabet.length)] ?? 0);
      }
      const start = rand(4);
      const end = bytes.length - rand(4);
      expect(() =>
        decodeMessage(bytes, start, end, formats[round % 4] as Format, CTX, {
          point(metric, tags, value, tsMs, type, pointIndex) {
            points++;
            if (metric.length === 0 || tags.length % 2 !== 0 || !Number.isFinite(value) || !Number.isInteger(tsMs) || (type !== 0 && type !== 1) || !Number.isInteger(pointIndex)) {
              throw new Error(`malformed point ${JSON.stringify([metric, tags, value, tsMs, type, pointIndex])}`);
            }
            return null;
          },
        }, { reject() {} }),
      ).not.toThrow();
    }
    expect(points).toBeGreaterThan(100); // the mutations still leave many valid points
  });
});
