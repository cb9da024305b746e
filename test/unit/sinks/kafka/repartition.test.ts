import { describe, expect, it } from 'vitest';
import { rounds } from '../../../../sinks/kafka/repartition.js';

describe('forwarded records in rounds', () => {
  it('never puts two records of one partition in one send (one record batch, checked whole against max.message.bytes), and keeps each partition\'s order', () => {
    const r = (partition: number, n: number) => ({ partition, n });
    const out = rounds([r(0, 1), r(1, 1), r(0, 2), r(0, 3), r(2, 1), r(1, 2)]);
    expect(out).toEqual([[r(0, 1), r(1, 1), r(2, 1)], [r(0, 2), r(1, 2)], [r(0, 3)]]);
    for (const send of out) expect(new Set(send.map((x) => x.partition)).size).toBe(send.length);
    expect(rounds([])).toEqual([]);
  });
});
