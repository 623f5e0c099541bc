import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeShard, encodeNpy } from '@archipelago/data';
import type { Dataset } from '@archipelago/protocol';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auth, makeApp, makeImageFolder, type TestApp, waitForJob } from './helpers.js';

async function listStore(t: TestApp, prefix: string) {
  const keys: string[] = [];
  for await (const o of t.coordinator.store.list(prefix)) keys.push(o.key);
  return keys;
}

async function importVia(t: TestApp, payload: Record<string, unknown>) {
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/v1/datasets',
    headers: auth,
    payload,
  });
  expect(res.statusCode, res.body).toBe(202);
  expect(res.headers.location).toBe(res.json().links.job);
  return waitForJob(t.app, res.json().job.id);
}

describe('dataset import and clustering', () => {
  let t: TestApp;
  let work: string;
  beforeAll(async () => {
    t = await makeApp();
    work = await mkdtemp(path.join(tmpdir(), 'arch-images-'));
  });
  afterAll(async () => {
    await t.close();
    await rm(work, { recursive: true, force: true });
  });

  it('imports the built-in MNIST digits and clusters them into K shards with a val split', async () => {
    const job = await importVia(t, {
      name: 'mnist',
      source: { kind: 'builtin', name: 'mnist' },
      cluster: { k: 3, seed: 1, valFraction: 0.05 },
    });
    expect(job.status, job.error ?? '').toBe('succeeded');
    expect(job.progress).toMatchObject({ stage: 'writing shards' });
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    expect(ds).toMatchObject({
      count: 10_000,
      width: 28,
      height: 28,
      channels: 1,
      featureKind: 'pca',
    });
    expect(ds.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const [c] = ds.clusterings;
    expect(c!.k).toBe(3);
    expect(c!.sizes.reduce((a, b) => a + b, 0)).toBe(10_000);
    expect(Math.min(...c!.sizes)).toBeGreaterThan(0);
    expect(c!.inertia).toBeGreaterThan(c!.fineInertia);
    expect(c!.shards).toHaveLength(6);
    // Every shard object is in the store, hashes to what the row says, and decodes.
    let seen = 0;
    for (const s of c!.shards) {
      const bytes = await t.coordinator.store.getBytes(s.key);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(s.sha256);
      expect(bytes.length).toBe(s.bytes);
      const set = decodeShard(bytes);
      expect(set.count).toBe(s.count);
      seen += s.count;
      const index = JSON.parse(
        (await t.coordinator.store.getBytes(s.key.replace(/\.bin$/, '.json'))).toString(),
      );
      expect(index).toMatchObject({
        format: 'archipelago.shard',
        cluster: s.cluster,
        split: s.split,
        sha256: s.sha256,
      });
    }
    expect(seen).toBe(10_000);
    for (let k = 0; k < 3; k++) {
      const train = c!.shards.find((s) => s.cluster === k && s.split === 'train')!;
      const val = c!.shards.find((s) => s.cluster === k && s.split === 'val')!;
      expect(val.count).toBe(Math.round((train.count + val.count) * 0.05));
    }
    const png = await t.app.inject({ method: 'GET', url: c!.previewUrl });
    expect(png.statusCode).toBe(200);
    expect(png.headers['content-type']).toBe('image/png');
    const meta = await sharp(png.rawPayload).metadata();
    expect(meta.width).toBeGreaterThan(28 * 2 * 8);

    // Re-clustering the stored dataset with the same seed gives the same partition.
    const again = await t.app.inject({
      method: 'POST',
      url: `/api/v1/datasets/${ds.id}/clusterings`,
      headers: auth,
      payload: { k: 3, seed: 1, valFraction: 0.05 },
    });
    const job2 = await waitForJob(t.app, again.json().job.id);
    expect(job2.status, job2.error ?? '').toBe('succeeded');
    const c2 = (
      await t.app.inject({
        method: 'GET',
        url: `/api/v1/datasets/${ds.id}/clusterings/${job2.result!.clusteringId}`,
      })
    ).json();
    expect(c2.sizes).toEqual(c!.sizes);
    expect(c2.shards.map((s: { sha256: string }) => s.sha256)).toEqual(
      c!.shards.map((s) => s.sha256),
    );
    expect(c!.assignment).toBe('semantic');

    // Random shards of the same data, K and seed: the semantic sizes, stored as random, and each
    // shard's class mix close to the whole dataset's (total variation distance).
    const rand = await t.app.inject({
      method: 'POST',
      url: `/api/v1/datasets/${ds.id}/clusterings`,
      headers: auth,
      payload: { k: 3, seed: 1, valFraction: 0.05, assignment: 'random' },
    });
    expect(rand.statusCode, rand.body).toBe(202);
    const job3 = await waitForJob(t.app, rand.json().job.id);
    expect(job3.status, job3.error ?? '').toBe('succeeded');
    const c3 = (await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${ds.id}` }))
      .json()
      .clusterings.find((x: { id: string }) => x.id === job3.result!.clusteringId);
    expect(c3.assignment).toBe('random');
    expect(c3.sizes).toEqual(c!.sizes);
    const tv = (clustering: typeof c) => {
      const whole = new Map<string, number>();
      const per = new Map<number, Map<string, number>>();
      for (const sh of clustering!.shards) {
        const h = per.get(sh.cluster) ?? new Map<string, number>();
        for (const [name, count] of Object.entries(sh.classCounts)) {
          h.set(name, (h.get(name) ?? 0) + count);
          whole.set(name, (whole.get(name) ?? 0) + count);
        }
        per.set(sh.cluster, h);
      }
      let total = 0;
      for (const [cluster, h] of per) {
        const size = clustering!.sizes[cluster]!;
        let d = 0;
        for (const [name, count] of whole) d += Math.abs((h.get(name) ?? 0) / size - count / 1e4);
        total += (size / 1e4) * (d / 2);
      }
      return total;
    };
    expect(tv(c3)).toBeLessThan(0.05);
    expect(tv(c)).toBeGreaterThan(0.3);
  });

  it('refuses an assignment it does not know, with a stable code naming the field', async () => {
    for (const assignment of ['kmeans', 'RANDOM', 1, null, { kind: 'random' }]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/datasets',
        headers: auth,
        payload: {
          name: 'x',
          source: { kind: 'builtin', name: 'mnist' },
          cluster: { k: 2, assignment },
        },
      });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().error.code).toBe('validation_error');
      expect(res.json().error.message).toContain('assignment');
    }
  });

  it('imports a folder of PNG and JPEG images with labels from sub-folders, resized to the resolution', async () => {
    const dir = await makeImageFolder(work, 3, 10);
    const job = await importVia(t, {
      name: 'patterns',
      source: { kind: 'folder', path: dir },
      resolution: 16,
      channels: 3,
      cluster: { k: 3, seed: 0 },
    });
    expect(job.status, job.error ?? '').toBe('succeeded');
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    expect(ds).toMatchObject({
      count: 30,
      width: 16,
      height: 16,
      channels: 3,
      classNames: ['class-0', 'class-1', 'class-2'],
    });
    // The three patterns are far apart: each cluster holds exactly one class.
    const c = ds.clusterings[0]!;
    for (let k = 0; k < 3; k++) {
      const counts: Record<string, number> = {};
      for (const s of c.shards.filter((x) => x.cluster === k)) {
        for (const [name, n] of Object.entries(s.classCounts))
          counts[name] = (counts[name] ?? 0) + n;
      }
      expect(Object.keys(counts)).toHaveLength(1);
    }
  });

  it('uses precomputed embeddings when given', async () => {
    const dir = await makeImageFolder(path.join(work, 'emb'), 2, 6);
    const rows = 12;
    const data = new Float32Array(rows * 4);
    // Embeddings that split the images by index parity, against the pixel classes.
    for (let i = 0; i < rows; i++) data.set(i % 2 ? [1, 0, 0, 0] : [0, 0, 0, 1], i * 4);
    const file = path.join(work, 'emb.npy');
    await writeFile(file, encodeNpy(data, [rows, 4]));
    const job = await importVia(t, {
      name: 'emb',
      source: { kind: 'folder', path: dir },
      embeddingsPath: file,
      cluster: { k: 2 },
    });
    expect(job.status, job.error ?? '').toBe('succeeded');
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    expect(ds.featureKind).toBe('embeddings');
    expect(ds.featureDim).toBe(4);
    expect(ds.clusterings[0]!.sizes.sort()).toEqual([6, 6]);
  });

  describe('bad input leaves nothing behind', () => {
    /** Store objects under datasets/ that belong to no dataset row. */
    const orphanObjects = async () => {
      const datasets = (await t.app.inject({ method: 'GET', url: '/api/v1/datasets' })).json()
        .datasets as Dataset[];
      const known = new Set(datasets.map((d) => d.id));
      return (await listStore(t, 'datasets/')).filter((k) => !known.has(k.split('/')[1]!));
    };
    const datasetCount = async () =>
      (await t.app.inject({ method: 'GET', url: '/api/v1/datasets' })).json().datasets.length;

    it('a corrupt image fails the job naming the file; no dataset row, no objects', async () => {
      const before = await datasetCount();
      const dir = await makeImageFolder(path.join(work, 'corrupt'), 2, 4);
      const png = await sharp({
        create: { width: 8, height: 8, channels: 3, background: '#808080' },
      })
        .png()
        .toBuffer();
      await writeFile(path.join(dir, 'class-1', 'broken.png'), png.subarray(0, png.length / 2));
      const job = await importVia(t, {
        name: 'bad',
        source: { kind: 'folder', path: dir },
        cluster: { k: 2 },
      });
      expect(job.status).toBe('failed');
      expect(job.error).toContain('class-1/broken.png');
      expect(job.attempts).toBe(1);
      expect(await datasetCount()).toBe(before);
      expect(await orphanObjects()).toEqual([]);
    });

    it('a failure after objects were written (K > images) deletes them again', async () => {
      const before = await datasetCount();
      const dir = await makeImageFolder(path.join(work, 'few'), 2, 2);
      const job = await importVia(t, {
        name: 'few',
        source: { kind: 'folder', path: dir },
        cluster: { k: 9 },
      });
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/4 images; 9 clusters need at least 9/);

      expect(await datasetCount()).toBe(before);
      expect(await orphanObjects()).toEqual([]);
    });

    it('an unsupported file is named in the error', async () => {
      const dir = path.join(work, 'gif');
      await mkdir(dir, { recursive: true });
      await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } })
        .png()
        .toFile(path.join(dir, 'a.png'));
      await writeFile(path.join(dir, 'b.gif'), 'GIF89a');
      const job = await importVia(t, { name: 'gif', source: { kind: 'folder', path: dir } });
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/b\.gif/);
    });

    it('an empty folder fails clearly', async () => {
      const dir = path.join(work, 'empty');
      await mkdir(dir, { recursive: true });
      const job = await importVia(t, { name: 'empty', source: { kind: 'folder', path: dir } });
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/no (PNG|image)/i);
    });

    it('embeddings whose row count or dtype do not match fail naming the file', async () => {
      const before = await datasetCount();
      const dir = await makeImageFolder(path.join(work, 'emb-bad'), 2, 3);
      const rowsFile = path.join(work, 'rows.npy');
      await writeFile(rowsFile, encodeNpy(new Float32Array(5 * 2), [5, 2]));
      const rows = await importVia(t, {
        name: 'r',
        source: { kind: 'folder', path: dir },
        embeddingsPath: rowsFile,
      });
      expect(rows.status).toBe('failed');
      expect(rows.error).toBe(
        'rows.npy has 5 rows, dataset has 6 images; need one row per image, in dataset order',
      );
      const f8 = Buffer.from(encodeNpy(new Float32Array(6 * 2), [6, 2]));
      f8.write('<f8', f8.indexOf('<f4'), 'latin1');
      const dtypeFile = path.join(work, 'dtype.npy');
      await writeFile(dtypeFile, f8);
      const dtype = await importVia(t, {
        name: 'd',
        source: { kind: 'folder', path: dir },
        embeddingsPath: dtypeFile,
      });
      expect(dtype.status).toBe('failed');
      expect(dtype.error).toMatch(/dtype\.npy .*<f8/);
      expect(await datasetCount()).toBe(before);
      expect(await orphanObjects()).toEqual([]);
    });

    it('a missing folder or embeddings file is a 400 before any job is queued', async () => {
      const folder = await t.app.inject({
        method: 'POST',
        url: '/api/v1/datasets',
        headers: auth,
        payload: { name: 'x', source: { kind: 'folder', path: path.join(work, 'nope') } },
      });
      expect(folder.statusCode).toBe(400);
      expect(folder.json().error).toMatchObject({ code: 'folder_not_found' });
      const emb = await t.app.inject({
        method: 'POST',
        url: '/api/v1/datasets',
        headers: auth,
        payload: {
          name: 'x',
          source: { kind: 'builtin', name: 'mnist' },
          embeddingsPath: path.join(work, 'nope.npy'),
        },
      });
      expect(emb.statusCode).toBe(400);
      expect(emb.json().error.message).toContain('nope.npy');
    });

    it('an unknown built-in dataset is rejected listing the valid ones', async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/datasets',
        headers: auth,
        payload: { name: 'x', source: { kind: 'builtin', name: 'imagenet' } },
      });
      expect(res.statusCode).toBe(400);
    });
  });

  it('no temp files are left in the local store', async () => {
    const tmp = path.join(t.dataDir, 'objects', 'tmp');
    const entries = await readdir(tmp).catch(() => []);
    expect(entries).toEqual([]);
  });
});
