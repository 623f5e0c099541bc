import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { currentBackend, initBackend } from '../../../src/backend.js';
import type { DiTConfig } from '../../../src/nn/index.js';
import {
  ExpertTrainer,
  type ExpertTrainerOptions,
  MlpNet,
  ReplicaError,
  RouterTrainer,
  type RouterTrainerOptions,
} from '../../../src/training/index.js';
import { ReplicaPool } from '../../../src/training/parallel/replica-pool.js';
import { maxAbsDiff, sampleMixture, snapshot } from '../helpers.js';

await initBackend({ backend: 'wasm' });

/** Trains `steps` steps with `threads` threads; returns the losses and final parameters. */
async function run(
  create: (threads: number) => Promise<ExpertTrainer | RouterTrainer>,
  threads: number,
  steps: number,
  step: (trainer: ExpertTrainer | RouterTrainer, i: number) => Promise<{ loss: number }>,
) {
  const trainer = await create(threads);
  try {
    expect(trainer.threads).toBe(threads);
    const losses: number[] = [];
    for (let i = 0; i < steps; i++) losses.push((await step(trainer, i)).loss);
    const replicas = await trainer.replicaParams();
    return { losses, params: snapshot(trainer.getParams()), replicas };
  } finally {
    await trainer.dispose();
  }
}

/** One thread vs two on the same batches: same losses and parameters to float tolerance. */
async function compare(
  create: (threads: number) => Promise<ExpertTrainer | RouterTrainer>,
  steps: number,
  step: (trainer: ExpertTrainer | RouterTrainer, i: number) => Promise<{ loss: number }>,
) {
  const one = await run(create, 1, steps, step);
  const two = await run(create, 2, steps, step);
  expect(two.replicas).toHaveLength(3); // the main thread's replica and two workers'
  // Every replica applies the same averaged gradient with the same code: identical bits.
  expect(maxAbsDiff(two.replicas[0]!, two.replicas[1]!)).toBe(0);
  expect(maxAbsDiff(two.replicas[0]!, two.replicas[2]!)).toBe(0);
  // One thread vs two: float32 sums in another order.
  const diff = maxAbsDiff(one.params, two.params);
  two.losses.forEach((l, i) => {
    expect(l, `loss at step ${i}`).toBeCloseTo(one.losses[i]!, 5);
  });
  expect(diff).toBeLessThan(1e-5);
  return diff;
}

describe('data-parallel training over worker threads', () => {
  it('MLP expert (FM), 5 steps, batch 255 split 128 + 127: two threads match one', async () => {
    const options = (threads: number): ExpertTrainerOptions => ({
      network: { kind: 'mlp', config: { dim: 2, hidden: 64, depth: 2 } },
      objective: { name: 'fm', timeSampling: { kind: 'logit-normal' } },
      optimizer: { learningRate: 1e-2, weightDecay: 0.01, gradClip: 1 },
      seed: 4,
      threads,
    });
    const diff = await compare(
      (threads) => ExpertTrainer.create(options(threads)),
      5,
      (trainer, i) => (trainer as ExpertTrainer).step(sampleMixture(255, 50 + 2 * i).x),
    );
    console.info(`MLP expert, 1 vs 2 threads after 5 steps: max |dparam| = ${diff}`);
  }, 60_000);

  it('class-conditional DiT expert (DDPM) with labels, 3 steps: two threads match one', async () => {
    const dit: DiTConfig = {
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
    const diff = await compare(
      (threads) =>
        ExpertTrainer.create({
          network: { kind: 'dit', config: dit },
          objective: { name: 'ddpm', schedule: { kind: 'linear' } },
          optimizer: { learningRate: 1e-3 },
          seed: 5,
          threads,
        }),
      3,
      async (trainer, i) => {
        const x = tf.randomUniform([5, 8, 8, 1], -1, 1, 'float32', 60 + i);
        try {
          return await (trainer as ExpertTrainer).step(x, [0, 1, 2, 1, 0]);
        } finally {
          x.dispose();
        }
      },
    );
    console.info(`DiT expert, 1 vs 2 threads after 3 steps: max |dparam| = ${diff}`);
  }, 60_000);

  it('MLP router, 3 steps: two threads match one', async () => {
    const options = (threads: number): RouterTrainerOptions => ({
      network: { kind: 'mlp-classifier', config: { dim: 2, hidden: 32, depth: 1, numClusters: 3 } },
      optimizer: { learningRate: 1e-2 },
      seed: 6,
      threads,
    });
    const diff = await compare(
      (threads) => RouterTrainer.create(options(threads)),
      3,
      (trainer, i) => {
        const { x, clusters } = sampleMixture(100, 70 + 2 * i);
        return (trainer as RouterTrainer).step(x, clusters);
      },
    );
    console.info(`MLP router, 1 vs 2 threads after 3 steps: max |dparam| = ${diff}`);
  }, 60_000);

  it('a failure inside a worker rejects with a ReplicaError naming it; terminate stops them', async () => {
    const mlp = { kind: 'mlp', config: { dim: 2, hidden: 8, depth: 0 } } as const;
    const common = {
      threads: 2,
      backend: currentBackend()!.name,
      network: mlp,
      task: { kind: 'regression', objective: { name: 'fm', timeSampling: { kind: 'uniform' } } },
      optimizer: { learningRate: 1e-3 },
      seed: 0,
    } as const;

    // A replica refuses to start without every parameter; start() rejects and stops the workers.
    const refused = await ReplicaPool.start({ ...common, params: {} }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ReplicaError);
    expect(String(refused)).toMatch(/replica worker \d: init: no value for parameter "t_embedder/);

    const net = new MlpNet(mlp.config, 0);
    const params = Object.fromEntries(
      [...net.params].map(([name, v]) => [
        name,
        { shape: [...v.shape], data: (v.dataSync() as Float32Array).slice() },
      ]),
    );
    net.dispose();
    const pool = await ReplicaPool.start({ ...common, params });
    try {
      // 3-D vectors for a 2-D network: the workers' forward pass throws.
      const shard = () => ({
        x: { dtype: 'float32' as const, shape: [1, 3], data: new Float32Array(3) },
        tau: { dtype: 'float32' as const, shape: [1], data: new Float32Array(1) },
        target: { dtype: 'float32' as const, shape: [1, 3], data: new Float32Array(3) },
      });
      const err = await pool.gradients([shard(), shard()]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReplicaError);
      expect((err as ReplicaError).message).toMatch(
        /^replica worker \d: MlpNet: x must be float32 \[B, 2\], got float32 \[1,3\]/,
      );
      expect((err as ReplicaError).stack).toContain('--- in the worker ---');
    } finally {
      await pool.terminate();
    }
    await expect(pool.params(0)).rejects.toThrow('replica worker 0: terminated');
  }, 60_000);
});
