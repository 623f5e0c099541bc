import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { CheckpointError, loadCheckpoint } from '../../src/checkpoint/index.js';
import type { DiTConfig } from '../../src/nn/index.js';
import {
  ExpertTrainer,
  type ExpertTrainerOptions,
  RouterTrainer,
  TRAINING_METADATA_KEY,
} from '../../src/training/index.js';
import { snapshot } from './helpers.js';

await initBackend({ backend: 'wasm' });

/** A class-conditional DiT small enough for a unit test: 8x8x1, patch 2 (16 tokens), width 32. */
const DIT: DiTConfig = {
  imageSize: 8,
  channels: 1,
  patchSize: 2,
  hidden: 32,
  depth: 1,
  heads: 2,
  mlpRatio: 2,
  numClasses: 2,
  learnSigma: false,
};
const OPTIONS: ExpertTrainerOptions = {
  network: { kind: 'dit', config: DIT },
  objective: { name: 'ddpm', schedule: { kind: 'cosine' } },
  optimizer: { learningRate: 1e-3 },
  seed: 3,
};
const FINGERPRINT = 'ab'.repeat(32);

function batch(i: number): { x: tf.Tensor; labels: Int32Array } {
  return {
    x: tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 100 + i),
    labels: Int32Array.from([0, 1, 2, i % 2]), // 2 = the null class
  };
}

/** Bit patterns of every parameter. */
function bits(params: Map<string, tf.Variable>): Record<string, Uint32Array> {
  const out: Record<string, Uint32Array> = {};
  for (const [name, data] of Object.entries(snapshot(params)))
    out[name] = new Uint32Array(data.buffer);
  return out;
}

async function rejection(promise: Promise<unknown>): Promise<CheckpointError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CheckpointError) return err;
    throw err;
  }
  throw new Error('expected a CheckpointError');
}

describe('ExpertTrainer checkpoints (tiny class-conditional DiT, DDPM)', () => {
  let trainer: ExpertTrainer;
  let bytes: Uint8Array;

  beforeAll(async () => {
    trainer = await ExpertTrainer.create(OPTIONS);
    for (let i = 0; i < 3; i++) {
      const { x, labels } = batch(i);
      await trainer.step(x, labels);
      x.dispose();
    }
    bytes = await trainer.save({ dataFingerprint: FINGERPRINT });
  }, 60_000);

  afterAll(async () => {
    await trainer.dispose();
  });

  it('records the architecture, objective, schedule, step and training settings', () => {
    const { meta, params, extraMetadata } = loadCheckpoint(bytes, { kind: 'expert' });
    expect(meta).toMatchObject({
      kind: 'expert',
      architecture: { kind: 'dit', ...DIT },
      objective: 'ddpm',
      schedule: { kind: 'cosine', T: 1000, s: 0.008 },
      step: 3,
      dataFingerprint: FINGERPRINT,
    });
    expect(Object.keys(params).sort()).toEqual([...trainer.getParams().keys()].sort());
    expect(JSON.parse(extraMetadata[TRAINING_METADATA_KEY]!)).toEqual({
      objective: { name: 'ddpm', schedule: { kind: 'cosine', T: 1000, s: 0.008 } },
      optimizer: { learningRate: 1e-3 },
      seed: 3,
    });
  });

  it('resumes bit-exactly: same parameters, the step count and the noise stream continue', async () => {
    const resumed = await ExpertTrainer.create({ ...OPTIONS, init: bytes });
    try {
      expect(resumed.stepCount).toBe(3);
      expect(bits(resumed.getParams())).toEqual(bits(trainer.getParams()));
      // Step 4 draws its noise from (seed, 3) in both runs: same parameters, same loss.
      const { x, labels } = batch(3);
      const a = await trainer.step(x, labels);
      const b = await resumed.step(x, labels);
      x.dispose();
      expect(b.step).toBe(4);
      expect(a.step).toBe(4);
      expect(b.loss).toBe(a.loss);
      expect(b.imagesPerSec).toBeGreaterThan(0);
    } finally {
      await resumed.dispose();
    }
  });

  it('refuses a checkpoint of another architecture, objective, schedule or kind', async () => {
    const wider = await rejection(
      ExpertTrainer.create({
        ...OPTIONS,
        network: { kind: 'dit', config: { ...DIT, hidden: 64 } },
        init: bytes,
      }),
    );
    expect(wider.code).toBe('config_mismatch');
    expect(wider.message).toContain('architecture.hidden');

    const mlp = await rejection(
      ExpertTrainer.create({
        ...OPTIONS,
        network: { kind: 'mlp', config: { dim: 64, hidden: 32, depth: 1 } },
        init: bytes,
      }),
    );
    expect(mlp.code).toBe('config_mismatch');

    const fm = await rejection(
      ExpertTrainer.create({
        ...OPTIONS,
        objective: { name: 'fm', timeSampling: { kind: 'uniform' } },
        init: bytes,
      }),
    );
    expect(fm.code).toBe('config_mismatch');
    expect(fm.message).toContain('objective');

    const linear = await rejection(
      ExpertTrainer.create({
        ...OPTIONS,
        objective: { name: 'ddpm', schedule: { kind: 'linear' } },
        init: bytes,
      }),
    );
    expect(linear.code).toBe('config_mismatch');
    expect(linear.message).toContain('schedule');

    const router = await rejection(
      RouterTrainer.create({
        network: {
          kind: 'router',
          config: {
            imageSize: 8,
            channels: 1,
            patchSize: 2,
            hidden: 32,
            depth: 1,
            heads: 2,
            mlpRatio: 2,
            numClusters: 2,
          },
        },
        optimizer: { learningRate: 1e-3 },
        seed: 0,
        init: bytes,
      }),
    );
    expect(router.code).toBe('config_mismatch');
    expect(router.message).toContain('kind');
  });

  it('rejects labels out of range and batches of the wrong shape before training', async () => {
    const x = tf.zeros([2, 8, 8, 1]);
    await expect(trainer.step(x, [0, 3])).rejects.toThrow(
      'labels[1] is 3, expected an integer in [0, 2]',
    );
    await expect(trainer.step(tf.zeros([2, 8, 8, 3]))).rejects.toThrow(
      'x0 must be [B, 8, 8, 1], got [2, 8, 8, 3]',
    );
    x.dispose();
  });
});
