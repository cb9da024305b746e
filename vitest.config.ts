import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration tests share one Kafka broker and one ClickHouse server on a 2-core machine:
    // files run one after another so their timings and resource use do not interfere.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
