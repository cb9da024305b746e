import { defineConfig } from 'vitest/config';

/**
 * The unit suite as StrykerJS runs it (`npm run test:mutation`): pure modules and their tests,
 * without the global setup (no build, no local stack), so every mutant runs in well under a second.
 */
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    // The fuzz tests take seconds and cover every decoder line: each decoder mutant would run them.
    exclude: ['test/unit/**/fuzz.test.ts', 'test/unit/pipeline/pool.test.ts', 'test/unit/pipeline/http.test.ts', 'test/unit/cli/**', 'test/unit/docker-compose.test.ts'],
    testTimeout: 30_000,
  },
});
