import { parseArgs } from 'node:util';
import { loadConfig } from '../core/config/index.js';
import { encode, makeSeries, type GenFormat, type Point } from './generator.js';
import { ingest } from '../workers/ingest.js';
import type { IngestTask } from '../workers/ingest-task.js';

/**
 * `npm run bench:worker` (issue 15): CPU per point of one ingest task in this thread, without
 * Kafka, the pool or ClickHouse: decoding, series ids, the points' RowBinary and the shards'
 * shares, as a worker does them. The generator's series (1,000) in each format at 1 and 100
 * points per message; runs `--runs` times (default 10) after 3 warm-ups and prints CPU and wall
 * time per point. `--cpu-prof` on node gives the profile of exactly this work.
 */
const { values } = parseArgs({ options: { runs: { type: 'string' }, points: { type: 'string' } } });
const runs = Number(values.runs ?? 10);
const pointsPerTask = Number(values.points ?? 200_000);
const config = loadConfig({ env: {} });

function task(format: GenFormat, pointsPerMessage: number): IngestTask {
  const series = makeSeries(1000);
  const t0 = Date.now() - 3_600_000;
  const messages: Buffer[] = [];
  for (let k = 0; k < pointsPerTask; ) {
    const points: Point[] = [];
    for (let j = 0; j < pointsPerMessage; j++, k++) points.push({ series: series[k % series.length] as Point['series'], value: 40 + (k % 97) / 10, tsMs: t0 + Math.floor(k / series.length) * 1000 });
    messages.push(Buffer.from(encode(points, format)));
  }
  const bounds = new Uint32Array(messages.length * 2);
  let at = 0;
  messages.forEach((m, i) => {
    bounds[2 * i] = at;
    at += m.length;
    bounds[2 * i + 1] = at;
  });
  return {
    topic: 'bench',
    partition: 0,
    format: format === 'ndjson' ? 'json' : format,
    data: Buffer.concat(messages),
    bounds,
    offsets: Float64Array.from(messages, (_, i) => i),
    timestamps: Float64Array.from(messages, () => Date.now()),
    nowMs: Date.now(),
    maxFutureMs: config.pipeline.maxFutureMs,
    limits: config.limits,
    watermarkMaxAheadMs: config.pipeline.watermarkMaxAheadMs,
    compression: 'none',
    shards: config.pipeline.workers,
    storeFromOffset: 0,
    pointsAfter: [-1, -1],
    repartitions: 1,
    forward: null,
    tenancy: null,
  };
}

console.log('| workload | CPU µs per point | wall µs per point |\n|---|---|---|');
for (const [format, ppm] of [['json', 1], ['ndjson', 100], ['influx', 1], ['influx', 100]] as const) {
  const t = task(format, ppm);
  const points = ingest(t).rows;
  for (let i = 0; i < 3; i++) ingest(t);
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  for (let i = 0; i < runs; i++) if (ingest(t).rows !== points) throw new Error('a run stored another number of rows');
  const cpu = process.cpuUsage(cpu0);
  const per = runs * points;
  console.log(`| ${format}, ${ppm} pt/msg | ${((cpu.user + cpu.system) / per).toFixed(2)} | ${(((performance.now() - wall0) * 1000) / per).toFixed(2)} |`);
}
