import xxhash from 'xxhash-wasm';

/**
 * Series identity (DESIGN.md §3). A series is its metric name plus its tag set; its canonical
 * form is the JSON text of `[metric, [[key, value], ...]]` with pairs sorted by key (JavaScript's
 * default string order, i.e. UTF-16 code units), as `JSON.stringify` writes it — e.g.
 * `["cpu",[["host","a"],["region","eu"]]]`. The series id is xxHash64 (seed 0) of the UTF-8 bytes
 * of that text, as an unsigned 64-bit integer: stable across processes, restarts and versions, and
 * reproducible in SQL on servers that have `xxHash64` (ClickHouse ≥ 19).
 *
 * A series of a named tenant (issue 18) has the tenant as a third element:
 * `["cpu",[["host","a"]],"acme"]`, so two tenants' series of the same metric and tags are two
 * series. The default tenant ('') has none: series ids made before tenants existed stay valid.
 */
const { h64Raw } = await xxhash();
const encoder = new TextEncoder();
let scratch = new Uint8Array(4096);

/** Sorts the flat [k1, v1, k2, v2, ...] tag array in place by key. */
export function sortTags(tags: string[]): string[] {
  const n = tags.length / 2;
  if (n < 2) return tags;
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => {
    const ka = tags[2 * a] as string;
    const kb = tags[2 * b] as string;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const copy = tags.slice();
  for (let i = 0; i < n; i++) {
    const j = idx[i] as number;
    tags[2 * i] = copy[2 * j] as string;
    tags[2 * i + 1] = copy[2 * j + 1] as string;
  }
  return tags;
}

/** Canonical text of a series; `tags` must already be sorted by key. */
export function canonicalSeries(metric: string, sortedTags: readonly string[], tenant = ''): string {
  const pairs: [string, string][] = [];
  for (let i = 0; i < sortedTags.length; i += 2) pairs.push([sortedTags[i] as string, sortedTags[i + 1] as string]);
  return JSON.stringify(tenant === '' ? [metric, pairs] : [metric, pairs, tenant]);
}

export function hashCanonical(canonical: string): bigint {
  // Worst case 3 UTF-8 bytes per UTF-16 unit.
  if (scratch.length < canonical.length * 3) scratch = new Uint8Array(canonical.length * 3);
  const { written } = encoder.encodeInto(canonical, scratch);
  return h64Raw(scratch.subarray(0, written), 0n);
}

export function seriesId(metric: string, sortedTags: readonly string[], tenant = ''): bigint {
  return hashCanonical(canonicalSeries(metric, sortedTags, tenant));
}
