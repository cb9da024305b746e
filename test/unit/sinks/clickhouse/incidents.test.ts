import { describe, expect, it } from 'vitest';
import { groupOnsets, incidentRow, incidentTarget, placeOnsets, type Onset } from '../../../../sinks/clickhouse/incidents.js';
import { seriesId } from '../../../../workers/series.js';

const onset = (seriesId: number, t: number, score = 0.6, metric = `m${seriesId}`): Onset => ({ seriesId: String(seriesId), metric, tags: { host: `h${seriesId}` }, tenant: '', t, score });

describe('incidents from anomaly onsets', () => {
  it('groups onsets no more than the window apart (chained), one member per series ranked by onset then score, the id from the first', () => {
    const incidents = groupOnsets(
      [
        onset(3, 1_000_240, 0.9),
        onset(1, 1_000_000, 0.7),
        onset(2, 1_000_060, 0.8),
        onset(4, 1_000_060, 0.95),
        // Series 1 again within the incident: it stays at its first onset.
        onset(1, 1_000_500, 0.99),
        // 601 s after the last onset: a new incident.
        onset(2, 1_001_101, 0.6),
      ],
      600,
    );
    expect(incidents).toHaveLength(2);
    const [a, b] = incidents;
    expect(a?.id).toBe(`${(1n).toString(16).padStart(16, '0')}-1000000`);
    expect(a?.members.map((m) => [m.seriesId, m.t, m.score])).toEqual([
      ['1', 1_000_000, 0.7],
      ['4', 1_000_060, 0.95],
      ['2', 1_000_060, 0.8],
      ['3', 1_000_240, 0.9],
    ]);
    expect([a?.startS, a?.lastS]).toEqual([1_000_000, 1_000_500]);
    expect(b?.members.map((m) => m.seriesId)).toEqual(['2']);
    expect(b?.id).toBe(`${(2n).toString(16).padStart(16, '0')}-1001101`);
    // The same onsets in another order: the same incidents (every instance computes the same).
    const again = groupOnsets([onset(2, 1_001_101, 0.6), onset(1, 1_000_500, 0.99), onset(4, 1_000_060, 0.95), onset(3, 1_000_240, 0.9), onset(2, 1_000_060, 0.8), onset(1, 1_000_000, 0.7)], 600);
    expect(again).toEqual(incidents);
    // Series ids past 2^53 keep every digit.
    expect(groupOnsets([{ ...onset(0, 5), seriesId: '18446744073709551615' }], 600)[0]?.id).toBe('ffffffffffffffff-5');
  });

  it('writes a later version as an incident grows, ends and gets its related series', () => {
    const [small] = groupOnsets([onset(1, 1_000_000), onset(2, 1_000_060)], 600);
    const [grown] = groupOnsets([onset(1, 1_000_000), onset(2, 1_000_060), onset(3, 1_000_120)], 600);
    const v = (r: Record<string, unknown>) => r['version'] as number;
    const open = incidentRow(small!, 60, null);
    expect(open).toMatchObject({ incident_id: small?.id, width_s: 60, started_at: 1_000_000, last_onset_at: 1_000_060, series_count: 2, 'members.series_id': ['1', '2'], 'members.tags': ['{"host":"h1"}', '{"host":"h2"}'], related: '' });
    expect(v(incidentRow(grown!, 60, null))).toBeGreaterThan(v(open));
    const closed = incidentRow(grown!, 60, [{ primary: { metric: 'm1', tags: {} }, series: { metric: 'cpu', tags: { host: 'a' } }, r: 0.91234, lagSeconds: 120, n: 30 }]);
    expect(v(closed)).toBe(v(incidentRow(grown!, 60, null)) + 1);
    expect(JSON.parse(closed['related'] as string)).toEqual([{ metric: 'cpu', tags: { host: 'a' }, r: 0.912, lagSeconds: 120 }]);
  });

  it('places a series in the incident of its earliest onset within the span asked about, whatever its tags\' order', () => {
    const onsets = [onset(1, 1_000_000), onset(2, 1_000_300), onset(2, 1_005_000), onset(3, 1_005_100)];
    const incidents = groupOnsets(onsets, 600);
    expect(incidents.map((i) => i.id)).toEqual([`${'1'.padStart(16, '0')}-1000000`, `${'2'.padStart(16, '0')}-1005000`]);
    expect(
      placeOnsets(onsets, incidents, [
        { seriesId: '2', fromS: 1_000_000, toS: 1_010_000 },
        { seriesId: '2', fromS: 1_000_400, toS: 1_010_000 },
        // Outside both of its onsets; other series.
        { seriesId: '2', fromS: 1_000_400, toS: 1_004_999 },
        { seriesId: '9', fromS: 0, toS: 2_000_000 },
        { seriesId: '22', fromS: 0, toS: 2_000_000 },
      ]),
    ).toEqual([incidents[0]?.id, incidents[1]?.id, null, null, null]);
    // A target is the series as the pipeline identifies it, whatever its tags' order.
    const id = incidentTarget('x', { b: '2', a: '1' }, 0, 10).seriesId;
    expect(id).toBe(seriesId('x', ['a', '1', 'b', '2']).toString());
    const tagged: Onset[] = [{ seriesId: id, metric: 'x', tags: { b: '2', a: '1' }, tenant: '', t: 10, score: 1 }];
    expect(placeOnsets(tagged, groupOnsets(tagged, 600), [incidentTarget('x', { a: '1', b: '2' }, 0, 10)])).toEqual([`${BigInt(id).toString(16).padStart(16, '0')}-10`]);
  });
});
