import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Dataset } from '@archipelago/protocol';
import { S3ObjectStore } from '@archipelago/storage';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { type RunningServer, startServer } from '../src/server.js';
import { ADMIN_KEY, makeImageFolder } from './helpers.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function importFolder(base: string, folder: string): Promise<Dataset> {
  const headers = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
  const res = await fetch(`${base}/api/v1/datasets`, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      name: 'p',
      source: { kind: 'folder', path: folder },
      resolution: 12,
      cluster: { k: 2 },
    }),
  });
  expect(res.status).toBe(202);
  const { links } = (await res.json()) as { links: { job: string } };
  for (;;) {
    const job = (await (await fetch(`${base}${links.job}`)).json()) as {
      status: string;
      error: string;
      result: { datasetId: string };
    };
    if (job.status === 'failed') throw new Error(job.error);
    if (job.status === 'succeeded')
      return (await (
        await fetch(`${base}/api/v1/datasets/${job.result.datasetId}`)
      ).json()) as Dataset;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('presigned local-store URLs through the real server', () => {
  let dir: string;
  let server: RunningServer;
  let dataset: Dataset;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-store-'));
    server = await startServer(
      loadConfig(
        { dataDir: path.join(dir, 'data'), port: 0, logLevel: 'silent', adminKey: ADMIN_KEY },
        {},
      ),
      { handleSignals: false },
    );
    dataset = await importFolder(server.url, await makeImageFolder(dir, 2, 4));
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a presigned GET downloads a shard (and a range of it) that matches its sha256', async () => {
    const shard = dataset.clusterings[0]!.shards[0]!;
    const { url, expiresAt } = await server.coordinator.store.presignGet(shard.key, {
      ttlSeconds: 60,
    });
    expect(url.startsWith(`${server.url}/store/`)).toBe(true);
    expect(expiresAt.getTime()).toBeGreaterThan(Date.now());
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(shard.sha256);
    const ranged = await fetch(url, { headers: { range: 'bytes=0-7' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).toString('latin1')).toBe('ARCHSHD1');
  });

  it('a tampered or wrong-method URL is refused with 403 naming the problem', async () => {
    const shard = dataset.clusterings[0]!.shards[0]!;
    const { url } = await server.coordinator.store.presignGet(shard.key, { ttlSeconds: 60 });
    const other = url.replace(`shards/${shard.cluster}.bin`, `shards/${1 - shard.cluster}.bin`);
    const tampered = await fetch(other);
    expect(tampered.status).toBe(403);
    expect(((await tampered.json()) as { error: { code: string } }).error.code).toBe(
      'bad_signature',
    );
    const put = await fetch(url, { method: 'PUT', body: 'x' });
    expect(put.status).toBe(403);
  });

  it('a presigned PUT is taken only for an open checkpoint upload: any other key is refused, whatever its signature', async () => {
    const body = new Uint8Array(100_000).map((_, i) => i % 251);
    for (const key of [
      'runs/run_test/experts/0/ckpt-100.safetensors',
      'uploads/ck_000000000000.safetensors',
    ]) {
      const { url, headers } = await server.coordinator.store.presignPut(key, {
        ttlSeconds: 60,
        bytes: body.length,
        sha256: sha(body),
      });
      const refused = await fetch(url, { method: 'PUT', headers, body });
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
        'upload_closed',
      );
      expect(await server.coordinator.store.head(key)).toBeNull();
    }
    // Uploads themselves (size, hash, replays) are attacked in test/workers/attacks.test.ts.
  });
});

describe('the coordinator on an S3 store (real s3rver)', () => {
  let dir: string;
  let s3: S3rver;
  let server: RunningServer;
  const saved = { ...process.env };
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-s3-'));
    s3 = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: path.join(dir, 's3'),
      configureBuckets: [{ name: 'arch' }],
    });
    const { port } = await s3.run();
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
    const env = {
      ARCHIPELAGO_S3_BUCKET: 'arch',
      ARCHIPELAGO_S3_PREFIX: 'deploy/',
      ARCHIPELAGO_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
    };
    server = await startServer(
      loadConfig(
        { dataDir: path.join(dir, 'data'), port: 0, logLevel: 'silent', adminKey: ADMIN_KEY },
        env,
      ),
      { handleSignals: false },
    );
  });
  afterAll(async () => {
    await server.close();
    await s3.close();
    process.env = saved;
    await rm(dir, { recursive: true, force: true });
  });

  it('imports and clusters into shards stored in the bucket, readable with presigned URLs', async () => {
    expect(server.coordinator.store).toBeInstanceOf(S3ObjectStore);
    expect((await (await fetch(`${server.url}/readyz`)).json()) as object).toMatchObject({
      status: 'ready',
    });
    const ds = await importFolder(server.url, await makeImageFolder(dir, 2, 5));
    const shards = ds.clusterings[0]!.shards;
    expect(shards).toHaveLength(4);
    for (const s of shards) {
      const { url } = await server.coordinator.store.presignGet(s.key, { ttlSeconds: 60 });
      expect(url).toContain('/arch/deploy/datasets/');
      const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
      expect(sha(bytes)).toBe(s.sha256);
    }
    // Bytes live only in S3: the data dir has no local object store.
    expect(existsSync(path.join(dir, 'data', 'objects'))).toBe(false);
    const png = await fetch(`${server.url}${ds.clusterings[0]!.previewUrl}`);
    expect(png.headers.get('content-type')).toBe('image/png');
  });
});
