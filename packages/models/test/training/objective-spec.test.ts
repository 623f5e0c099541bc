import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { CheckpointError, loadCheckpoint } from '../../src/checkpoint/index.js';
import type { DiTConfig } from '../../src/nn/index.js';
import {
  ExpertTrainer,
  type ExpertTrainerOptions,
  specOfMeta,
  TRAINING_METADATA_KEY,
} from '../../src/training/index.js';

await initBackend({ backend: 'wasm' });

const DIT: DiTConfig = {
  imageSize: 8,
  channels: 1,
  patchSize: 2,
  hidden: 32,
  depth: 1,
  heads: 2,
  mlpRatio: 2,
  numClasses: 0,
  learnSigma: false,
};
const V: ExpertTrainerOptions = {
  network: { kind: 'dit', config: DIT },
  objective: { name: 'ddpm', prediction: 'v', schedule: { kind: 'linear' } },
  optimizer: { learningRate: 3e-3 },
  seed: 4,
};
const COSINE = { kind: 'cosine', T: 1000, s: 0.008 };
const LINEAR = { kind: 'linear', T: 1000, betaStart: 1e-4, betaEnd: 0.02 };

/** Images of two bars, in [-1, 1]: enough structure for a loss to fall. */
function images(n: number, seed: number): tf.Tensor {
  return tf.tidy(() => {
    const rows = tf.randomUniform([n, 1, 1, 1], 0, 1, 'float32', seed);
    const bar = tf.concat([tf.ones([1, 4, 8, 1]), tf.fill([1, 4, 8, 1], -1)], 1);
    return tf.mul(bar, tf.sign(tf.sub(rows, 0.5)));
  });
}

describe('experts train and checkpoint the objective spec they are given', () => {
  let trainer: ExpertTrainer;
  let bytes: Uint8Array;
  beforeAll(async () => {
    trainer = await ExpertTrainer.create(V);
  });
  afterAll(async () => trainer.dispose());

  it('a v-prediction expert learns (held-out loss falls) and its checkpoint records the spec', async () => {
    const heldOut = images(64, 99);
    const before = trainer.evalLoss(heldOut, 7);
    for (let i = 0; i < 60; i++) await trainer.step(images(32, i));
    const after = trainer.evalLoss(heldOut, 7);
    expect(after).toBeLessThan(0.7 * before);
    bytes = await trainer.save();
    const { meta, extraMetadata } = loadCheckpoint(bytes, { kind: 'expert' });
    expect(meta).toMatchObject({
      objective: 'ddpm',
      schedule: LINEAR,
      spec: { name: 'ddpm', prediction: 'v', schedule: LINEAR },
    });
    expect(specOfMeta(meta)).toEqual({ name: 'ddpm', prediction: 'v', schedule: LINEAR });
    expect(JSON.parse(extraMetadata[TRAINING_METADATA_KEY]!).objective).toEqual(meta.spec);
  });

  it('resumes under the same spec; refuses it as an epsilon expert or on another schedule', async () => {
    const resumed = await ExpertTrainer.create({ ...V, init: bytes });
    expect(resumed.stepCount).toBe(60);
    await resumed.dispose();
    // Loss weighting is a training-time choice: the network's output means the same.
    for (const objective of [
      { name: 'ddpm', schedule: { kind: 'linear' } },
      { name: 'ddpm', prediction: 'v', schedule: { kind: 'cosine' } },
    ] as const) {
      const err = await ExpertTrainer.create({ ...V, objective, init: bytes }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as CheckpointError).code).toBe('config_mismatch');
      expect((err as CheckpointError).message).toMatch(/prediction|schedule/);
    }
  });

  it('an epsilon expert with min-SNR weighting trains on weighted losses and records its weighting', async () => {
    const weighted = await ExpertTrainer.create({
      ...V,
      objective: { name: 'ddpm', lossWeighting: { kind: 'min-snr', gamma: 5 } },
    });
    try {
      const heldOut = images(64, 98);
      const before = weighted.evalLoss(heldOut, 3);
      for (let i = 0; i < 40; i++) await weighted.step(images(32, 200 + i));
      expect(weighted.evalLoss(heldOut, 3)).toBeLessThan(before);
      const { meta } = loadCheckpoint(await weighted.save(), { kind: 'expert' });
      expect(meta.spec).toEqual({
        name: 'ddpm',
        schedule: COSINE,
        lossWeighting: { kind: 'min-snr', gamma: 5 },
      });
    } finally {
      await weighted.dispose();
    }
  });

  it('checkpoints written before specs read as the spec their family and schedule stand for', () => {
    const legacy = { objective: 'ddpm', schedule: { kind: 'linear' } } as never;
    expect(specOfMeta(legacy)).toEqual({ name: 'ddpm', schedule: LINEAR });
    expect(specOfMeta({ objective: 'fm' } as never)).toEqual({
      name: 'fm',
      timeSampling: { kind: 'uniform' },
    });
  });
});
