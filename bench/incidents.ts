import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_ENSEMBLE, Ensemble } from '../models/ensemble.js';
import { mulberry32 } from '../models/random.js';
import { groupOnsets, type Onset } from '../sinks/clickhouse/incidents.js';
import { defaultLabelledOptions, labelledWorkload } from './anomalies.js';

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
    // Six correlated incidents after the warm-up, a day apart: 3-6 series each shift by 6-9 σ.
    const injected: { at: number; members: Map<number, number> }[] = [];
    for (let k = 0; k < 6; k++) {
      const at = 2 * 1440 + 240 + k * 600 + Math.floor(rand() * 120);
      const members = new Map<number, number>();
      const size = 3 + Math.floor(rand() * 4);
      while (members.size < size) members.set(Math.floor(rand() * o.series), Math.floor(rand() * (maxLag + 1)));
      for (const [s, lag] of members) {
        const series = w.series[s];
        if (!series) continue;
        const shift = (6 + 3 * rand()) * series.noise * (rand() < 0.5 ? -1 : 1);
        for (let t = at + lag; t < at + lag + 30 && t < series.values.length; t++) series.values[t] = (series.values[t] as number) + shift;
      }
      injected.push({ at, members });
    }
    const ensemble = new Ensemble({ ...DEFAULT_ENSEMBLE, learningBuckets: 1440 }, null, 1);
    const onsets: Onset[] = [];
    w.series.forEach((series, s) => {
      const m = ensemble.init();
      for (let t = 0; t < series.values.length; t++) {
        const x = series.values[t] as number;
        if (Number.isNaN(x)) continue;
        const tsMs = o.startMs + t * o.widthMs;
        const r = ensemble.step(m, { tsMs, widthMs: o.widthMs, value: x, count: 1, min: x, max: x, std: 0 });
        if (r.anomaly) onsets.push({ seriesId: String(s + 1), metric: `m${s}`, tags: {}, t: tsMs / 1000, score: r.score });
      }
    });
    const incidents = groupOnsets(onsets, windowS);
    let seen = 0;
    let right = 0;
    let purity = 0;
    let flagged = 0;
    let memberCount = 0;
    const injectedMembers = new Set<string>();
    for (const inj of injected) {
      const startS = (o.startMs + inj.at * o.widthMs) / 1000;
      // A member counts as flagged when its first onset falls within the shift's half hour.
      const hits = new Map<number, string>();
      for (const i of incidents) {
        for (const mem of i.members) {
          const s = Number(mem.seriesId) - 1;
          const lag = inj.members.get(s);
          if (lag === undefined || mem.t < startS + lag * 60 || mem.t >= startS + (lag + 30) * 60) continue;
          if (!hits.has(s)) hits.set(s, i.id);
          injectedMembers.add(`${mem.seriesId}/${mem.t}`);
        }
      }
      memberCount += inj.members.size;
      flagged += hits.size;
      if (hits.size < 2) continue;
      seen++;
      const ids = new Set(hits.values());
      if (ids.size === 1) {
        right++;
        const id = [...ids][0] as string;
        const group = incidents.find((i) => i.id === id);
        purity += hits.size / (group?.members.length ?? hits.size);
      }
    }
    // Onsets outside the injected incidents that share an incident with another series.
    let alone = 0;
    let joined = 0;
    for (const i of incidents) {
      for (const mem of i.members) {
        if (injectedMembers.has(`${mem.seriesId}/${mem.t}`)) continue;
        alone++;
        if (i.members.length >= 2) joined++;
      }
    }
    const row = { seed, seen, right, purity: right > 0 ? purity / right : Number.NaN, flagged: flagged / memberCount, joined: joined / Math.max(1, alone), incidents: incidents.length };
    results.push(row);
    lines.push(`| ${seed} | ${seen} of ${injected.length} | ${right} | ${(100 * row.purity).toFixed(0)} % | ${(100 * row.flagged).toFixed(0)} % | ${(100 * row.joined).toFixed(0)} % of ${alone} |`);
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
