import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { DiT, type DiTConfig } from '../../src/nn/dit.js';
import { createTrainer } from '../../src/nn/train-step.js';

const TINY: DiTConfig = {
  imageSize: 8,
  channels: 1,
  patchSize: 2,
  hidden: 32,
  depth: 2,
  heads: 2,
  mlpRatio: 4,
  numClasses: 0,
  learnSigma: false,
};

/** eps-prediction MSE on a fixed batch: x_n = sqrt(abar) x0 + sqrt(1 - abar) eps. */
function fixedBatch(model: DiT, B: number) {
  const x0 = tf.tidy(() => tf.tanh(tf.randomNormal([B, 8, 8, 1], 0, 1.5, 'float32', 1)));
  const eps = tf.randomNormal([B, 8, 8, 1], 0, 1, 'float32', 2);
  const steps = Array.from({ length: B }, (_, i) => Math.round((i + 0.5) * (1000 / B)));
  const abar = steps.map((n) => Math.cos(((n / 1000 + 0.008) / 1.008) * (Math.PI / 2)) ** 2);
  const xt = tf.tidy(() =>
    tf.add(
      tf.mul(x0, tf.tensor4d(abar.map(Math.sqrt), [B, 1, 1, 1])),
      tf.mul(
        eps,
        tf.tensor4d(
          abar.map((a) => Math.sqrt(1 - a)),
          [B, 1, 1, 1],
        ),
      ),
    ),
  );
  const tau = tf.tensor1d(steps);
  const lossFn = () => tf.mean(tf.square(tf.sub(model.apply(xt, tau), eps))) as tf.Scalar;
  return { lossFn, dispose: () => tf.dispose([x0, eps, xt, tau]) };
}

describe('createTrainer', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  it('takes exactly Adam steps (and AdamW with decoupled decay)', () => {
    for (const weightDecay of [0, 0.1]) {
      const w = tf.variable(tf.tensor1d([1, -2]));
      const trainer = createTrainer({
        params: new Map([['w', w]]),
        learningRate: 0.1,
        weightDecay,
      });
      // loss = sum(w^2 * c): g = 2 c w
      const c = [3, 0.5];
      let p = [1, -2];
      const m = [0, 0];
      const v = [0, 0];
      for (let t = 1; t <= 3; t++) {
        trainer.step(() => tf.sum(tf.mul(tf.square(w), tf.tensor1d(c))) as tf.Scalar);
        p = p.map((pi, i) => {
          const g = 2 * c[i]! * pi;
          m[i] = 0.9 * m[i]! + 0.1 * g;
          v[i] = 0.999 * v[i]! + 0.001 * g * g;
          const decayed = pi * (1 - 0.1 * weightDecay);
          const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
          return decayed - (0.1 / (1 - 0.9 ** t)) * (m[i]! / denom);
        });
        const got = Array.from(w.dataSync());
        got.forEach((x, i) => {
          expect(x).toBeCloseTo(p[i]!, 5);
        });
      }
      expect(trainer.stepCount).toBe(3);
      trainer.dispose();
      w.dispose();
    }
  });

  it('clips the global gradient norm', () => {
    const w = tf.variable(tf.tensor1d([0, 0]));
    const trainer = createTrainer({
      params: new Map([['w', w]]),
      learningRate: 1,
      gradClip: 1,
      betas: [0, 0],
    });
    // g = (30, 40), norm 50 -> (0.6, 0.8); with betas 0 the step is lr * g / (|g| + eps) = sign.
    const grads = new Map([['w', tf.tensor1d([30, 40])]]);
    trainer.applyGradients(grads);
    const got = Array.from(w.dataSync());
    expect(got[0]).toBeCloseTo(-1, 5);
    expect(got[1]).toBeCloseTo(-1, 5);
    tf.dispose([...grads.values(), w]);
    trainer.dispose();
    expect(() => createTrainer({ params: new Map(), learningRate: 1 })).toThrow(
      'no trainable parameters',
    );
    expect(() => createTrainer({ params: new Map([['w', w]]), learningRate: 0 })).toThrow(
      /learningRate/,
    );
  });

  it('computeGradients + applyGradients (e.g. after averaging workers) equals step()', () => {
    const a = new DiT(TINY, 5);
    const b = new DiT(TINY, 5);
    const batchA = fixedBatch(a, 4);
    const batchB = fixedBatch(b, 4);
    const ta = createTrainer({ params: a.params, learningRate: 1e-3 });
    const tb = createTrainer({ params: b.params, learningRate: 1e-3 });
    for (let i = 0; i < 3; i++) {
      const la = ta.step(batchA.lossFn);
      // Two "workers" with the same batch: the average of their gradients is the gradient.
      const g1 = tb.computeGradients(batchB.lossFn);
      const g2 = tb.computeGradients(batchB.lossFn);
      const avg = new Map(
        [...g1.grads].map(([n, g]) => [n, tf.div(tf.add(g, g2.grads.get(n)!), 2)]),
      );
      tb.applyGradients(avg);
      tf.dispose([...g1.grads.values(), ...g2.grads.values(), ...avg.values()]);
      expect(g1.loss).toBeCloseTo(la, 6);
    }
    for (const [name, v] of a.params) {
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(v, b.params.get(name)!))).dataSync()[0]!);
      expect(d).toBeLessThan(1e-6);
    }
    for (const x of [ta, tb, a, b, batchA, batchB]) x.dispose();
  }, 30_000);

  it('keeps memory flat: tf.memory().numTensors is stable over 20 steps', () => {
    const model = new DiT(TINY, 1);
    const { lossFn, dispose } = fixedBatch(model, 4);
    const trainer = createTrainer({
      params: model.params,
      learningRate: 1e-3,
      gradClip: 1,
      weightDecay: 0.01,
    });
    trainer.step(lossFn);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) trainer.step(lossFn);
    expect(tf.memory().numTensors).toBe(before);
    dispose();
    trainer.dispose();
    model.dispose();
  }, 30_000);

  it('a tiny DiT on wasm overfits a fixed batch of 8x8 images: loss falls more than 5x in 100 steps', () => {
    const model = new DiT(TINY, 0);
    const { lossFn, dispose } = fixedBatch(model, 8);
    const trainer = createTrainer({ params: model.params, learningRate: 3e-3 });
    const first = trainer.step(lossFn);
    let last = first;
    for (let i = 1; i < 100; i++) last = trainer.step(lossFn);
    expect(first).toBeGreaterThan(0.5);
    expect(last).toBeLessThan(first / 5);
    dispose();
    trainer.dispose();
    model.dispose();
  }, 40_000);
});
