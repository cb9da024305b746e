import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_ENSEMBLE, Ensemble } from '../models/ensemble.js';
import { mulberry32 } from '../models/random.js';
import { groupOnsets, type Onset } from '../sinks/clickhouse/incidents.js';
import { defaultLabelledOptions, labelledWorkload } from './anomalies.js';
import { injectIncidents, scoreGrouping } from './grouping.js';

/**
 * Incident grouping quality (issue 17): the labelled synthetic workload (each series with its own
 * independent anomalies), plus correlated incidents injected across series — at one moment a few
 * series shift together, each up to `--lag` buckets after the first, for half an hour. Every
 * series is scored bucket by bucket by the ensemble as a shard scores it; its onsets are grouped
 * into incidents as the pipeline groups them (sinks/clickhouse/incidents.ts), at
 * `--window` seconds. Reported per seed: of the injected incidents whose series were flagged,
 * the share grouped right (every flagged member in one incident), the members' share of that
 * incident (purity: how much unrelated noise joined), and the share of the other onsets (the
 * workload's own anomalies and false alarms) that share an incident with another series. The
 * workload places each series' k-th anomaly in the same few hours as every other series' k-th, so
 * some of those meet by construction.
 *
 * `npm run bench:incidents -- [--seeds 1,2,3] [--window 600] [--lag 3]`
 */
function main(): void {
  const { values } = parseArgs({ options: { seeds: { type: 'string', default: '1,2,3' }, window: { type: 'string', default: '600' }, lag: { type: 'string', default: '3' }, out: { type: 'string', default: 'bench/results' } } });
  const seeds = (values.seeds ?? '1,2,3').split(',').map(Number);
  const windowS = Number(values.window);
  const maxLag = Number(values.lag);
  const lines = [`# Incident grouping (bench/incidents.ts; window ${windowS} s, member lags up to ${maxLag} buckets)`, '', '| seed | injected incidents seen | grouped right | purity | members flagged | other onsets in an incident of 2+ series |', '|---|---|---|---|---|---|'];
  const results: Record<string, unknown>[] = [];
  for (const seed of seeds) {
    const o = defaultLabelledOptions({ seed, series: 40, buckets: 6 * 1440 });
    const w = labelledWorkload(o);
    const rand = mulberry32(seed * 7919);
    // Six correlated incidents after the warm-up, 600 buckets apart: 3-6 series each shift by 6-9 σ.
    const injected = injectIncidents(w, rand, { count: 6, firstAt: 2 * 1440 + 240, spacing: 600, jitter: 120, maxLag, minSize: 3, maxSize: 6, buckets: 30, label: false });
    const ensemble = new Ensemble({ ...DEFAULT_ENSEMBLE, learningBuckets: 1440 }, null, 1);
    const onsets: Onset[] = [];
    w.series.forEach((series, s) => {
      const m = ensemble.init();
      for (let t = 0; t < series.values.length; t++) {
        const x = series.values[t] as number;
        if (Number.isNaN(x)) continue;
        const tsMs = o.startMs + t * o.widthMs;
        const r = ensemble.step(m, { tsMs, widthMs: o.widthMs, value: x, count: 1, min: x, max: x, std: 0 });
        if (r.anomaly) onsets.push({ seriesId: String(s + 1), metric: `m${s}`, tags: {}, tenant: '', t: tsMs / 1000, score: r.score });
      }
    });
    const incidents = groupOnsets(onsets, windowS).map((i) => ({ id: i.id, members: i.members.map((m) => ({ series: Number(m.seriesId) - 1, t: m.t })) }));
    const g = scoreGrouping(incidents, injected, o.startMs, o.widthMs, 30);
    const row = { seed, seen: g.seen, right: g.right, purity: g.purity, flagged: g.flagged, joined: g.joined, incidents: g.incidents };
    results.push(row);
    lines.push(`| ${seed} | ${g.seen} of ${injected.length} | ${g.right} | ${(100 * g.purity).toFixed(0)} % | ${(100 * g.flagged).toFixed(0)} % | ${(100 * g.joined).toFixed(0)} % of ${g.others} |`);
  }
  const text = lines.join('\n') + '\n';
  process.stdout.write(text);
  const dir = values.out ?? 'bench/results';
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(dir, `incidents-${stamp}.md`), text);
  writeFileSync(join(dir, `incidents-${stamp}.json`), JSON.stringify({ windowS, maxLag, results }, null, 2));
}

main();
