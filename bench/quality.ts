import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ANOMALY_KINDS, defaultLabelledOptions, labelledWorkload, type LabelledWorkload } from './anomalies.js';
import { CORPUS_SHAPES, realisticCorpus } from './corpus.js';
import { backtest, type BacktestRow } from '../models/backtest.js';
import { COST_PROFILES, evaluate, windowedScore, type LabelSpan, type ScoredBucket, type WindowedScore } from '../models/evaluate.js';
import { DEFAULT_ENSEMBLE, DETECTORS, type DetectorName, type EnsembleSettings } from '../models/ensemble.js';
import type { Quality } from '../models/evaluate.js';
import { loadLstm } from '../models/lstm-detector.js';

/**
 * `npm run bench:quality`: detection quality on the labelled synthetic workload (bench/anomalies.ts)
 * per detector alone and for the ensemble at default settings, plus the ensemble's scoring cost
 * per series-bucket. Options: --series N --days D --seed S --lstm DIR (a trained model);
 * `--corpus realistic [--seeds 1,2,3]` scores the realistic corpus (bench/corpus.ts) instead
 * (`--csv FILE` writes the first seed's rows instead of scoring).
 */
function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

export function workloadRows(w: LabelledWorkload): BacktestRow[] {
  const rows: BacktestRow[] = [];
  w.series.forEach((s, i) => {
    const labels = w.labels.filter((l) => l.series === i);
    s.values.forEach((v, t) => {
      if (Number.isNaN(v)) return;
      const tsMs = w.options.startMs + t * w.options.widthMs;
      rows.push({ series: `s${i}`, tsMs, value: v, label: labels.find((l) => tsMs >= l.startMs && tsMs < l.endMs)?.kind ?? '' });
    });
  });
  return rows;
}

/**
 * The plain baseline (issue 14): a rolling z-score per series, |value − mean| > 3 standard
 * deviations of the previous 60 buckets (not tuned: the textbook rule). A detector worth running
 * must beat it.
 */
export function rollingZ(rows: readonly BacktestRow[], window = 60, k = 3): ScoredBucket[] {
  const bySeries = new Map<string, BacktestRow[]>();
  for (const r of rows) {
    let list = bySeries.get(r.series);
    if (!list) bySeries.set(r.series, (list = []));
    list.push(r);
  }
  const out: ScoredBucket[] = [];
  for (const list of bySeries.values()) {
    list.sort((a, b) => a.tsMs - b.tsMs);
    for (let i = 0; i < list.length; i++) {
      const r = list[i] as BacktestRow;
      let flagged = false;
      if (i >= window) {
        let sum = 0;
        let sumsq = 0;
        for (let j = i - window; j < i; j++) {
          const v = (list[j] as BacktestRow).value;
          sum += v;
          sumsq += v * v;
        }
        const mean = sum / window;
        const std = Math.sqrt(Math.max(0, sumsq / window - mean * mean));
        flagged = std > 0 && Math.abs(r.value - mean) > k * std;
      }
      out.push({ series: r.series, tsMs: r.tsMs, flagged });
    }
  }
  return out;
}

function fmt(x: number, d = 3): string {
  return Number.isFinite(x) ? x.toFixed(d) : '–';
}

/**
 * `--corpus realistic`: the windowed event score per shape of the realistic corpus
 * (bench/corpus.ts), for the ensemble, each detector and the rolling z-score baseline, over
 * several seeds (`--seeds 1,2,3`), both cost profiles.
 */
