import { describe, expect, it, vi } from 'vitest';
import { retry } from '../../../core/retry.js';

describe('retry', () => {
  it('retries until the operation succeeds, doubling the delay up to the maximum', async () => {
    const delays: number[] = [];
    let calls = 0;
    const value = await retry(
      async () => {
        if (++calls < 5) throw new Error(`fail ${calls}`);
        return 'ok';
      },
      { initialMs: 1, maxMs: 4, onRetry: (_err, ms) => delays.push(ms) },
    );
    expect(value).toBe('ok');
    expect(calls).toBe(5);
    expect(delays).toEqual([1, 2, 4, 4]);
  });

  it('throws a permanent error at once', async () => {
    let calls = 0;
    const permanent = new Error('never');
    await expect(
      retry(
        async () => {
          calls++;
          throw permanent;
        },
        { initialMs: 1, maxMs: 1, retryable: (err) => err !== permanent },
      ),
    ).rejects.toBe(permanent);
    expect(calls).toBe(1);
  });

  it('throws the last failure once the deadline has passed, never sleeping past it', async () => {
    // A clock of its own (each attempt takes 20 ms of it): the real one can tick between the
    // retry's reading and the test's, which made "never past the deadline" flaky by 1 ms.
    let now = 1_000;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => now);
    const deadline = now + 30;
    const delays: number[] = [];
    /** When each sleep would end: never past the deadline. */
    const wakes: number[] = [];
    let calls = 0;
    try {
      const err = await retry(
        async () => {
          calls++;
          now += 20;
          throw new Error(`fail ${calls}`);
        },
        {
          initialMs: 1000,
          maxMs: 1000,
          deadline: () => deadline,
          onRetry: (_err, ms) => {
            delays.push(ms);
            wakes.push(now + ms);
          },
        },
      ).then(
        () => null,
        (e: unknown) => e as Error,
      );
      // The backoff (1 s) is cut to what is left of the deadline (10 ms after the first attempt);
      // the second attempt ends past it, and its error is the one thrown.
      expect(calls).toBe(2);
      expect(err?.message).toBe('fail 2');
      expect(delays).toEqual([10]);
      for (const w of wakes) expect(w).toBeLessThanOrEqual(deadline);
    } finally {
      clock.mockRestore();
    }
  });
});
