import type { AlertEvent } from '../../sinks/alerts/event.js';

/** What the queue needs of the pipeline around it (Ingestor; stand-ins in tests). */
export interface PublishQueueHost {
  /** The consumer group generation now. */
  epoch(): number;
  /** Resolves once no rebalance is under way (PartitionConsumer.settledGeneration). */
  settledGeneration(): Promise<void>;
  /** Runs `op` until it succeeds; rejects only when it gives up (the shutdown deadline). */
  retry(op: () => Promise<unknown>): Promise<void>;
  /** Makes the events durable (Alerting.publish). */
  publish(events: readonly AlertEvent[], stored?: Promise<unknown>): Promise<void>;
  /** Forgets events that will not be published (Alerting.withdraw). */
  withdraw(events: readonly AlertEvent[]): void;
}

interface Queued {
  events: readonly AlertEvent[];
  withdrawn: boolean;
}

/**
 * The alert events of the pipeline's tasks on their way to the alerts topic and table, one
 * publish after the other in the order the lifecycle made them (two in flight at once could land
 * a resolve before its firing when the first one's send is retried, seen in the chaos test under
 * kills). Each belongs to the consumer group generation of the work that made it:
 *
 * - a new generation withdraws every publish still waiting for its turn (`endGeneration`), at
 *   once, before the replay re-derives those events (a copy made again while the old one still
 *   waited would count as published, then be forgotten: lost);
 * - a publish whose turn comes during a rebalance waits for its end, then is withdrawn: another
 *   member may be about to read the topic and table as its partitions' next owner;
 * - a publish retried past its generation's end withdraws what it has not produced (what it has is
 *   on the topic, which a restore reads).
 *
 * Series state is written only once every publish before it is durable (`durable`), and never
 * after one was given up.
 */
export class AlertPublishQueue {
  private tail: Promise<void> = Promise.resolve();
  private readonly waiting = new Set<Queued>();
  private gaveUp = false;

  constructor(private readonly host: PublishQueueHost) {}

  /** Publishes `events` after the ones queued before; resolves when durable (or withdrawn). */
  push(events: readonly AlertEvent[], stored?: Promise<unknown>): Promise<void> {
    const epoch = this.host.epoch();
    const queued: Queued = { events, withdrawn: false };
    this.waiting.add(queued);
    const published = this.tail.then(async () => {
      await this.host.settledGeneration();
      this.waiting.delete(queued);
      if (queued.withdrawn) return;
      await this.host.retry(async () => (epoch === this.host.epoch() ? this.host.publish(events, stored) : this.host.withdraw(events)));
    });
    // A publish given up (the shutdown deadline) does not stop the ones after it from trying.
    this.tail = published.catch(() => {
      this.gaveUp = true;
    });
    return published;
  }

  /** A new generation: every publish still waiting is withdrawn now. */
  endGeneration(): void {
    for (const queued of this.waiting) {
      queued.withdrawn = true;
      this.host.withdraw(queued.events);
    }
    this.waiting.clear();
  }

  /** Resolves when every publish queued so far has ended (durable, withdrawn or given up). */
  settled(): Promise<void> {
    return this.tail;
  }

  /** Resolves once every publish queued so far has ended; true when none was given up (state may be written). */
  async durable(): Promise<boolean> {
    await this.tail;
    return !this.gaveUp;
  }
}
