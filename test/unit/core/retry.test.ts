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
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new Error(`fail ${calls}`);
        },
        { initialMs: 1000, maxMs: 1000, deadline: () => deadline, onRetry: (_err, ms) => delays.push(ms) },
      ),
    ).rejects.toThrow(/fail 2/);
    expect(calls).toBe(2);
    expect(delays).toHaveLength(1);
    expect(delays[0]).toBeLessThanOrEqual(30);
  });
});
