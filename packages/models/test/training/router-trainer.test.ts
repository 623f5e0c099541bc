import { createObjective } from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { loadCheckpoint } from '../../src/checkpoint/index.js';
import { RouterTrainer } from '../../src/training/index.js';
import { learningRateAt, MIXTURE, sampleMixture } from './helpers.js';

await initBackend({ backend: 'wasm' });

const K = 3;
const BINS = 10;
const STEPS = 300;
const LR = 1e-2;
const HELD_OUT = sampleMixture(4000, 7);
const EVAL_SEED = 11;

/**
 * Accuracy per t bin of the ideal router (the closed-form posterior) on the very x_t the trainer
 * evaluates: RouterTrainer.evaluate noises x0 as the FM objective with uniform t does.
 */
function idealAccuracy(): number[] {
  return tf.tidy(() => {
    const path = createObjective({ name: 'fm', timeSampling: { kind: 'uniform' } });
    const { xt, tau } = path.sampleTraining(
      tf.tensor(HELD_OUT.x.data, HELD_OUT.x.shape),
      EVAL_SEED,
    );
    const predicted = tf
      .argMax(MIXTURE.posterior()(xt, tf.div(tau, 999) as tf.Tensor1D), 1)
      .dataSync();
    const t = tau.dataSync();
    const correct = new Array<number>(BINS).fill(0);
    const counts = new Array<number>(BINS).fill(0);
    for (let i = 0; i < t.length; i++) {
      const b = Math.min(Math.floor((t[i]! / 999) * BINS), BINS - 1);
      counts[b]! += 1;
      if (predicted[i] === HELD_OUT.clusters[i]) correct[b]! += 1;
    }
    return correct.map((c, i) => c / counts[i]!);
  });
}

describe('RouterTrainer: an MLP classifier on the 2-D mixture', () => {
  let trainer: RouterTrainer;

  beforeAll(async () => {
    trainer = await RouterTrainer.create({
      network: { kind: 'mlp-classifier', config: { dim: 2, hidden: 64, depth: 2, numClusters: K } },
      optimizer: { learningRate: LR },
      seed: 1,
    });
    for (let i = 0; i < STEPS; i++) {
      trainer.learningRate = learningRateAt(LR, i, STEPS);
      const { x, clusters } = sampleMixture(256, 3000 + 2 * i);
      await trainer.step(x, clusters);
    }
  }, 60_000);

  afterAll(async () => {
    await trainer.dispose();
  });

  // Measured (4000 held-out samples, ~400 per bin, t bins of 0.1):
  //   trained: 1.000 1.000 0.943 0.803 0.647 0.565 0.510 0.456 0.396 0.296
  //   ideal:   1.000 0.997 0.946 0.803 0.647 0.574 0.515 0.441 0.400 0.318
  it('is near-certain at low noise and near chance at t -> 1, like the ideal router', () => {
    const { accuracy, counts, loss } = trainer.evaluate(
      HELD_OUT.x,
      HELD_OUT.clusters,
      EVAL_SEED,
      BINS,
    );
    const ideal = idealAccuracy();
    console.info(JSON.stringify({ accuracy, ideal, counts, loss }));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4000);
    // t < 0.2 (the first two bins): the modes are 14 sigma apart and barely blurred.
    expect(accuracy[0]).toBeGreaterThan(0.9);
    expect(accuracy[1]).toBeGreaterThan(0.9);
    // t in [0.9, 1]: x_t keeps at most 10% of x0, so even the ideal router is barely above chance.
    // Tolerance: the ideal router's own excess over 1/K plus 4 binomial standard deviations of an
    // accuracy estimated from counts[9] (~400) samples at p = 1/3 (4 * 0.024 = 0.094).
    const last = BINS - 1;
    const sd = Math.sqrt(((1 / K) * (1 - 1 / K)) / counts[last]!);
    expect(Math.abs(accuracy[last]! - 1 / K)).toBeLessThan(
      Math.max(0, ideal[last]! - 1 / K) + 4 * sd,
    );
    // Never much better than the Bayes-optimal router (4 sd: sampling noise on a bin).
    accuracy.forEach((a, i) => {
      const sdi = Math.sqrt(0.25 / counts[i]!);
      expect(a, `bin ${i}`).toBeLessThan(ideal[i]! + 4 * sdi);
    });
  });

  it('saves a router checkpoint and resumes from it with the same predictions', async () => {
    const bytes = await trainer.save();
    const { meta } = loadCheckpoint(bytes, { kind: 'router' });
    expect(meta.step).toBe(STEPS);
    expect(meta.architecture).toEqual({
      kind: 'mlp-classifier',
      dim: 2,
      hidden: 64,
      depth: 2,
      frequencyDim: 64,
      numClusters: K,
    });
    const resumed = await RouterTrainer.create({
      network: { kind: 'mlp-classifier', config: { dim: 2, hidden: 64, depth: 2, numClusters: K } },
      optimizer: { learningRate: LR },
      seed: 1,
      init: bytes,
    });
    try {
      expect(resumed.stepCount).toBe(STEPS);
      const a = trainer.evaluate(HELD_OUT.x, HELD_OUT.clusters, EVAL_SEED, BINS);
      const b = resumed.evaluate(HELD_OUT.x, HELD_OUT.clusters, EVAL_SEED, BINS);
      expect(b).toEqual(a);
    } finally {
      await resumed.dispose();
    }
  });
});

