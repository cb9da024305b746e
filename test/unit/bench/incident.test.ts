import { describe, expect, it } from 'vitest';
import { INCIDENT_SCRIPT, INCIDENT_SECONDS, INCIDENT_SERIES, Incident } from '../../../bench/incident.js';

/** The live part of the script, one step a second from `from` to `to` (seconds after the start). */
function live(from: number, to: number) {
  const incident = new Incident(7);
  const steps = [];
  for (let t = from; t < to; t++) steps.push({ t, points: incident.step(1_000_000 + t * 1000, 1, t) });
  return steps;
}

const valueOf = (points: { series: unknown; value: number }[], series: unknown) => points.find((p) => p.series === series)?.value;

describe('the demo incident script', () => {
  const steps = live(-30, INCIDENT_SECONDS);

  it('keeps demo-web-1 above 90 % for its CPU window only, and under 50 % around it', () => {
    for (const { t, points } of steps) {
      const cpu = valueOf(points, INCIDENT_SERIES.webCpu) as number;
      const [from, to] = INCIDENT_SCRIPT.cpuHigh;
      if (t >= from && t < to) expect(cpu, `t=${t}`).toBeGreaterThan(90);
      else expect(cpu, `t=${t}`).toBeLessThan(50);
    }
    expect(INCIDENT_SCRIPT.cpuHigh[1] - INCIDENT_SCRIPT.cpuHigh[0]).toBeGreaterThan(30); // the rule's `for`
  });

  it('adds more than 10 unauthorized accesses in its burst and none outside it', () => {
    const auth = steps.map(({ t, points }) => ({ t, v: valueOf(points, INCIDENT_SERIES.authFailures) as number }));
    const [from, to] = INCIDENT_SCRIPT.authBurst;
    const at = (t: number) => auth.find((a) => a.t === t)?.v as number;
    expect(at(to) - at(from - 1)).toBeGreaterThan(10);
    expect(at(from - 1)).toBe(at(-30));
    expect(at(INCIDENT_SECONDS - 1)).toBe(at(to));
  });

  it('leaves demo-db-1 silent for longer than the absent rule waits, and only then', () => {
    const [from, to] = INCIDENT_SCRIPT.hostSilent;
    for (const { t, points } of steps) expect(valueOf(points, INCIDENT_SERIES.dbCpu) === undefined, `t=${t}`).toBe(t >= from && t < to);
    expect(to - from).toBeGreaterThanOrEqual(40); // 30 s plus a bucket
  });

  it('reads demo-key about ten times as often in its surge; the counters only grow', () => {
    const [from, to] = INCIDENT_SCRIPT.accessSurge;
    const access = steps.map(({ t, points }) => ({ t, v: valueOf(points, INCIDENT_SERIES.keyAccess) as number }));
    const rate = (a: number, b: number) => ((access.find((x) => x.t === b)?.v as number) - (access.find((x) => x.t === a)?.v as number)) / (b - a);
    expect(rate(from, to - 1)).toBeGreaterThan(8 * rate(-30, from - 1));
    for (let i = 1; i < access.length; i++) expect((access[i] as { v: number }).v).toBeGreaterThanOrEqual((access[i - 1] as { v: number }).v);
  });

  it('ends every window well before INCIDENT_SECONDS, leaving time for the last bucket to close and resolve', () => {
    for (const [from, to] of Object.values(INCIDENT_SCRIPT)) {
      expect(from).toBeGreaterThanOrEqual(0);
      expect(to + 20).toBeLessThanOrEqual(INCIDENT_SECONDS);
    }
  });

  it('is deterministic for a seed; history steps carry ten seconds of counter increments', () => {
    expect(live(-5, 5)).toEqual(live(-5, 5));
    const a = new Incident(1);
    const first = valueOf(a.step(0, 10, -Infinity), INCIDENT_SERIES.keyAccess) as number;
    expect(first).toBeGreaterThan(150);
    expect(first).toBeLessThan(250);
  });
});
