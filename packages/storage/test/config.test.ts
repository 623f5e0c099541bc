import { describe, expect, it } from 'vitest';
import {
  createObjectStore,
  LocalObjectStore,
  objectStoreConfigFromEnv,
  S3ObjectStore,
} from '../src/index.js';

const defaults = { root: '/srv/archipelago/objects', secret: 'sixteen-bytes-or-more' };

describe('objectStoreConfigFromEnv', () => {
  it('defaults to the local store', () => {
    expect(objectStoreConfigFromEnv({}, defaults)).toEqual({ kind: 'local', ...defaults });
    expect(objectStoreConfigFromEnv({ ARCHIPELAGO_S3_BUCKET: ' ' }, defaults).kind).toBe('local');
  });

  it('selects S3 from ARCHIPELAGO_S3_* variables', () => {
    expect(
      objectStoreConfigFromEnv(
        {
          ARCHIPELAGO_S3_BUCKET: 'ckpts',
          ARCHIPELAGO_S3_PREFIX: 'prod',
          ARCHIPELAGO_S3_ENDPOINT: 'http://minio:9000',
          ARCHIPELAGO_S3_REGION: 'eu-west-1',
          AWS_REGION: 'us-west-2',
          ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
        },
        defaults,
      ),
    ).toEqual({
      kind: 's3',
      bucket: 'ckpts',
      prefix: 'prod',
      endpoint: 'http://minio:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
    });
  });

  it('falls back to AWS_REGION and parses booleans strictly', () => {
    const env = { ARCHIPELAGO_S3_BUCKET: 'b', AWS_REGION: 'us-west-2' };
    expect(objectStoreConfigFromEnv(env, defaults)).toEqual({
      kind: 's3',
      bucket: 'b',
      region: 'us-west-2',
    });
    expect(
      objectStoreConfigFromEnv({ ...env, ARCHIPELAGO_S3_FORCE_PATH_STYLE: '0' }, defaults),
    ).toMatchObject({ forcePathStyle: false });
    expect(() =>
      objectStoreConfigFromEnv({ ...env, ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'maybe' }, defaults),
    ).toThrow(/ARCHIPELAGO_S3_FORCE_PATH_STYLE/);
  });

  it('refuses S3 settings without a bucket instead of silently using local disk', () => {
    expect(() =>
      objectStoreConfigFromEnv({ ARCHIPELAGO_S3_ENDPOINT: 'http://minio:9000' }, defaults),
    ).toThrow(/ARCHIPELAGO_S3_ENDPOINT set without ARCHIPELAGO_S3_BUCKET/);
  });
});

describe('createObjectStore', () => {
  it('builds the store the config names', async () => {
    const local = createObjectStore({ kind: 'local', ...defaults });
    expect(local).toBeInstanceOf(LocalObjectStore);
    expect(local.description).toBe('local:/srv/archipelago/objects');
    const s3 = createObjectStore({ kind: 's3', bucket: 'b', prefix: '/p/q/', region: 'eu-west-1' });
    expect(s3).toBeInstanceOf(S3ObjectStore);
    expect(s3.description).toBe('s3://b/p/q');
    await s3.close();
  });
});
