import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers
    // through its legacy provider; without it every paginated listing against s3rver fails.
    execArgv: ['--openssl-legacy-provider'],
  },
});
