import { ditConfigFromPreset, ExpertTrainer } from '@archipelago/models';
import type { Dataset, Run } from '@archipelago/protocol';
import * as tf from '@tensorflow/tfjs-core';
import { eq } from 'drizzle-orm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpoints, experts } from '../src/db/schema/index.js';
import { newId } from '../src/ids.js';
import { renderExpertSamples } from '../src/services/expert-samples.js';
import { auth, makeApp, makeImageFolder, type TestApp, waitForJob } from './helpers.js';

describe('renderExpertSamples', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp();
  });
  afterAll(async () => t.close());

  it('draws one row per expert with a checkpoint, from that checkpoint', async () => {
    const folder = await makeImageFolder(t.dataDir, 2, 4);
    const imp = await t.app.inject({
      method: 'POST',
      url: '/api/v1/datasets',
      headers: auth,
      payload: {
        name: 'p',
        source: { kind: 'folder', path: folder },
        resolution: 8,
        channels: 1,
        cluster: { k: 2 },
      },
    });
    const job = await waitForJob(t.app, imp.json().job.id);
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    const run = (
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/runs',
        headers: auth,
        payload: { datasetId: ds.id, experts: 2, objectives: 'ddpm:1,fm:1', stepsPerExpert: 4 },
      })
    ).json() as Run;
    expect(await renderExpertSamples(t.coordinator.db, t.coordinator.store, run.id)).toBeNull();

    // A checkpoint for expert 0 (DDPM) only, from a real trainer.
    const trainer = await ExpertTrainer.create({
      network: {
        kind: 'dit',
        config: ditConfigFromPreset('tiny', { imageSize: 8, channels: 1, numClasses: 0 }),
      },
      objective: { name: 'ddpm', schedule: { kind: 'cosine' } },
      optimizer: { learningRate: 1e-3 },
      seed: 0,
    });
    const x0 = tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 3);
    for (let i = 0; i < 3; i++) await trainer.step(x0);
    const bytes = await trainer.save();
    await trainer.dispose();
    x0.dispose();
    const expert = run.experts[0]!;
    const key = `runs/${run.id}/experts/0/ckpt-000000003.safetensors`;
    await t.coordinator.store.put(key, bytes);
    const id = newId('checkpoint');
    t.coordinator.db
      .insert(checkpoints)
      .values({
        id,
        expertId: expert.id,
        step: 3,
        key,
        sha256: 'a'.repeat(64),
        bytes: bytes.length,
        status: 'accepted',
      })
      .run();
    t.coordinator.db
      .update(experts)
      .set({ checkpointId: id, checkpointStep: 3 })
      .where(eq(experts.id, expert.id))
      .run();

    const png = await renderExpertSamples(t.coordinator.db, t.coordinator.store, run.id, {
      perExpert: 5,
      steps: 4,
    });
    const meta = await sharp(png!).metadata();
    // One row of 5 images of 8 px, drawn at 2x with 2 px padding.
    expect([meta.width, meta.height]).toEqual([2 + 5 * (16 + 2), 2 + 1 * (16 + 2)]);
    const { data } = await sharp(png!).raw().toBuffer({ resolveWithObject: true });
    // The cells hold drawn samples, not the grid's background (gray 32).
    expect(data.filter((v) => v !== 32).length).toBeGreaterThan(0.9 * 5 * 16 * 16);
  });
});
