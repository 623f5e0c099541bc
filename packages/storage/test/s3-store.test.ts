import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore, type S3ObjectStoreOptions, sha256Hex } from '../src/index.js';
import { collectList, describeObjectStoreContract } from './contract.js';

const BUCKET = 'archipelago-test';

interface S3Fixture {
  options: Omit<S3ObjectStoreOptions, 'bucket'>;
  teardown(): Promise<void>;
}

/** A real s3rver on an ephemeral port, backed by a temp directory. */
async function startS3rver(): Promise<S3Fixture> {
  const directory = await mkdtemp(path.join(tmpdir(), 'archipelago-s3rver-'));
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: [{ name: BUCKET }],
  });
  const { port } = await server.run();
  return {
    options: {
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    },
    async teardown() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

describeObjectStoreContract('S3ObjectStore', async () => {
  const s3 = await startS3rver();
  // A prefix, and pages of 7 keys so the 31-key listing really paginates.
  const store = new S3ObjectStore({
    bucket: BUCKET,
    prefix: 'contract/',
    listPageSize: 7,
    ...s3.options,
  });
  return {
    store,
    async teardown() {
      await store.close();
      await s3.teardown();
    },
  };
});

describe('S3ObjectStore specifics', () => {
  let s3: S3Fixture;
  let store: S3ObjectStore;

  beforeAll(async () => {
    s3 = await startS3rver();
    store = new S3ObjectStore({ bucket: BUCKET, prefix: 'specifics', ...s3.options });
  });

  afterAll(async () => {
    await store.close();
    await s3.teardown();
  });

  // s3rver does not verify SigV4 signatures (it only parses them), so these tests check what
  // the URL signs; that S3 rejects tampered URLs or other sizes is AWS's part of the contract.
  it('signs content-length and the sha256 checksum into presigned PUTs', async () => {
    const sha256 = sha256Hex(Buffer.from('payload'));
    const presigned = await store.presignPut('signed/put', {
      ttlSeconds: 300,
      bytes: 7,
      sha256,
      contentType: 'application/octet-stream',
    });
    const url = new URL(presigned.url);
    const signed = (url.searchParams.get('X-Amz-SignedHeaders') ?? '').split(';');
    expect(signed).toContain('content-length');
    expect(signed).toContain('x-amz-checksum-sha256');
    expect(signed).toContain('host');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('300');
    expect(url.searchParams.get('x-amz-meta-sha256')).toBe(sha256);
    expect(url.pathname).toBe(`/${BUCKET}/specifics/signed/put`);
    // No checksum of an empty body sneaks in (the SDK default would add CRC32 of "").
    expect(url.searchParams.has('x-amz-checksum-crc32')).toBe(false);
    expect(presigned.headers).toEqual({
      'content-length': '7',
      'content-type': 'application/octet-stream',
      'x-amz-checksum-sha256': Buffer.from(sha256, 'hex').toString('base64'),
    });
    const response = await fetch(presigned.url, {
      method: 'PUT',
      headers: presigned.headers,
      body: 'payload',
    });
    expect(response.status).toBe(200);
    expect(await store.head('signed/put')).toMatchObject({ bytes: 7, sha256 });
  });

  // What a create-only URL asks of S3; S3 and MinIO refuse the PUT with 412 once the key exists.
  // s3rver ignores If-None-Match (it overwrites), so the coordinator never relies on it alone:
  // every upload gets a key of its own that is presigned once, and accepted checkpoints live at
  // content-addressed keys that are never presigned for PUT (tested in the coordinator's suite).
  it('signs if-none-match: * into a create-only presigned PUT', async () => {
    const presigned = await store.presignPut('signed/once', {
      ttlSeconds: 60,
      bytes: 4,
      createOnly: true,
    });
    const signed = (new URL(presigned.url).searchParams.get('X-Amz-SignedHeaders') ?? '').split(
      ';',
    );
    expect(signed).toContain('if-none-match');
    expect(presigned.headers).toMatchObject({ 'if-none-match': '*', 'content-length': '4' });
    const response = await fetch(presigned.url, {
      method: 'PUT',
      headers: presigned.headers,
      body: 'once',
    });
    expect(response.status).toBe(200);
    expect((await store.getBytes('signed/once')).toString()).toBe('once');
  });

  it('cannot bound maxBytes in a presigned PUT: it only signs host', async () => {
    const presigned = await store.presignPut('signed/max', { ttlSeconds: 60, maxBytes: 10 });
    expect(new URL(presigned.url).searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(presigned.headers).toEqual({});
  });

  it('keeps keys relative to its prefix', async () => {
    const root = new S3ObjectStore({ bucket: BUCKET, ...s3.options });
    try {
      await store.put('rel/a', Buffer.from('a'));
      expect((await collectList(store, 'rel/')).map((e) => e.key)).toEqual(['rel/a']);
      expect((await collectList(root, 'specifics/rel/')).map((e) => e.key)).toEqual([
        'specifics/rel/a',
      ]);
      expect((await root.getBytes('specifics/rel/a')).toString()).toBe('a');
      expect(store.description).toBe(`s3://${BUCKET}/specifics at ${s3.options.endpoint}`);
    } finally {
      await root.close();
    }
  });

  it('ensureBucket creates a missing bucket and is idempotent', async () => {
    const fresh = new S3ObjectStore({ bucket: 'created-by-ensure', ...s3.options });
    try {
      await expect(fresh.head('x')).resolves.toBeNull();
      await expect(fresh.put('x', Buffer.from('x'))).rejects.toThrow(/bucket/i);
      await fresh.ensureBucket();
      await fresh.ensureBucket();
      await fresh.put('x', Buffer.from('x'));
      expect((await fresh.getBytes('x')).toString()).toBe('x');
    } finally {
      await fresh.close();
    }
  });
});
