import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Tests import, cluster and spawn real processes: generous per-test time, one file at a time
    // per core.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // s3rver encrypts list continuation tokens with DES, which OpenSSL 3 offers only through its
    // legacy provider (the S3 store test lists and deletes prefixes).
    execArgv: ['--openssl-legacy-provider'],
  },
});
