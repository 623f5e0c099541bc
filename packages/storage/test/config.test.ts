import { describe, expect, it } from 'vitest';
import { createObjectStore, LocalObjectStore, S3ObjectStore } from '../src/index.js';

const defaults = { root: '/srv/archipelago/objects', secret: 'sixteen-bytes-or-more' };

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
