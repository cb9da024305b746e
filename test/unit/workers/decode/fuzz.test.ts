import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../../core/errors.js';
import { mulberry32 } from '../../../../models/random.js';
import { decodeMessage, type Format } from '../../../../workers/decode/index.js';
import { clearSectionCache } from '../../../../workers/decode/influx.js';
import { CTX, decode, NOW } from './collect.js';

/**
 * Fuzz (issue 13): random bytes and mutated valid messages of every format. No exception escapes
 * a decoder, every message yields points or rejects, every reject has a catalogue code, and a
 * line or element reject carries its bytes (or the letter falls back to the whole message).
 */
const CASES = 100_000;
const enc = new TextEncoder();

const SEEDS: Record<Exclude<Format, 'auto'>, string[]> = {
  json: [
    JSON.stringify({ metric_id: 'cpu', value: 1.5, timestamp: NOW, tags: { host: 'a', dc: 'x' }, metric_type: 'gauge' }),
    JSON.stringify([{ name: 'm', value: '2', time: '2024-01-15T10:29:00Z' }, { name: 'n', value: 3, ts: NOW / 1000, labels: { k: 1, b: true } }]),
    JSON.stringify({ metrics: [{ metric_id: 'x', value: 1 }, { metric_id: 'y', value: -1e-3, type: 'counter' }] }),
    `{"name":"a","value":1}\n{"name":"b","value":2,"tags":{"k":"v"}}\n`,
  ],
  prometheus: [JSON.stringify({ name: 'http_requests_total', value: '12', timestamp: '2024-01-15T10:29:00Z', labels: { __name__: 'http_requests_total', job: 'api', code: '' } })],
  influx: [
    `cpu,host=a,dc=x usage=1.5,idle=2i,ok=t ${NOW}000000\n# comment\ndisk\\ io,dev=sd\\,a read=3u ${NOW}000000\n`,
    `mem value=1\r\nmem,host=b used=2.5e3,msg="text \\"q\\"" ${NOW / 1000}\n`,
  ],
};

/** Structural bytes that steer a mutated message into the decoders' rarer branches. */
const SPECIAL = ['{', '}', '[', ']', '"', '\\', ',', '=', ' ', '\n', '\r', ':', '#', '-', '.', 'e', 'i', 'u', 't', 'NaN', '1e999', 'null', '\ufeff', '\u2028', '\ud800', '__name__', '\\u0000'];

function mutate(seed: string, rand: () => number): Uint8Array {
  let s = seed;
  const edits = 1 + Math.floor(rand() * 6);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rand() * (s.length + 1));
    const op = rand();
    if (op < 0.3) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 4));
    else if (op < 0.6) s = s.slice(0, at) + (SPECIAL[Math.floor(rand() * SPECIAL.length)] as string) + s.slice(at);
    else if (op < 0.8) s = s.slice(0, at) + s.slice(Math.floor(rand() * s.length));
    else s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 0x3000)) + s.slice(at);
  }
  const bytes = enc.encode(s);
  // Now and then a raw byte flip, for invalid UTF-8 inside otherwise plausible text.
  if (rand() < 0.1 && bytes.length > 0) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
  return bytes;
}

function randomBytes(rand: () => number): Uint8Array {
  const b = new Uint8Array(Math.floor(rand() * 64));
  for (let i = 0; i < b.length; i++) b[i] = rand() < 0.7 ? 0x20 + Math.floor(rand() * 95) : Math.floor(rand() * 256);
  return b;
}

describe.each(Object.keys(SEEDS) as (keyof typeof SEEDS)[])('decoder fuzz: %s', (format) => {
  it(`${CASES} random and mutated messages: no exception escapes, each yields points or rejects with catalogue codes`, () => {
    const rand = mulberry32(format.length * 7919);
    const seeds = SEEDS[format];
    let points = 0;
    let rejected = 0;
    const codes = new Set<string>();
    for (let i = 0; i < CASES; i++) {
      const bytes = i % 4 === 0 ? randomBytes(rand) : mutate(seeds[i % seeds.length] as string, rand);
      let got = 0;
      const sink = {
        point(metric: string, tags: string[], value: number, tsMs: number) {
          got++;
          if (typeof metric !== 'string' || metric.length === 0 || !Number.isFinite(value) || !Number.isInteger(tsMs) || tags.length % 2 !== 0) {
            throw new Error(`case ${i}: an invalid point came out: ${JSON.stringify({ metric, tags, value, tsMs })}`);
          }
        },
      };
      const rejects = {
        reject(code: string, reason: string, detail: { bytes?: Uint8Array; line?: number; element?: number }) {
          got++;
          rejected++;
          codes.add(code);
          if (!(code in ErrorCodes) || reason.length === 0) throw new Error(`case ${i}: reject ${code} "${reason}"`);
          if (detail.line !== undefined && detail.bytes === undefined) throw new Error(`case ${i}: a line reject without its bytes`);
        },
      };
      try {
        decodeMessage(bytes, 0, bytes.length, format === 'influx' ? 'influx' : format, CTX, { point: (m, t, v, ts) => (sink.point(m, t, v, ts), null) }, rejects);
      } catch (err) {
        throw new Error(`case ${i} (${Buffer.from(bytes).toString('base64')}) threw: ${(err as Error).message}`);
      }
      if (got === 0) throw new Error(`case ${i} (${Buffer.from(bytes).toString('base64')}) yielded neither points nor rejects`);
      points += got;
    }
    // The mutations reach both outcomes and several codes (a fuzzer that only hits one branch proves little).
    expect(rejected).toBeGreaterThan(CASES / 4);
    expect(points - rejected).toBeGreaterThan(CASES / 20);
    expect(codes.size).toBeGreaterThanOrEqual(format === 'influx' ? 5 : 7);
  }, 120_000);
});

describe('influx series-section cache', () => {
  it('decodes 20,000 mutated messages alike cold (cache cleared) and warm (their sections cached), points, tags and rejects', () => {
    const rand = mulberry32(4242);
    let cachedPoints = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = mutate(SEEDS.influx[i % SEEDS.influx.length] as string, rand);
      clearSectionCache();
      const cold = decode(bytes, 'influx');
      const warm = decode(bytes, 'influx');
      expect(warm, `case ${i} (${Buffer.from(bytes).toString('base64')})`).toEqual(cold);
      cachedPoints += warm.points.length;
    }
    expect(cachedPoints).toBeGreaterThan(20_000);
  });

  it('checks the limits again on a cached section: a task with lower limits rejects it as a cold decoder would', () => {
    clearSectionCache();
    const line = `cpu,host=a,dc=${'x'.repeat(40)} v=1 ${String(NOW)}`;
    expect(decode(line, 'influx').points).toHaveLength(1);
    for (const limits of [{ maxTagsPerPoint: 1 }, { maxTagKeyLength: 3 }, { maxTagValueLength: 39 }]) {
      const ctx = { ...CTX, limits: { ...CTX.limits, ...limits } };
      const warm = decode(line, 'influx', ctx);
      clearSectionCache();
      const cold = decode(line, 'influx', ctx);
      expect(warm.points).toEqual([]);
      expect(warm.rejects.map((r) => r.code)).toEqual(['VIGIL_ERR_LIMIT_TAGS']);
      expect(warm).toEqual(cold);
      expect(decode(line, 'influx').points).toHaveLength(1);
    }
  });
});
