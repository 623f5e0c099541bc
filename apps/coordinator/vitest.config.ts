import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Tests import, cluster and spawn real processes: generous per-test time, one file at a time
    // per core.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
