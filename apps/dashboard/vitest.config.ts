import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The browser test starts a coordinator, a worker and Chromium: generous limits, one file at
    // a time (the machine has few cores).
    testTimeout: 150_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
