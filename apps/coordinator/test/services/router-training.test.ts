/**
 * Router training on a compute thread (compute/compute-pool.ts): a real coordinator (SQLite, local
 * store) with an imported, clustered dataset and a run whose experts are done. The thread trains
 * the same router, weight for weight, as the event loop does; the main thread stores and records it.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { loadCheckpoint } from '@archipelago/models';
import type { Dataset, Run } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events, experts, routers } from '../../src/db/schema/index.js';
import { trainRouter } from '../../src/services/router-training.js';
import { auth, makeApp, type TestApp, waitForJob } from '../helpers.js';

const SIZE = 8;

/** Two classes of 8x8 images (bright top half / bright bottom half) with seeded jitter. */
async function makeFolder(root: string): Promise<string> {
  const dir = path.join(root, 'halves');
  let state = 777;
  const rnd = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  for (const c of [0, 1]) {
    await mkdir(path.join(dir, `class-${c}`), { recursive: true });
    for (let i = 0; i < 40; i++) {
      const pixels = Buffer.alloc(SIZE * SIZE);
      for (let y = 0; y < SIZE; y++)
        for (let x = 0; x < SIZE; x++)
          pixels[y * SIZE + x] = ((c === 0) === y < SIZE / 2 ? 200 : 30) + Math.floor(rnd() * 40);
      await sharp(pixels, { raw: { width: SIZE, height: SIZE, channels: 1 } })
        .png()
        .toFile(path.join(dir, `class-${c}`, `img-${i}.png`));
    }
  }
  return dir;
}

describe('router training on a compute thread', () => {
  let t: TestApp;
  let run: Run;
  beforeAll(async () => {
    t = await makeApp();
    const imp = await t.app.inject({
      method: 'POST',
      url: '/api/v1/datasets',
      headers: auth,
      payload: {
        name: 'halves',
        source: { kind: 'folder', path: await makeFolder(t.dataDir) },
        resolution: SIZE,
        channels: 1,
        cluster: { k: 2, valFraction: 0.25 },
      },
    });
    const job = await waitForJob(t.app, imp.json().job.id);
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    run = (
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/runs',
        headers: auth,
        payload: { datasetId: ds.id, experts: 2, stepsPerExpert: 10, model: 'micro' },
      })
    ).json() as Run;
    // The router only needs every expert done, not their checkpoints.
    t.coordinator.db.update(experts).set({ status: 'done' }).where(eq(experts.runId, run.id)).run();
  }, 120_000);
  afterAll(async () => t.close());

  it('trains the same router as the event loop, weight for weight; the main thread stores and records it', async () => {
    const { db, store, log } = t.coordinator;
    const deps = { db, store, log, steps: 20 };
    const here = await trainRouter(deps, { runId: run.id, publish: false });
    const stages: string[] = [];
    const there = await trainRouter(
      { ...deps, compute: t.coordinator.compute! },
      { runId: run.id, publish: false },
      (stage) => stages.push(stage),
    );
    const rows = db.select().from(routers).where(eq(routers.runId, run.id)).all();
    const [a, b] = [here, there].map((r) => rows.find((x) => x.id === r.routerId)!);
    expect(a!.id).not.toBe(b!.id);
    // The same weights (the files differ only in their createdAt).
    const [ca, cb] = await Promise.all(
      [a!, b!].map(async (r) => loadCheckpoint(await store.getBytes(r.key))),
    );
    expect(cb!.meta.createdAt).not.toBeUndefined();
    expect({ ...cb!.meta, createdAt: '' }).toEqual({ ...ca!.meta, createdAt: '' });
    expect(Object.keys(cb!.params)).toEqual(Object.keys(ca!.params));
    for (const [name, value] of Object.entries(ca!.params))
      expect(cb!.params[name], name).toEqual(value);
    expect(b!.steps).toBe(20);
    expect(there.accuracy).toEqual(here.accuracy);
    expect(await store.head(b!.key)).not.toBeNull();
    // Progress reports come back from the thread.
    expect(stages[0]).toBe('loading shards');
    expect(stages).toContain('training the router');
    expect(stages.at(-1)).toBe('evaluating');
    const trained = db
      .select()
      .from(events)
      .where(eq(events.runId, run.id))
      .all()
      .filter((e) => e.type === 'router.trained');
    expect(trained.map((e) => (e.data as { routerId: string }).routerId).sort()).toEqual(
      [a!.id, b!.id].sort(),
    );
  });

  it("a class-conditional run's router reads the class: numClasses and a label table with a null row", async () => {
    const { db, store, log } = t.coordinator;
    expect(run.config.numClasses).toBe(2);
    const { routerId } = await trainRouter(
      { db, store, log, steps: 5 },
      { runId: run.id, publish: false },
    );
    const row = db.select().from(routers).where(eq(routers.id, routerId)).get()!;
    expect(row.architecture).toMatchObject({ kind: 'router', numClusters: 2, numClasses: 2 });
    const { meta, params } = loadCheckpoint(await store.getBytes(row.key));
    expect(meta.architecture).toMatchObject({ numClasses: 2 });
    // Classes 0 and 1 and the null class 2, each a row of the router's width.
    expect(params['y_embedder.embedding_table']!.shape).toEqual([3, 64]);
  });
});
