/** Rank statistics for judging detectors: Spearman correlation and ROC AUC, ties by average rank. */

/** 1-based ranks of `values`; tied values share the mean of the ranks they span. */
export function averageRanks(values: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[a]! - values[b]!);
  const ranks = new Float64Array(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i + 1;
    while (j < order.length && values[order[j]!] === values[order[i]!]) j++;
    const rank = (i + j + 1) / 2;
    for (let k = i; k < j; k++) ranks[order[k]!] = rank;
    i = j;
  }
  return ranks;
}

function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]! / n;
    mb += b[i]! / n;
  }
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / Math.sqrt(saa * sbb);
}

/** Spearman rank correlation: Pearson correlation of the average ranks (NaN if either side is constant). */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`spearman: lengths differ (${a.length} and ${b.length})`);
  return pearson(averageRanks(a), averageRanks(b));
}

/**
 * Area under the ROC curve of `scores` (higher = more positive) against 0/1 `labels`, by the
 * Mann-Whitney statistic: a tie between a positive and a negative counts one half.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (scores.length !== labels.length) throw new RangeError(`rocAuc: lengths differ (${scores.length} and ${labels.length})`);
  const ranks = averageRanks(scores);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < ranks.length; i++) {
    if (labels[i] === 1) {
      positives++;
      rankSum += ranks[i]!;
    }
  }
  const negatives = ranks.length - positives;
  if (positives === 0 || negatives === 0) throw new RangeError('rocAuc: labels need both classes');
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}
