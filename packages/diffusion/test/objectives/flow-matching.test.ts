import type { Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  FlowMatchingObjective,
  type FmTimeSampling,
  fmTrainingBatch,
  sampleFmTimes,
} from '../../src/objectives/flow-matching.js';
import { maxAbsDiff, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

const stats = (values: ArrayLike<number>) => {
  const n = values.length;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    s += values[i]!;
    s2 += values[i]! ** 2;
  }
  return { mean: s / n, std: Math.sqrt(s2 / n - (s / n) ** 2) };
};

describe('fmTrainingBatch', () => {
  it('x_t = (1 - t) x0 + t e, target e - x0, tau = 999 t', () => {
    const x0 = tf.tensor2d([
      [1, -1],
      [0.5, 0],
    ]);
    const e = tf.tensor2d([
      [0, 2],
      [-1, 1],
    ]);
    const { xt, tau, target } = fmTrainingBatch(x0, e, tf.tensor1d([0.25, 1]) as Tensor1D);
    expect(Array.from(xt.dataSync())).toEqual([0.75, -0.25, -1, 1]);
    expect(Array.from(target.dataSync())).toEqual([-1, 3, -1.5, 1]);
    expect(Array.from(tau.dataSync())).toEqual([249.75, 999]);
  });

  it('works on image-shaped [B, H, W, C] batches with per-sample t', () => {
    const x0 = tf.ones([2, 3, 3, 1]);
    const e = tf.zeros([2, 3, 3, 1]);
    const { xt } = fmTrainingBatch(x0, e, tf.tensor1d([0, 0.5]) as Tensor1D);
    expect(xt.shape).toEqual([2, 3, 3, 1]);
    const v = xt.dataSync();
    expect(v[0]).toBe(1);
    expect(v[9]).toBe(0.5);
  });
});

describe('sampleFmTimes', () => {
  it('uniform: in [0, 1], mean 1/2, std 1/sqrt(12)', () => {
    const t = sampleFmTimes(20000, { kind: 'uniform' }, 1).dataSync();
    expect(Math.min(...t)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...t)).toBeLessThanOrEqual(1);
    const s = stats(t);
    expect(Math.abs(s.mean - 0.5)).toBeLessThan(4 * (1 / Math.sqrt(12) / Math.sqrt(20000)));
    expect(s.std).toBeCloseTo(1 / Math.sqrt(12), 2);
  });

  it('logit-normal: logit(t) has the configured mean and std', () => {
    const t = sampleFmTimes(20000, { kind: 'logit-normal', mean: 0.5, std: 0.8 }, 2).dataSync();
    const s = stats(Array.from(t, (v) => Math.log(v / (1 - v))));
    expect(Math.abs(s.mean - 0.5)).toBeLessThan(4 * (0.8 / Math.sqrt(20000)));
    expect(s.std).toBeCloseTo(0.8, 1);
  });

  it('is deterministic in the seed (seed 0 included) and differs across seeds', () => {
    const a = sampleFmTimes(16, { kind: 'logit-normal' }, 0);
    const b = sampleFmTimes(16, { kind: 'logit-normal' }, 0);
    const c = sampleFmTimes(16, { kind: 'logit-normal' }, 1);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(maxAbsDiff(a, c)).toBeGreaterThan(0.01);
  });

  it('an unknown kind throws listing the valid ones', () => {
    expect(() => sampleFmTimes(4, { kind: 'beta' } as unknown as FmTimeSampling, 0)).toThrow(
      /valid: logit-normal, uniform/,
    );
  });
});

describe('FlowMatchingObjective', () => {
  const objective = new FlowMatchingObjective({
    name: 'fm',
    timeSampling: { kind: 'logit-normal' },
  });

  it('fills config defaults', () => {
    expect(objective.config).toEqual({
      name: 'fm',
      timeSampling: { kind: 'logit-normal', mean: 0, std: 1 },
    });
  });

  it('sampleTraining is deterministic and self-consistent: x0 = x_t - t v', () => {
    const x0 = tf.randomUniform([64, 8], -1, 1, 'float32', 3);
    const a = objective.sampleTraining(x0, 42);
    const b = objective.sampleTraining(x0, 42);
    expect(maxAbsDiff(a.xt, b.xt)).toBe(0);
    expect(maxAbsDiff(a.tau, b.tau)).toBe(0);
    const t = tf.reshape(tf.div(a.tau, 999), [64, 1]);
    expect(maxAbsDiff(tf.sub(a.xt, tf.mul(t, a.target)), x0)).toBeLessThan(1e-5);
    expect(a.tau.shape).toEqual([64]);
  });

  it('loss is the mean squared error', () => {
    const loss = objective.loss(tf.tensor1d([1, 2, 3]), tf.tensor1d([1, 0, 0]));
    expect(loss.dataSync()[0]).toBeCloseTo(13 / 3, 6);
    expect(() => objective.loss(tf.ones([2]), tf.ones([3]))).toThrow(/shape/);
  });
});
