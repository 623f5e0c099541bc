import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The end-to-end tests spawn a real coordinator and real worker processes that train tiny
    // experts: generous limits, and files one at a time (the machine has few cores).
    testTimeout: 150_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    // s3rver (the S3 end-to-end test) encrypts list continuation tokens with DES, which OpenSSL 3
    // offers only through its legacy provider.
    execArgv: ['--openssl-legacy-provider'],
  },
});