describe('RouterTrainer with one cluster (a monolith)', () => {
  it('trains and evaluates: every sample is routed to the one expert, at zero loss', async () => {
    const trainer = await RouterTrainer.create({
      network: {
        kind: 'router',
        config: {
          imageSize: 8,
          channels: 1,
          patchSize: 2,
          hidden: 16,
          depth: 1,
          heads: 2,
          mlpRatio: 2,
          numClusters: 1,
        },
      },
      optimizer: { learningRate: LR },
      seed: 2,
    });
    try {
      const x = {
        data: new Float32Array(16 * 64).map((_, i) => Math.sin(i)),
        shape: [16, 8, 8, 1],
      };
      const step = await trainer.step(x, new Int32Array(16));
      expect(step.loss).toBeCloseTo(0, 6);
      const ev = trainer.evaluate(x, new Int32Array(16), 3, 4);
      expect(ev.counts.reduce((a, b) => a + b, 0)).toBe(16);
      for (const [i, a] of ev.accuracy.entries()) if (ev.counts[i]! > 0) expect(a).toBe(1);
      expect(ev.loss).toBeCloseTo(0, 6);
    } finally {
      await trainer.dispose();
    }
  });
});

describe('RouterTrainer conditioned on the class', () => {
  // Images that say nothing of their cluster (uniform noise) and a cluster that is a function of
  // the class (c mod 2): p(k | x_t) is the prior at every t, p(k | x_t, c) is certain. Only a
  // router that reads the class can tell the clusters apart; trained with label dropout, its null
  // class answers p(k | x_t).
  const C = 4;
  const ROWS = 64;
  const draw = (n: number, seed: number) => {
    let s = seed;
    const next = () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31;
    };
    const data = new Float32Array(n * 64).map(() => 2 * next() - 1);
    const labels = Int32Array.from({ length: n }, () => Math.floor(next() * C));
    const clusters = labels.map((c) => c % 2);
    return { x: { data, shape: [n, 8, 8, 1] }, labels, clusters };
  };
  const config = {
    imageSize: 8,
    channels: 1,
    patchSize: 4,
    hidden: 16,
    depth: 1,
    heads: 2,
    mlpRatio: 2,
    numClusters: 2,
    numClasses: C,
  };

  it('learns p(k | x_t, c) from the class, keeps p(k | x_t) for the null class, and saves numClasses', async () => {
    const trainer = await RouterTrainer.create({
      network: { kind: 'router', config },
      optimizer: { learningRate: LR },
      seed: 4,
    });
    try {
      expect(trainer.numClasses).toBe(C);
      for (let i = 0; i < 60; i++) {
        const { x, labels, clusters } = draw(ROWS, 100 + i);
        // Label dropout as the coordinator's router training does: every 10th row unconditional.
        const dropped = labels.map((c, r) => (r % 10 === 0 ? C : c));
        await trainer.step(x, clusters, { labels: dropped });
      }
      const held = draw(400, 9);
      const withClass = trainer.evaluate(held.x, held.clusters, 5, 1, held.labels);
      const without = trainer.evaluate(held.x, held.clusters, 5, 1);
      console.info(JSON.stringify({ withClass, without }));
      expect(withClass.accuracy[0]).toBeGreaterThan(0.95);
      // Chance is 1/2; 4 binomial standard deviations of 400 samples is 0.1.
      expect(Math.abs(without.accuracy[0]! - 0.5)).toBeLessThan(0.1);
      expect(withClass.loss).toBeLessThan(without.loss);
      expect(() =>
        trainer.evaluate(held.x, held.clusters, 5, 1, new Int32Array(400).fill(C + 1)),
      ).toThrow(/labels\[0\] is 5, expected an integer in \[0, 4\]/);
      const bytes = await trainer.save();
      const { meta } = loadCheckpoint(bytes, { kind: 'router' });
      expect(meta.architecture).toEqual({ kind: 'router', ...config });
      const resumed = await RouterTrainer.create({
        network: { kind: 'router', config },
        optimizer: { learningRate: LR },
        seed: 4,
        init: bytes,
      });
      try {
        expect(resumed.evaluate(held.x, held.clusters, 5, 1, held.labels)).toEqual(withClass);
      } finally {
        await resumed.dispose();
      }
    } finally {
      await trainer.dispose();
    }
  }, 60_000);

  it('refuses labels for an unconditional router', async () => {
    const { numClasses: _, ...plain } = config;
    const trainer = await RouterTrainer.create({
      network: { kind: 'router', config: plain },
      optimizer: { learningRate: LR },
      seed: 4,
    });
    try {
      const { x, labels, clusters } = draw(4, 1);
      await expect(trainer.step(x, clusters, { labels })).rejects.toThrow(
        /labels given to an unconditional router/,
      );
    } finally {
      await trainer.dispose();
    }
  });
});
