/** A row's tags from its `tags.key` and `tags.value` columns (a Nested pair of arrays of one length). */
export function nestedTags(keys: readonly string[], values: readonly string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k, i) => [k, values[i] ?? '']));
}

/** A series as Prometheus writes one: `metric{k="v",...}`, or the metric alone without tags. */
export function seriesText(metric: string, tags: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(tags).map(([k, v]) => `${k}="${v}"`).join(',');
  return pairs ? `${metric}{${pairs}}` : metric;
}