async function corpusMain(lstm: Awaited<ReturnType<typeof loadLstm>> | null): Promise<void> {
  const seeds = arg('seeds', '1,2,3').split(',').map(Number);
  // `--csv FILE`: the first seed's corpus as series,timestamp,value,label (for `vigil train --input`
  // on one seed and scoring on the others, or for `vigil backtest`), and nothing else.
  const csv = arg('csv', '');
  if (csv) {
    const c = realisticCorpus(seeds[0] as number);
    writeFileSync(csv, ['series,timestamp,value,label', ...c.rows.map((r) => `${r.series},${new Date(r.tsMs).toISOString()},${r.value},${r.label}`)].join('\n') + '\n');
    console.log(`written ${c.rows.length} rows of seed ${seeds[0]} to ${csv}`);
    return;
  }
  const runs: { name: string; settings: EnsembleSettings | null }[] = [
    { name: 'ensemble', settings: { ...DEFAULT_ENSEMBLE, detectors: DETECTORS.filter((d) => d !== 'lstm' || lstm) } },
    ...DETECTORS.filter((d) => d !== 'lstm' || lstm).map((d) => ({ name: d, settings: { ...DEFAULT_ENSEMBLE, detectors: [d] as DetectorName[] } })),
    { name: 'rolling z (baseline)', settings: null },
  ];
  const groups = [...CORPUS_SHAPES, 'all'] as const;
  // score[profile][run][group] = per-seed scores
  const scores: Record<string, Record<string, Record<string, number[]>>> = { fewFalsePositives: {}, fewMisses: {} };
  // Event-wise quality over all shapes, per run: the seeds' detected, events and false alarms summed.
  const events: Record<string, { detected: number; events: number; falseAlarms: number; fp: number[] }> = {};
  for (const seed of seeds) {
    const c = realisticCorpus(seed);
    for (const run of runs) {
      let scored: ScoredBucket[];
      if (run.settings) {
        scored = [];
        const out = scored;
        backtest(c.rows, { settings: run.settings, lstm, onRow: (row, s) => out.push({ series: row.series, tsMs: row.tsMs, flagged: s.anomaly }) });
      } else scored = rollingZ(c.rows);
      const q = evaluate(scored, c.labels, c.widthMs);
      const e = (events[run.name] ??= { detected: 0, events: 0, falseAlarms: 0, fp: [] });
      e.detected += q.detected;
      e.events += q.events;
      e.falseAlarms += q.falseAlarms;
      e.fp.push(q.fpPerThousand);
      for (const group of groups) {
        const inGroup = (series: string) => group === 'all' || c.shapes.get(series) === group;
        const b = scored.filter((x) => inGroup(x.series));
        const l = c.labels.filter((x) => inGroup(x.series));
        for (const [profile, costs] of Object.entries(COST_PROFILES)) {
          const cell = (((scores[profile] as Record<string, Record<string, number[]>>)[run.name] ??= {})[group] ??= []);
          cell.push(windowedScore(b, l, c.widthMs, costs).score);
        }
      }
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const lines = [`# Windowed event score on the realistic corpus (bench/corpus.ts; seeds ${seeds.join(', ')}; mean, then min–max over seeds)`, ''];
  for (const [profile, byRun] of Object.entries(scores)) {
    lines.push(`## ${profile === 'fewFalsePositives' ? 'few false positives (FP −0.22, miss −1)' : 'few misses (FP −0.11, miss −2)'}`, '');
    lines.push(`| detector | ${groups.join(' | ')} |`, `|---|${groups.map(() => '---').join('|')}|`);
    for (const [name, byGroup] of Object.entries(byRun)) {
      lines.push(`| ${name} | ${groups.map((g) => { const xs = byGroup[g] ?? []; return `${fmt(mean(xs), 1)} (${fmt(Math.min(...xs), 0)}–${fmt(Math.max(...xs), 0)})`; }).join(' | ')} |`);
    }
    lines.push('');
  }
  lines.push('## event-wise, all shapes (seeds summed; models/evaluate.ts evaluate: a flag in the span or 3 buckets after detects it, a run of flags outside is one false alarm)', '');
  lines.push('| detector | precision | recall | F1 | detected / events | false alarms | FP buckets / 1000 |', '|---|---|---|---|---|---|---|');
  for (const [name, e] of Object.entries(events)) {
    const precision = e.detected / Math.max(1, e.detected + e.falseAlarms);
    const recall = e.detected / Math.max(1, e.events);
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    lines.push(`| ${name} | ${fmt(precision)} | ${fmt(recall)} | ${fmt(f1)} | ${e.detected}/${e.events} | ${e.falseAlarms} | ${fmt(mean(e.fp), 2)} |`);
  }
  lines.push('');
  console.log(lines.join('\n'));
  const dir = join('bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  writeFileSync(join(dir, `quality-corpus-${stamp}.json`), JSON.stringify({ seeds, scores, events }, null, 2));
  writeFileSync(join(dir, `quality-corpus-${stamp}.md`), lines.join('\n') + '\n');
}

async function main(): Promise<void> {
  const lstmDir0 = arg('lstm', '');
  if (arg('corpus', '') === 'realistic') return corpusMain(lstmDir0 ? await loadLstm(lstmDir0) : null);
  const days = Number(arg('days', '5'));
  const opts = defaultLabelledOptions({ series: Number(arg('series', '30')), seed: Number(arg('seed', '1')) });
  opts.buckets = Math.round((days * opts.periodMs) / opts.widthMs);
  const w = labelledWorkload(opts);
  const rows = workloadRows(w);
  const lstmDir = arg('lstm', '');
  const lstm = lstmDir ? await loadLstm(lstmDir) : null;
  const runs: { name: string; settings: EnsembleSettings }[] = [
    ...DETECTORS.filter((d) => d !== 'lstm' || lstm).map((d) => ({ name: d, settings: { ...DEFAULT_ENSEMBLE, detectors: [d] as DetectorName[] } })),
    { name: 'ensemble', settings: { ...DEFAULT_ENSEMBLE, detectors: DETECTORS.filter((d) => d !== 'lstm' || lstm) } },
  ];
  // The workload's own labels: dropouts have no rows to carry a label column.
  const labels: LabelSpan[] = w.labels.map((l) => ({ series: `s${l.series}`, kind: l.kind, startMs: l.startMs, endMs: l.endMs }));
  type Result = Quality & { usPerBucket: number; windowed: Record<keyof typeof COST_PROFILES, WindowedScore> };
  const results: Record<string, Result> = {};
  const judge = (scored: ScoredBucket[], usPerBucket: number): Result => ({
    ...evaluate(scored, labels, opts.widthMs),
    usPerBucket,
    windowed: {
      fewFalsePositives: windowedScore(scored, labels, opts.widthMs, COST_PROFILES.fewFalsePositives),
      fewMisses: windowedScore(scored, labels, opts.widthMs, COST_PROFILES.fewMisses),
    },
  });
  for (const run of runs) {
    const scored: ScoredBucket[] = [];
    const r = backtest(rows, { settings: run.settings, lstm, onRow: (row, s) => scored.push({ series: row.series, tsMs: row.tsMs, flagged: s.anomaly }) });
    results[run.name] = judge(scored, r.stepNs / 1000 / r.rows);
  }
  const t0 = performance.now();
  const baseline = rollingZ(rows);
  results['rolling z (baseline)'] = judge(baseline, ((performance.now() - t0) * 1000) / rows.length);
  const lines = [
    `# Detection quality (${w.series.length} series × ${opts.buckets} buckets of ${opts.widthMs / 1000}s, ${w.labels.length} labelled anomalies, seed ${opts.seed})`,
    '',
    '| detector | precision | recall | F1 | false alarms | FP buckets / 1000 | mean delay (buckets) | µs / bucket |',
    '|---|---|---|---|---|---|---|---|',
    ...Object.entries(results).map(([n, q]) => `| ${n} | ${fmt(q.precision)} | ${fmt(q.recall)} | ${fmt(q.f1)} | ${q.falseAlarms} | ${fmt(q.fpPerThousand, 2)} | ${fmt(q.meanDelayBuckets, 1)} | ${fmt(q.usPerBucket, 2)} |`),
    '',
    'Windowed event score (NAB-like, models/evaluate.ts windowedScore: 100 = every anomaly flagged at its start and nothing else, 0 = never flagging; early detections earn more, only the first in a window counts, each flag outside costs):',
    '',
    '| detector | few false positives (FP −0.22, miss −1) | few misses (FP −0.11, miss −2) | windows detected | flags outside windows |',
    '|---|---|---|---|---|',
    ...Object.entries(results).map(([n, q]) => `| ${n} | ${fmt(q.windowed.fewFalsePositives.score, 1)} | ${fmt(q.windowed.fewMisses.score, 1)} | ${q.windowed.fewMisses.detected}/${q.windowed.fewMisses.windows} | ${q.windowed.fewMisses.falseDetections} |`),
    '',
    `Recall by anomaly kind (detected / events, mean delay in buckets):`,
    '',
    `| detector | ${ANOMALY_KINDS.join(' | ')} |`,
    `|---|${ANOMALY_KINDS.map(() => '---').join('|')}|`,
    ...Object.entries(results).map(
      ([n, q]) => `| ${n} | ${ANOMALY_KINDS.map((k) => (q.byKind[k] ? `${q.byKind[k].detected}/${q.byKind[k].events} (${fmt(q.byKind[k].meanDelayBuckets, 1)})` : '–')).join(' | ')} |`,
    ),
  ];
  console.log(lines.join('\n'));
  const dir = join('bench', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  writeFileSync(join(dir, `quality-${stamp}.json`), JSON.stringify({ options: opts, results }, null, 2));
  writeFileSync(join(dir, `quality-${stamp}.md`), lines.join('\n') + '\n');
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
