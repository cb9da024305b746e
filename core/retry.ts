import { setTimeout as sleep } from 'node:timers/promises';

/** How `retry` backs off and when it stops. */
export interface RetryPolicy {
  /** First delay after a failure; doubled per consecutive failure up to `maxMs`. */
  initialMs: number;
  maxMs: number;
  /** Wall time (epoch ms) after which the next failure is thrown instead of retried. Default: never. */
  deadline?: () => number;
  /** False for an error that can never succeed (thrown at once). Default: every error is retried. */
  retryable?: (err: unknown) => boolean;
  /** Called for each failure that will be retried, with the delay before the next attempt. */
  onRetry?: (err: unknown, delayMs: number) => void;
}

/**
 * Runs `op` until it succeeds, backing off exponentially between failures. A permanent error
 * (per `retryable`) or a failure past the deadline is thrown: nothing is retried forever
 * without a way out.
 */
export async function retry<T>(op: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  let delay = policy.initialMs;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      if (policy.retryable && !policy.retryable(err)) throw err;
      const left = (policy.deadline?.() ?? Infinity) - Date.now();
      if (left <= 0) throw err;
      const wait = Math.min(delay, left);
      policy.onRetry?.(err, wait);
      await sleep(wait);
      delay = Math.min(policy.maxMs, delay * 2);
    }
  }
}
