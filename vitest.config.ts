/**
 * One vitest configuration for every project; tools/test/vitest-run.mjs runs
 * it with --root set to the project. Integration tests touch the real kernel,
 * NATS and registries, so files run one at a time.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // CTR_TEST_INCLUDE: a target of its own over other files (e2e:chaos).
    include: process.env.CTR_TEST_INCLUDE
      ? [process.env.CTR_TEST_INCLUDE]
      : ['src/**/*.test.ts', 'lint/**/*.test.mjs', 'test/**/*.test.mjs'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
});
