import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Dataset, Job } from '@archipelago/protocol';
import sharp from 'sharp';
import { expect } from 'vitest';
import { type App, buildApp } from '../src/app.js';
import { type ConfigInput, loadConfig } from '../src/config.js';
import { type Coordinator, openCoordinator } from '../src/coordinator.js';

export const ADMIN_KEY = 'ak_test_0123456789abcdef';
export const auth = { authorization: `Bearer ${ADMIN_KEY}` };

export interface TestApp {
  app: App;
  coordinator: Coordinator;
  dataDir: string;
  close(): Promise<void>;
}

/** A real coordinator (SQLite, local store, in-process jobs) in a fresh temp dir, driven by inject. */
export async function makeApp(overrides: ConfigInput = {}): Promise<TestApp> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'arch-coord-'));
  const config = loadConfig({ dataDir, logLevel: 'silent', adminKey: ADMIN_KEY, ...overrides }, {});
  const coordinator = await openCoordinator(config);
  const app = await buildApp(coordinator);
  await app.ready();
  return {
    app,
    coordinator,
    dataDir,
    async close() {
      await app.close();
      await coordinator.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Poll a job through the REST API until it has finished. */
export async function waitForJob(app: App, jobId: string, timeoutMs = 100_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await app.inject({ method: 'GET', url: `/api/v1/jobs/${jobId}` });
    const job = res.json() as Job;
    if (job.status === 'succeeded' || job.status === 'failed') return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Import a fresh image folder through the REST API and cluster it into `k` shards; the dataset as
 * the API shows it once the import job succeeded.
 */
export async function importFolderDataset(
  t: TestApp,
  o: { name: string; classes: number; perClass: number; resolution: number; k: number },
): Promise<Dataset> {
  const dir = await makeImageFolder(t.dataDir, o.classes, o.perClass);
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/v1/datasets',
    headers: auth,
    payload: {
      name: o.name,
      source: { kind: 'folder', path: dir },
      resolution: o.resolution,
      cluster: { k: o.k },
    },
  });
  const job = await waitForJob(t.app, res.json().job.id);
  expect(job.status, job.error ?? '').toBe('succeeded');
  return (
    await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
  ).json() as Dataset;
}

/**
 * A folder of small labelled PNG and JPEG images: `classes` sub-folders, each with `perClass`
 * images of a distinct pattern (so clustering has something to find).
 */
export async function makeImageFolder(root: string, classes = 3, perClass = 20): Promise<string> {
  const dir = path.join(root, 'images');
  for (let c = 0; c < classes; c++) {
    const classDir = path.join(dir, `class-${c}`);
    await import('node:fs/promises').then((fs) => fs.mkdir(classDir, { recursive: true }));
    for (let i = 0; i < perClass; i++) {
      const size = 24;
      const pixels = Buffer.alloc(size * size * 3);
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const on = c === 0 ? x < size / 2 : c === 1 ? y < size / 2 : (x + y) % 8 < 4;
          const v = on ? 200 + ((i * 7) % 50) : (i * 3) % 40;
          pixels.set([v, c === 2 ? 255 - v : v, v], (y * size + x) * 3);
        }
      }
      const img = sharp(pixels, { raw: { width: size, height: size, channels: 3 } });
      const file = path.join(
        classDir,
        `img-${String(i).padStart(3, '0')}.${i % 2 ? 'jpg' : 'png'}`,
      );
      await (i % 2 ? img.jpeg() : img.png()).toFile(file);
    }
  }
  return dir;
}
