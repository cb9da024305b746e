/**
 * Per-partition offset tracking for out-of-order completion. Work on a partition is registered
 * in consumption order as ranges of offsets; ranges finish in any order; the committable offset
 * only moves past a range once it and every range before it are done (acknowledge after the
 * sink: an offset moves only when everything derived from the messages before it is durable).
 */
export interface OffsetRange {
  readonly topic: string;
  readonly partition: number;
  readonly first: number;
  readonly last: number;
}

interface Entry {
  range: OffsetRange;
  done: boolean;
}

export class OffsetTracker {
  private readonly partitions = new Map<string, { queue: Entry[]; committable: number | undefined; committed: number | undefined }>();

  private key(topic: string, partition: number): string {
    return `${topic}\u0000${partition}`;
  }

  private state(topic: string, partition: number) {
    const k = this.key(topic, partition);
    let s = this.partitions.get(k);
    if (!s) {
      s = { queue: [], committable: undefined, committed: undefined };
      this.partitions.set(k, s);
    }
    return s;
  }

  /** Registers a range; ranges of one partition must be registered in offset order. */
  register(range: OffsetRange): OffsetRange {
    const s = this.state(range.topic, range.partition);
    const prev = s.queue[s.queue.length - 1];
    if (prev && range.first <= prev.range.last) {
      throw new Error(`offset range ${range.first}-${range.last} of ${range.topic}/${range.partition} overlaps ${prev.range.first}-${prev.range.last}`);
    }
    s.queue.push({ range, done: false });
    return range;
  }

  /** Marks a range done and advances the partition's committable offset past the done prefix. */
  done(range: OffsetRange): void {
    const s = this.state(range.topic, range.partition);
    const entry = s.queue.find((e) => e.range === range);
    if (!entry) return; // forgotten by a rebalance
    entry.done = true;
    while (s.queue.length > 0 && (s.queue[0] as Entry).done) {
      s.committable = (s.queue.shift() as Entry).range.last + 1;
    }
  }

  /** Offsets (next to read) that may be committed and were not yet; marks them committed. */
  takeCommittable(): { topic: string; partition: number; offset: string }[] {
    const out: { topic: string; partition: number; offset: string }[] = [];
    for (const [k, s] of this.partitions) {
      if (s.committable !== undefined && s.committable !== s.committed) {
        const [topic, partition] = k.split('\u0000') as [string, string];
        out.push({ topic, partition: Number(partition), offset: String(s.committable) });
        s.committed = s.committable;
      }
    }
    return out;
  }

  /** Un-marks offsets whose commit failed, so the next commit tries them again. */
  commitFailed(offsets: readonly { topic: string; partition: number }[]): void {
    for (const o of offsets) this.state(o.topic, o.partition).committed = undefined;
  }

  /** Drops all state of partitions this member no longer owns (after a rebalance). */
  retain(assigned: ReadonlyMap<string, readonly number[]>): void {
    for (const k of [...this.partitions.keys()]) {
      const [topic, partition] = k.split('\u0000') as [string, string];
      if (!assigned.get(topic)?.includes(Number(partition))) this.partitions.delete(k);
    }
  }

  get pendingRanges(): number {
    let n = 0;
    for (const s of this.partitions.values()) n += s.queue.length;
    return n;
  }
}
