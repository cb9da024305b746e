/**
 * Per-partition offset tracking for out-of-order completion. Work on a partition is registered
 * in consumption order as ranges of offsets; ranges finish in any order; the committable offset
 * only moves past a range once it and every range before it are done (acknowledge after the
 * sink: an offset moves only when everything derived from the messages before it is durable).
 * Each done range carries metadata of the owner's (Vigil's: the watermark base and the buckets
 * held after it), reported with the position it ends.
 */
export interface OffsetRange {
  readonly topic: string;
  readonly partition: number;
  readonly first: number;
  readonly last: number;
}

interface Entry<M> {
  range: OffsetRange;
  done: boolean;
  meta: M | undefined;
}

export interface Position<M> {
  topic: string;
  partition: number;
  /** Next offset to read. */
  offset: number;
  /** Metadata of the last range before it. */
  meta: M;
}

export class OffsetTracker<M = undefined> {
  private readonly partitions = new Map<string, { topic: string; partition: number; queue: Entry<M>[]; position: Position<M> | undefined; last: number }>();

  private static key(topic: string, partition: number): string {
    return `${topic}\u0000${partition}`;
  }

  private state(topic: string, partition: number) {
    const k = OffsetTracker.key(topic, partition);
    let s = this.partitions.get(k);
    if (!s) {
      s = { topic, partition, queue: [], position: undefined, last: -1 };
      this.partitions.set(k, s);
    }
    return s;
  }

  /** Registers a range; ranges of one partition must be registered in offset order. */
  register(range: OffsetRange): OffsetRange {
    const s = this.state(range.topic, range.partition);
    // Compared with the last range ever registered, not only the queued ones: a range behind a
    // finished one would otherwise let the position skip it.
    if (range.first <= s.last) {
      throw new Error(`offset range ${range.first}-${range.last} of ${range.topic}/${range.partition} overlaps one registered before (up to ${s.last})`);
    }
    s.last = range.last;
    s.queue.push({ range, done: false, meta: undefined });
    return range;
  }

  /** Marks a range done and advances the partition's position past the done prefix. */
  done(range: OffsetRange, meta: M): void {
    const s = this.state(range.topic, range.partition);
    const entry = s.queue.find((e) => e.range === range);
    if (!entry) throw new Error(`offset range ${range.first}-${range.last} of ${range.topic}/${range.partition} was never registered or is already done`);
    entry.done = true;
    entry.meta = meta;
    while (s.queue.length > 0 && (s.queue[0] as Entry<M>).done) {
      const head = s.queue.shift() as Entry<M>;
      s.position = { topic: s.topic, partition: s.partition, offset: head.range.last + 1, meta: head.meta as M };
    }
  }

  /**
   * Replaces the metadata of a partition's position when every range registered for it is done
   * (false otherwise, or when it has no position): what it holds changed after its last range.
   */
  amend(topic: string, partition: number, update: (meta: M) => M): boolean {
    const s = this.partitions.get(OffsetTracker.key(topic, partition));
    if (!s?.position || s.queue.length > 0) return false;
    s.position = { ...s.position, meta: update(s.position.meta) };
    return true;
  }

  /** The position of every partition with finished work. */
  positions(): Position<M>[] {
    const out: Position<M>[] = [];
    for (const s of this.partitions.values()) if (s.position) out.push(s.position);
    return out;
  }

  get pendingRanges(): number {
    let n = 0;
    for (const s of this.partitions.values()) n += s.queue.length;
    return n;
  }
}
