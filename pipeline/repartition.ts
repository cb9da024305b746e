import type { IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { VigilConfig } from '../core/config/index.js';

/**
 * Whole series across source partitions (DESIGN.md §7b), Kafka Streams' repartition pattern in
 * two stages of the same consumer group:
 *
 * 1. A metrics-topic task stores its raw points as always; the points of messages that are not
 *    keyed by series (kafka.repartition) are not handed to this instance's shards but forwarded,
 *    as `points` RowBinary rows, to the repartition topic: one record per repartition partition
 *    the task has points for, the partition picked by series id (workers/ingest.ts
 *    repartitionOf), so a series lives in one partition and thus one instance. Every repartition
 *    partition also gets a record without points, so each learns every source's progress.
 *    Records of one source partition are produced in offset order, acknowledged (acks=all) before
 *    the source offset commits.
 * 2. A repartition-topic task hands the forwarded points to the shards: rollups, detectors and
 *    rules see each series whole. Its state, watermark and commits are per repartition partition.
 *
 * Exactly once across the hop, by source coordinates: a first stage that crashes before its
 * commit forwards the same points again, so each repartition partition keeps, per source
 * partition, the highest source offset it applied, and skips points at or below it. Those marks
 * travel in the repartition partition's commit metadata, as of the committed offset (a replay
 * from there rebuilds bucket state from the same records, so they must not be skipped then).
 *
 * Watermark: the least of the sources' event-time maxima (as Flink merges input channels), so a
 * source partition that lags makes no one else's points late. Never moves backwards. A source
 * whose messages forward nothing (keyed, under `auto`) reports its progress in records without
 * points; it stops holding the watermark back only when its first stage says it is idle (a
 * record with the `idle` header, repeated while it lasts: Flink's idleness, declared by the source
 * rather than guessed by the reader); when one source resumes, the idle ones hold it again until
 * they repeat that they still are. The reader's own wall clock decides nothing, so a source whose instance is killed,
 * slow or rebalancing holds the watermark until its new owner replays it, and a replay of the
 * repartition partition sees the same records, so the same watermarks, as the first run.
 */
export const REPARTITION_HEADERS = {
  /** `topic/partition` of the source partition. */
  source: 'vigil-source',
  /**
   * `offset:index`, the last source point the record covers: for a source partition's last
   * record of a task, the task's last offset and index 4294967295 (every point of its messages).
   */
  through: 'vigil-source-through',
  /** The source partition's highest event time after those messages (ms). */
  maxMs: 'vigil-source-max-ms',
  /** `1`: the source has nothing to forward for now (a record without points). */
  idle: 'vigil-source-idle',
  /**
   * `2`: the rows carry the series' tenant after its tags (POINT_COLUMNS since issue 18); a
   * record without it was written before, without the column (read as the default tenant).
   */
  layout: 'vigil-layout',
} as const;

/** The row layout this version writes (REPARTITION_HEADERS.layout). */
export const REPARTITION_LAYOUT = '2';

export function repartitionTopicOf(config: VigilConfig): string {
  return config.kafka.repartitionTopic || `${config.kafka.groupId}-repartition`;
}

/** Whether a metrics message's points go through the repartition topic. */
export function forwards(mode: VigilConfig['kafka']['repartition'], message: KafkaMessage): boolean {
  if (mode === 'never') return false;
  if (mode === 'always') return true;
  return !message.key || message.key.length === 0;
}

/** Point index standing for "every point of the message". */
export const ALL_POINTS = 0xffffffff;

/** The headers of one forwarded record. */
export function forwardHeaders(source: string, throughOffset: number, throughIndex: number, maxMs: number): IHeaders {
  return { [REPARTITION_HEADERS.source]: source, [REPARTITION_HEADERS.through]: `${throughOffset}:${throughIndex}`, [REPARTITION_HEADERS.maxMs]: String(maxMs), [REPARTITION_HEADERS.layout]: REPARTITION_LAYOUT };
}

/** The headers of a source's record without points: its mark unchanged, its maximum so far, and whether it is idle. */
export function progressHeaders(source: string, maxMs: number, idle: boolean): IHeaders {
  const headers = forwardHeaders(source, -1, 0, maxMs);
  return idle ? { ...headers, [REPARTITION_HEADERS.idle]: '1' } : headers;
}

/** Whether a repartition record's rows carry the tenant column (REPARTITION_HEADERS.layout). */
export function withTenant(m: KafkaMessage): boolean {
  return header(m, REPARTITION_HEADERS.layout) === REPARTITION_LAYOUT;
}

export function header(m: KafkaMessage, name: string): string | undefined {
  const v = m.headers?.[name];
  const x = Array.isArray(v) ? v[0] : v;
  return x === undefined ? undefined : x.toString();
}

/** A source partition as one repartition partition knows it. */
export interface SourceMark {
  /** The last source point applied: offset and index. */
  offset: number;
  index: number;
  /** Its highest event time (ms). */
  maxMs: number;
  /** Its last record said it is idle: it does not hold the watermark back until it sends again. */
  idle: boolean;
}

/** The marks as commit metadata carries them: `{ "topic/partition": [offset, index, maxMs, idle] }`. */
export type SourceMarks = Record<string, [number, number, number, boolean]>;

const before = (a: { offset: number; index: number }, b: { offset: number; index: number }) => a.offset < b.offset || (a.offset === b.offset && a.index < b.index);

interface Change {
  offset: number;
  source: string;
  mark: SourceMark;
}

/**
 * One repartition partition's source marks and watermark, advanced record by record in offset
 * order as its tasks are dispatched; `marksBefore(offset)` gives them as of any later commit. A
 * pure function of the records (and the marks restored from the last commit): a replay computes
 * the same watermarks.
 */
export class SourceLog {
  private readonly base = new Map<string, SourceMark>();
  private readonly current = new Map<string, SourceMark>();
  private changes: Change[] = [];
  /** Changes before this offset are folded into `base` (the last commit). */
  private foldedBefore = -1;
  private watermark: number;

  /**
   * `expected`: the source partitions that exist (the metric topics' partitions when the pipeline
   * started): each holds the watermark back until it reports (points, or idle).
   */
  constructor(marks: SourceMarks | undefined, watermark: number, expected: readonly string[]) {
    this.watermark = watermark;
    for (const [source, [offset, index, maxMs, idle]] of Object.entries(marks ?? {})) {
      this.base.set(source, { offset, index, maxMs, idle });
      this.current.set(source, { offset, index, maxMs, idle });
    }
    for (const source of expected) if (!this.current.has(source)) this.current.set(source, { offset: -1, index: ALL_POINTS, maxMs: -Infinity, idle: false });
  }

  /**
   * Record `m` at repartition offset `offset`: the source offset through which its points are
   * duplicates, and the watermark before it; then its source's mark advances.
   */
  admit(offset: number, m: KafkaMessage): { skipOffset: number; skipIndex: number; watermarkBefore: number } {
    const source = header(m, REPARTITION_HEADERS.source) ?? '';
    const [o, i] = (header(m, REPARTITION_HEADERS.through) ?? '-1:0').split(':');
    const through = { offset: Number(o), index: Number(i) };
    const maxMs = Number(header(m, REPARTITION_HEADERS.maxMs) ?? -Infinity);
    const watermarkBefore = this.watermark;
    const prev = this.current.get(source) ?? { offset: -1, index: ALL_POINTS, maxMs: -Infinity, idle: false };
    const last = before(prev, through) ? through : prev;
    const idle = header(m, REPARTITION_HEADERS.idle) === '1';
    const mark = { offset: last.offset, index: last.index, maxMs: Math.max(prev.maxMs, maxMs), idle };
    this.current.set(source, mark);
    this.changes.push({ offset, source, mark });
    // A source resumes: the sources idle so far hold the watermark again until they say they still
    // are (their first stages repeat it every rollups.idleTimeoutMs), so that sources resuming
    // together (a backfill starting on idle partitions) do not make each other's points late.
    if (prev.idle && !idle) {
      for (const [other, o] of this.current) {
        if (!o.idle) continue;
        const woken = { ...o, idle: false };
        this.current.set(other, woken);
        this.changes.push({ offset, source: other, mark: woken });
      }
    }
    this.advance();
    return { skipOffset: prev.offset, skipIndex: prev.index, watermarkBefore };
  }

  /** The watermark after every record admitted so far. */
  get watermarkNow(): number {
    return this.watermark;
  }

  /** Every source said it is idle: the partition closes its buckets by wall time, as an idle one. */
  get allIdle(): boolean {
    for (const m of this.current.values()) if (!m.idle) return false;
    return this.current.size > 0;
  }

  /** The least maximum of the sources not idle; when every source is idle, the least of all. */
  private advance(): void {
    let least = Infinity;
    let leastAll = Infinity;
    for (const m of this.current.values()) {
      if (m.maxMs < leastAll) leastAll = m.maxMs;
      if (!m.idle && m.maxMs < least) least = m.maxMs;
    }
    const w = least === Infinity ? leastAll : least;
    if (w !== Infinity && w > this.watermark) this.watermark = w;
  }

  /**
   * The marks as of just before repartition offset `offset` (what a replay from there must start
   * with); null below the last commit, whose earlier changes are folded away.
   */
  marksBefore(offset: number): SourceMarks | null {
    if (offset < this.foldedBefore) return null;
    const marks = new Map(this.base);
    for (const c of this.changes) {
      if (c.offset >= offset) break;
      marks.set(c.source, c.mark);
    }
    return Object.fromEntries([...marks].map(([s, m]) => [s, [m.offset, m.index, m.maxMs, m.idle]]));
  }

  /** Offsets before `offset` are committed: their changes fold into the base. */
  committed(offset: number): void {
    if (offset <= this.foldedBefore) return;
    this.foldedBefore = offset;
    let i = 0;
    for (; i < this.changes.length && (this.changes[i] as Change).offset < offset; i++) {
      const c = this.changes[i] as Change;
      this.base.set(c.source, c.mark);
    }
    if (i > 0) this.changes = this.changes.slice(i);
  }
}

/**
 * What the stages need to know of the topics at start, in one metadata request: the repartition
 * topic's partition count, and the metric topics' partitions as `topic/partition` (the listed
 * topics, or those the pattern matches).
 */
export async function repartitionLayout(kafka: Kafka, config: VigilConfig): Promise<{ partitions: number; sources: string[] }> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const repartitionTopic = repartitionTopicOf(config);
    const internal = new Set([config.kafka.dlqTopic, config.kafka.alertsTopic, repartitionTopic]);
    const pattern = config.kafka.topicPattern ? new RegExp(config.kafka.topicPattern) : null;
    const topics = pattern ? (await admin.listTopics()).filter((t) => pattern.test(t) && !internal.has(t)) : [...config.kafka.topics];
    const meta = await admin.fetchTopicMetadata({ topics: [repartitionTopic, ...topics] });
    const partitions = meta.topics.find((t) => t.name === repartitionTopic)?.partitions.length ?? 0;
    if (partitions === 0) throw new Error(`topic ${repartitionTopic} has no partitions`);
    const sources = meta.topics.filter((t) => t.name !== repartitionTopic).flatMap((t) => t.partitions.map((p) => `${t.name}/${p.partitionId}`));
    return { partitions, sources };
  } finally {
    await admin.disconnect();
  }
}
