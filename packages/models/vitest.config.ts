import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Numerical tests (thousands of samples, training steps) take seconds on a quiet core and
    // several times that on a loaded one: the limit guards against a hang, it is not a budget.
    testTimeout: 60_000,
  },
});
