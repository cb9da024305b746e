import { describe, expect, it } from 'vitest';
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
    const deadline = Date.now() + 30;
    const delays: number[] = [];
    /** When each sleep would end: never past the deadline. */
    const wakes: number[] = [];
    let calls = 0;
    const err = await retry(
      async () => {
        calls++;
        throw new Error(`fail ${calls}`);
      },
      {
        initialMs: 1000,
        maxMs: 1000,
        deadline: () => deadline,
        onRetry: (_err, ms) => {
          delays.push(ms);
          wakes.push(Date.now() + ms);
        },
      },
    ).then(
      () => null,
      (e: unknown) => e as Error,
    );
    // The backoff (1 s) is cut to what is left of the deadline (a timer may wake a moment early,
    // so one more short attempt can fit); the error is the last attempt's.
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(err?.message).toBe(`fail ${calls}`);
    expect(delays).toHaveLength(calls - 1);
    // Cut to what was left at each failure (a timer that wakes a moment early may leave 1 ms for
    // one more), never the 1 s backoff and never past the deadline.
    for (const w of wakes) expect(w).toBeLessThanOrEqual(deadline);
    expect(Math.max(...delays)).toBeLessThanOrEqual(30);
  });
});
