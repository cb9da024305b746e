import type { HeldOffset } from '../workers/shard-task.js';
import { ALL_POINTS, type SourceMarks } from './repartition.js';
import type { Logger } from '../core/log.js';
import { OffsetTracker, type OffsetRange, type Position } from './offsets.js';

/**
 * The commit stage: acknowledgements in, Kafka offsets and commit metadata out (DESIGN.md §7).
 * Every task's range is registered in consumption order and marked done when all its outputs are
 * durable; a partition's offset moves past the done prefix, held back to the first offset of a
 * bucket the shards still hold, with the watermark base there in the commit metadata.
 *
 * Ownership follows the consumer group's generation: `reset()` at every (re)join forgets every
 * range and position, because kafkajs re-delivers each assigned partition from its committed
 * offset after a rebalance. Work of an earlier generation may still finish (its outputs are
 * idempotent for the documented views) but never moves an offset again: a commit sent with the
 * new generation for a partition another member now owns would rewind that member.
 */

/**
 * Kafka commit metadata, per partition: the highest event time before the committed offset (the
 * watermark base a replay resumes with) and the offset up to which every output is already
 * stored (a replay re-reads from the committed offset to rebuild bucket state, but does not
 * write those messages' points and dead letters again).
 */
export interface CommitMeta {
  maxEventTimeMs: number;
  storedUpTo: number;
  /** Repartition-topic partitions: each source partition's mark as of the committed offset (pipeline/repartition.ts). */
  sources?: SourceMarks;
}

/** What a commit needs to know of the last durable task before it. */
export interface DoneMeta {
  /** The partition's highest event time after the task. */
  maxAfterMs: number;
  /** The lowest bucket offset the shards still held after the task (null: none). */
  held: HeldOffset | null;
}

export interface OffsetCommit {
  topic: string;
  partition: number;
  offset: string;
  metadata: string;
}

const finiteOrNull = (v: number): number | null => (Number.isFinite(v) ? v : null);

export function commitMetadata(meta: CommitMeta): string {
  const out: Record<string, unknown> = { v: 1, maxEventTimeMs: finiteOrNull(meta.maxEventTimeMs), storedUpTo: meta.storedUpTo };
  if (meta.sources) out['sources'] = packSources(meta.sources, meta.maxEventTimeMs);
  return JSON.stringify(out);
}

/**
 * Source marks in little room (Kafka's `offset.metadata.max.bytes` is 4,096 by default): grouped
 * by topic, `partition: [offset, maxMs − base]` (base: the partition's own watermark base, 0 when
 * it has none; null for an unknown maxMs), then the point index when it is not ALL_POINTS (a
 * record cut inside a message) or the source is idle, then 1 when it is idle. About 20 bytes per
 * source partition: some 180 fit.
 */
function packSources(sources: SourceMarks, watermark: number): Record<string, Record<string, (number | null)[]>> {
  const base = Number.isFinite(watermark) ? watermark : 0;
  const out: Record<string, Record<string, (number | null)[]>> = {};
  for (const [key, [offset, index, maxMs, idle]] of Object.entries(sources)) {
    const slash = key.lastIndexOf('/');
    const cell: (number | null)[] = [offset, Number.isFinite(maxMs) ? maxMs - base : null];
    if (index !== ALL_POINTS || idle) cell.push(index);
    if (idle) cell.push(1);
    (out[key.slice(0, slash)] ??= {})[key.slice(slash + 1)] = cell;
  }
  return out;
}

function unpackSources(packed: unknown, watermark: number): SourceMarks {
  const base = Number.isFinite(watermark) ? watermark : 0;
  const sources: SourceMarks = {};
  if (!packed || typeof packed !== 'object') return sources;
  for (const [topic, parts] of Object.entries(packed as Record<string, unknown>)) {
    if (!parts || typeof parts !== 'object') continue;
    for (const [partition, cell] of Object.entries(parts as Record<string, unknown>)) {
      if (!Array.isArray(cell) || typeof cell[0] !== 'number') continue;
      sources[`${topic}/${partition}`] = [cell[0], typeof cell[2] === 'number' ? cell[2] : ALL_POINTS, typeof cell[1] === 'number' ? base + cell[1] : -Infinity, cell[3] === 1];
    }
  }
  return sources;
}

export function parseCommitMetadata(metadata: string | null | undefined): CommitMeta {
  const none = { maxEventTimeMs: -Infinity, storedUpTo: -1 };
  if (!metadata) return none;
  try {
    const parsed = JSON.parse(metadata) as { maxEventTimeMs?: unknown; storedUpTo?: unknown; sources?: unknown };
    const meta: CommitMeta = {
      maxEventTimeMs: typeof parsed.maxEventTimeMs === 'number' ? parsed.maxEventTimeMs : -Infinity,
      storedUpTo: typeof parsed.storedUpTo === 'number' ? parsed.storedUpTo : -1,
    };
    if (parsed.sources !== undefined) meta.sources = unpackSources(parsed.sources, meta.maxEventTimeMs);
    return meta;
  } catch {
    return none;
  }
}

export const partitionKey = (topic: string, partition: number): string => `${topic}/${partition}`;

