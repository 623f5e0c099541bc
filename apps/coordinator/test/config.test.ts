import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, SCORE_SAMPLES_DEFAULT } from '../src/config.js';

describe('loadConfig', () => {
  it('has working defaults', () => {
    const c = loadConfig({}, {});
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      logLevel: 'info',
      jobConcurrency: 1,
      computeThreads: 1,
      publicUrl: 'http://127.0.0.1:8080',
      publicUrlExplicit: false,
    });
    expect(c.dataDir).toBe(path.resolve('./data'));
    expect(c.s3).toBeUndefined();
  });

  it('reads the environment, and flags win over it', () => {
    const env = {
      ARCHIPELAGO_PORT: '9000',
      ARCHIPELAGO_DATA_DIR: '/srv/arch',
      ARCHIPELAGO_LOG_LEVEL: 'debug',
      ARCHIPELAGO_PUBLIC_URL: 'https://coord.example.org/',
    };
    const fromEnv = loadConfig({}, env);
    expect(fromEnv).toMatchObject({
      port: 9000,
      dataDir: '/srv/arch',
      logLevel: 'debug',
      publicUrl: 'https://coord.example.org',
      publicUrlExplicit: true,
    });
    expect(loadConfig({ port: 7000 }, env).port).toBe(7000);
  });

  it('scores published ensembles on scoreSamples images: 0 disables, fewer than 10 is refused', () => {
    expect(loadConfig({}, {}).scoreSamples).toBe(SCORE_SAMPLES_DEFAULT);
    expect(loadConfig({}, { ARCHIPELAGO_SCORE_SAMPLES: '0' }).scoreSamples).toBe(0);
    expect(loadConfig({}, { ARCHIPELAGO_SCORE_SAMPLES: '250' }).scoreSamples).toBe(250);
    expect(() => loadConfig({}, { ARCHIPELAGO_SCORE_SAMPLES: '5' })).toThrow(
      /scoreSamples.*ARCHIPELAGO_SCORE_SAMPLES/,
    );
  });

  it('configures S3 from the environment', () => {
    const c = loadConfig(
      {},
      {
        ARCHIPELAGO_S3_BUCKET: 'bkt',
        ARCHIPELAGO_S3_ENDPOINT: 'http://minio:9000',
        ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
        AWS_REGION: 'eu-west-1',
      },
    );
    expect(c.s3).toEqual({
      bucket: 'bkt',
      endpoint: 'http://minio:9000',
      forcePathStyle: true,
      region: 'eu-west-1',
    });
  });

  it('names every invalid setting and where it comes from', () => {
    expect(() => loadConfig({}, { ARCHIPELAGO_PORT: '99999' })).toThrow(ConfigError);
    expect(() => loadConfig({}, { ARCHIPELAGO_PORT: '99999' })).toThrow(
      /port: must be <= 65535, got 99999 \(flag --port or ARCHIPELAGO_PORT\)/,
    );
    expect(() => loadConfig({ port: 'http' }, {})).toThrow(/port/);
    expect(() => loadConfig({ logLevel: 'loud' }, {})).toThrow(/logLevel.*ARCHIPELAGO_LOG_LEVEL/);
    expect(() => loadConfig({ adminKey: 'short' }, {})).toThrow(/adminKey/);
  });
});
