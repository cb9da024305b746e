import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RuleEvaluator } from '../workers/alerts/evaluator.js';
import type { ClosedBucket } from '../workers/rollup.js';

/**
 * `npm run bench:rules`: rule evaluation cost in a shard thread — N rules over M series, each
 * series closing one bucket per round, as ns per closed bucket and per (rule, series) check,
 * against a baseline round of the same buckets with no rule matching (the matching cost alone).
 * Options: --rules N (1000) --series M (10000) --rounds R (20).
 */
function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const rules = arg('rules', 1000);
const series = arg('series', 10_000);
const rounds = arg('rounds', 20);
const W = 60_000;

// Rules spread over 100 metrics (a tenth of them patterned), the four kinds mixed: each series'
// metric is matched by rules / 100 rules.
function rulesText(metricPrefix: string): string {
  const lines = ['rules:'];
  for (let r = 0; r < rules; r++) {
    const metric = r % 10 === 9 ? `"${metricPrefix}${r % 100}*"` : `${metricPrefix}${r % 100}`;
    const kind = ['threshold', 'rate', 'threshold', 'absent'][r % 4];
    lines.push(`  - id: r${r}`, `    kind: ${kind}`, `    metric: ${metric}`);
    if (kind === 'threshold') lines.push(`    op: ">"`, `    value: ${90 + (r % 7)}`, `    for: 5m`);
    if (kind === 'rate') lines.push(`    op: ">"`, `    value: 1000`, `    window: 5m`, `    aggregate: sum`);
    if (kind === 'absent') lines.push(`    for: 10m`);
  }
  return lines.join('\n') + '\n';
}

function run(text: string): { nsPerBucket: number; checks: number } {
  const e = new RuleEvaluator();
  e.configure({ hash: text.length.toString(), text, file: 'bench.yaml', active: null });
  const buckets: ClosedBucket[] = Array.from({ length: series }, (_, i) => ({
    seriesId: BigInt(i + 1),
    series: { metric: `m${i % 100}`, tags: ['host', `h${i}`], tenant: '', type: 0 },
    widthMs: W,
    startMs: 0,
    count: 6,
    sum: 300,
    min: 40,
    max: 60,
    last: 50,
    lastTsMs: 0,
    sumsq: 15000,
    baseOffset: 0,
    baseMaxBeforeMs: 0,
    closed: true,
    evicted: false,
    topic: 't',
    partition: 0,
  })) as unknown as ClosedBucket[];
  // Round 0 matches rules to series (once per series); the timed rounds only evaluate.
  for (const b of buckets) e.onBucket(b, null);
  e.take();
  const t0 = process.hrtime.bigint();
  for (let r = 1; r <= rounds; r++) {
    for (const b of buckets) {
      (b as { startMs: number }).startMs = r * W;
      e.onBucket(b, null);
    }
    e.checkAbsent('t', 0, (r + 1) * W, r * 2000);
    e.take();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  return { nsPerBucket: ns / (rounds * series), checks: rounds * series * (rules / 100) };
}

const baseline = run(rulesText('nomatch'));
const measured = run(rulesText('m'));
const result = {
  rules,
  series,
  rounds,
  rulesPerSeries: rules / 100,
  nsPerBucketNoMatch: Math.round(baseline.nsPerBucket),
  nsPerBucket: Math.round(measured.nsPerBucket),
  nsPerRuleCheck: Math.round((measured.nsPerBucket * series * rounds) / measured.checks),
  ratioToNoMatch: +(measured.nsPerBucket / baseline.nsPerBucket).toFixed(1),
  bucketsPerSecondPerThread: Math.round(1e9 / measured.nsPerBucket),
};
console.log(JSON.stringify(result, null, 2));
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(join('bench', 'results', `rules-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`), JSON.stringify(result, null, 2));