/**
 * The offsets to commit now (pure): each position held back to the first offset of a bucket
 * still held after its last task, with the watermark base at the committed offset; only
 * partitions whose offset or stored-up-to moved past what was last committed. The held state
 * must be the one as of the last durable task: a later task may already have released a bucket
 * whose final row is still waiting for its insert.
 */
export function offsetsToCommit(
  positions: readonly Position<DoneMeta>[],
  storedUpToOf: (key: string) => number,
  lastCommitted: ReadonlyMap<string, { offset: number; storedUpTo: number; maxEventTimeMs?: number }>,
  sourcesAt: (key: string, offset: number) => SourceMarks | null | undefined = () => undefined,
): OffsetCommit[] {
  const out: OffsetCommit[] = [];
  for (const pos of positions) {
    const key = partitionKey(pos.topic, pos.partition);
    let offset = pos.offset;
    let maxBefore = pos.meta.maxAfterMs;
    const held = pos.meta.held;
    if (held && held.offset < offset) {
      offset = held.offset;
      maxBefore = held.maxBeforeMs;
    }
    const storedUpTo = Math.max(pos.offset, storedUpToOf(key));
    const last = lastCommitted.get(key) ?? { offset: -1, storedUpTo: -1 };
    if (offset > last.offset || storedUpTo > last.storedUpTo) {
      let sources = sourcesAt(key, offset);
      if (sources === null) {
        // A repartition partition's marks below its last commit are folded away (a held bucket
        // moved the offset back, e.g. a counter's base point): stay at the last commit, whose
        // marks are known. A replay then lacks that base point (one rate), never skips points.
        offset = last.offset;
        maxBefore = last.maxEventTimeMs ?? maxBefore;
        sources = sourcesAt(key, offset);
      }
      out.push({ topic: pos.topic, partition: pos.partition, offset: String(offset), metadata: commitMetadata({ maxEventTimeMs: maxBefore, storedUpTo, ...(sources ? { sources } : {}) }) });
    }
  }
  return out;
}

export interface CommitTarget {
  commitOffsets(offsets: OffsetCommit[]): Promise<void>;
  /** Repartition-topic partitions: the source marks as of an offset about to be committed (null: no longer known). */
  sourcesAt?(key: string, offset: number): SourceMarks | null | undefined;
  /** An offset was committed. */
  committed?(key: string, offset: number): void;
}

export class Committer {
  private tracker = new OffsetTracker<DoneMeta>();
  private readonly committed = new Map<string, { offset: number; storedUpTo: number; maxEventTimeMs: number }>();
  private chain: Promise<void> = Promise.resolve();
  private generation = 0;
  /** Wall time of the last commit that moved an offset or stored-up-to (readiness watches it). */
  lastProgressAt = Date.now();
  commits = 0;

  constructor(
    private readonly target: CommitTarget,
    private readonly log: Logger,
  ) {}

  /** The consumer group's generation as this stage counts it (one per join). */
  get epoch(): number {
    return this.generation;
  }

  /** A new generation (the next one, or the consumer's number for it): every range and position of the last one is forgotten. */
  reset(generation = this.generation + 1): number {
    this.tracker = new OffsetTracker<DoneMeta>();
    this.committed.clear();
    this.lastProgressAt = Date.now();
    this.generation = generation;
    return generation;
  }

  register(range: OffsetRange): OffsetRange {
    return this.tracker.register(range);
  }

  /** The range's outputs are durable. A range of an earlier generation changes nothing. */
  done(epoch: number, range: OffsetRange, meta: DoneMeta): void {
    if (epoch === this.generation) this.tracker.done(range, meta);
  }

  /**
   * The shards hold less of a drained partition than its last task reported (its series state
   * written at shutdown): the position's hold becomes `held`. A range of it not yet done, or an
   * earlier generation, changes nothing.
   */
  release(epoch: number, topic: string, partition: number, held: HeldOffset | null): boolean {
    return epoch === this.generation && this.tracker.amend(topic, partition, (meta) => ({ ...meta, held }));
  }

  /** Commits what became committable; serialised so that offsets only move forward. */
  commit(storedUpToOf: (key: string) => number): Promise<void> {
    const epoch = this.generation;
    this.chain = this.chain.then(async () => {
      if (epoch !== this.generation) return;
      const offsets = offsetsToCommit(this.tracker.positions(), storedUpToOf, this.committed, (key, offset) => this.target.sourcesAt?.(key, offset));
      if (offsets.length === 0) return;
      try {
        await this.target.commitOffsets(offsets);
        if (epoch !== this.generation) return;
        for (const o of offsets) {
          const key = partitionKey(o.topic, o.partition);
          const meta = parseCommitMetadata(o.metadata);
          this.committed.set(key, { offset: Number(o.offset), storedUpTo: meta.storedUpTo, maxEventTimeMs: meta.maxEventTimeMs });
          this.target.committed?.(key, Number(o.offset));
        }
        this.lastProgressAt = Date.now();
        this.commits++;
      } catch (err) {
        this.log.warn({ err }, 'offset commit failed; will retry with the next commit');
      }
    });
    return this.chain;
  }

  /** Resolves when every commit asked for so far has been sent (or failed). */
  settled(): Promise<void> {
    return this.chain;
  }
}
