import { mulberry32 } from '../models/random.js';
import type { BacktestRow } from '../models/backtest.js';
import type { LabelSpan } from '../models/evaluate.js';

/**
 * A labelled corpus of realistic shapes (issue 14), beside the synthetic workload of
 * bench/anomalies.ts that the detectors were built against: the kinds of series the first round's
 * detectors failed on in a public benchmark of real series, rebuilt from their description, not
 * from their data. Five-minute buckets, 14 days per series; every shape has normal behaviour a
 * naive detector mistakes for anomalies, and labelled windows around the injected incidents.
 *
 * Shapes:
 * - `hourly-job`: a batch job lifts the level for 3 buckets every hour (normal); incidents: the
 *   job runs four times as long, or a burst comes at an odd time.
 * - `sharp-daily`: a noise-free business-hours step (quantised to whole units, sharp edges);
 *   incidents: the daytime level drops by a third, or the night does not come down.
 * - `heavy-tailed`: counts with Pareto-sized natural bursts of one bucket; incidents: a sustained
 *   surge of two hours.
 * - `weekly`: a daily and a weekly season (weekends at 40 %); incidents: a weekday that looks like
 *   a Sunday (a holiday), a Saturday that looks like a weekday.
 * - `drift`: a slow random-walk drift with noise; incidents: a level shift, a dropout of 2 hours
 *   (no rows; labelled where data resumes).
 * Some series also repeat an hour of timestamps (a daylight-saving change): not an incident.
 */
export const CORPUS_SHAPES = ['hourly-job', 'sharp-daily', 'heavy-tailed', 'weekly', 'drift'] as const;
export type CorpusShape = (typeof CORPUS_SHAPES)[number];

export interface Corpus {
  rows: BacktestRow[];
  labels: LabelSpan[];
  widthMs: number;
  shapes: Map<string, CorpusShape>;
}

const WIDTH_MS = 5 * 60_000;
const DAY = 288; // buckets of 5 min
const HOUR = 12;

