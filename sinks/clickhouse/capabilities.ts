/**
 * What the connected ClickHouse server offers beyond the 18.16 baseline (DESIGN.md §5). The
 * baseline DDL runs everywhere; newer servers get LowCardinality strings and column codecs.
 */
export interface Capabilities {
  version: string;
  major: number;
  minor: number;
  /** LowCardinality(String) as a regular, non-experimental type (19.9+). */
  lowCardinality: boolean;
  /** Column compression codecs: CODEC(Delta, ZSTD, DoubleDelta, …) (19.11+). */
  codecs: boolean;
  /** Table TTL (19.6+). */
  ttl: boolean;
}

export function capabilitiesOf(version: string): Capabilities {
  const [major = 0, minor = 0] = version.split('.').map((p) => Number.parseInt(p, 10));
  const atLeast = (ma: number, mi: number) => major > ma || (major === ma && minor >= mi);
  return { version, major, minor, lowCardinality: atLeast(19, 9), codecs: atLeast(19, 11), ttl: atLeast(19, 6) };
}