function gauss(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** `seriesPerShape` series of each shape over `days` days (starting on a Monday, 2026-01-05). */
export function realisticCorpus(seed: number, seriesPerShape = 4, days = 14): Corpus {
  const rand = mulberry32(seed);
  const startMs = Date.UTC(2026, 0, 5);
  const n = days * DAY;
  const rows: BacktestRow[] = [];
  const labels: LabelSpan[] = [];
  const shapes = new Map<string, CorpusShape>();
  /** Incident windows: after the first 4 days (a detector may learn), a few per series, apart. */
  const incidents = (count: number, length: number): number[] => {
    const at: number[] = [];
    while (at.length < count) {
      const t = 4 * DAY + Math.floor(rand() * (n - 4 * DAY - length - HOUR));
      if (at.every((x) => Math.abs(x - t) > DAY)) at.push(t);
    }
    return at.sort((a, b) => a - b);
  };
  for (const shape of CORPUS_SHAPES) {
    for (let k = 0; k < seriesPerShape; k++) {
      const name = `${shape}-${k}`;
      shapes.set(name, shape);
      const values = new Float64Array(n);
      const label = (t: number, length: number, kind: string) => labels.push({ series: name, kind, startMs: startMs + t * WIDTH_MS, endMs: startMs + (t + length) * WIDTH_MS });
      const base = 50 + rand() * 100;
      const noise = base * (0.01 + rand() * 0.03);
      if (shape === 'hourly-job') {
        const offset = Math.floor(rand() * HOUR);
        for (let t = 0; t < n; t++) values[t] = base + noise * gauss(rand) + ((t + offset) % HOUR < 3 ? base * 1.5 : 0);
        const [long, odd] = incidents(2, HOUR);
        // The job runs 12 buckets instead of 3 (from its start), then a burst at mid-cycle.
        const jobStart = (long as number) - (((long as number) + offset) % HOUR);
        for (let t = jobStart; t < jobStart + HOUR; t++) values[t] = base + noise * gauss(rand) + base * 1.5;
        label(jobStart + 3, HOUR - 3, 'job-overrun');
        const mid = (odd as number) - (((odd as number) + offset) % HOUR) + 6;
        for (let t = mid; t < mid + 3; t++) values[t] = (values[t] as number) + base * 1.5;
        label(mid, 3, 'odd-burst');
      } else if (shape === 'sharp-daily') {
        const high = Math.round(base);
        const low = Math.round(base * 0.2);
        for (let t = 0; t < n; t++) values[t] = t % DAY >= 8 * HOUR && t % DAY < 18 * HOUR ? high : low;
        const [drop, awake] = incidents(2, DAY);
        const dayStart = (drop as number) - ((drop as number) % DAY) + 8 * HOUR;
        for (let t = dayStart + 2 * HOUR; t < dayStart + 6 * HOUR; t++) values[t] = Math.round(high * 0.66);
        label(dayStart + 2 * HOUR, 4 * HOUR, 'level-drop');
        const night = (awake as number) - ((awake as number) % DAY) + 18 * HOUR;
        for (let t = night; t < night + 4 * HOUR && t < n; t++) values[t] = high;
        label(night, Math.min(4 * HOUR, n - night), 'stuck-high');
      } else if (shape === 'heavy-tailed') {
        const lambda = 3 + rand() * 10;
        for (let t = 0; t < n; t++) {
          let v = 0;
          // Poisson counts by inversion; a Pareto-sized natural burst in one bucket of 200.
          const u = rand();
          for (let p = Math.exp(-lambda), s = p; u > s && v < 1000; ) {
            v++;
            p *= lambda / v;
            s += p;
          }
          if (rand() < 0.005) v += Math.round(lambda * (1 / Math.pow(1 - rand(), 1 / 1.5)));
          values[t] = v;
        }
        for (const at of incidents(2, 2 * HOUR)) {
          for (let t = at; t < at + 2 * HOUR; t++) values[t] = (values[t] as number) + Math.round(lambda * 2.5);
          label(at, 2 * HOUR, 'surge');
        }
      } else if (shape === 'weekly') {
        for (let t = 0; t < n; t++) {
          const day = Math.floor(t / DAY) % 7; // 0 = Monday
          const daily = 0.6 + 0.4 * Math.sin((2 * Math.PI * (t % DAY)) / DAY - Math.PI / 2);
          values[t] = base * daily * (day >= 5 ? 0.4 : 1) + noise * gauss(rand);
        }
        // A holiday: the second Wednesday looks like a Sunday; the second Saturday like a weekday.
        const holiday = 9 * DAY;
        for (let t = holiday; t < holiday + DAY; t++) values[t] = (values[t] as number) * 0.4;
        label(holiday, DAY, 'holiday');
        const busy = 12 * DAY;
        for (let t = busy; t < busy + DAY; t++) values[t] = (values[t] as number) / 0.4;
        label(busy, DAY, 'busy-weekend');
      } else {
        let level = base;
        for (let t = 0; t < n; t++) {
          level += noise * 0.05 * gauss(rand);
          values[t] = level + noise * gauss(rand);
        }
        const [shift, gap] = incidents(2, 2 * HOUR);
        for (let t = shift as number; t < n; t++) values[t] = (values[t] as number) + 6 * noise;
        label(shift as number, HOUR, 'level-shift');
        for (let t = gap as number; t < (gap as number) + 2 * HOUR; t++) values[t] = Number.NaN;
        // A dropout is seen when data resumes.
        label(gap as number, 2 * HOUR + 2, 'dropout');
      }
      const labelled = labels.filter((l) => l.series === name);
      const kindAt = (tsMs: number) => labelled.find((l) => tsMs >= l.startMs && tsMs < l.endMs)?.kind ?? '';
      // Half the series of each shape repeat an hour of timestamps on day 10 (a clock change).
      const repeatAt = k % 2 === 1 ? 10 * DAY + 2 * HOUR : -1;
      for (let t = 0; t < n; t++) {
        const v = values[t] as number;
        if (Number.isNaN(v)) continue;
        const tsMs = startMs + t * WIDTH_MS;
        rows.push({ series: name, tsMs, value: Math.round(v * 1000) / 1000, label: kindAt(tsMs) });
        // The repeated hour: other measurements under the same timestamps.
        if (repeatAt >= 0 && t >= repeatAt && t < repeatAt + HOUR) rows.push({ series: name, tsMs, value: Math.round(v * (1 + 0.01 * gauss(rand)) * 1000) / 1000, label: kindAt(tsMs) });
      }
    }
  }
  return { rows, labels, widthMs: WIDTH_MS, shapes };
}
