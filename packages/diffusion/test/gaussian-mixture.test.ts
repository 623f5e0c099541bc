import { deriveSeed } from '@archipelago/random';
import type { Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { GaussianMixture } from '../src/gaussian-mixture.js';
import { createDdpmSchedule } from '../src/schedules/ddpm-schedule.js';
import { fmStates, mixture2d, mixture4d } from './fixtures.js';
import { maxAbsDiff, moments, useCpuBackend } from './helpers.js';

beforeAll(useCpuBackend);

describe('GaussianMixture', () => {
  it('samples with the closed-form mean and covariance, deterministically in the seed', () => {
    const samples = mixture2d.sample(20000, 1);
    const m = moments(samples);
    const mean = mixture2d.mean();
    const cov = mixture2d.covariance();
    for (let a = 0; a < 2; a++) {
      expect(Math.abs(m.mean[a]! - mean[a]!)).toBeLessThan(4 * m.meanSe[a]!);
      for (let b = 0; b < 2; b++) {
        expect(Math.abs(m.cov[a]![b]! - cov[a]![b]!)).toBeLessThan(4 * m.covSe[a]![b]!);
      }
    }
    expect(maxAbsDiff(mixture2d.sample(10, 0), mixture2d.sample(10, 0))).toBe(0);
  });

  it('posterior rows sum to 1; the velocity is the posterior-weighted component velocities', () => {
    const { x, t } = fmStates(mixture4d, [0.05, 0.5, 0.95], 20, 2);
    const p = mixture4d.posterior()(x, t);
    const sums = tf.sum(p, 1).dataSync();
    for (const s of sums) expect(s).toBeCloseTo(1, 6);
    const weighted = tf.addN(
      [0, 1, 2].map((k) =>
        tf.mul(mixture4d.componentVelocity(k)(x, t), tf.slice(p, [0, k], [-1, 1])),
      ),
    );
    expect(maxAbsDiff(weighted, mixture4d.idealVelocity()(x, t))).toBeLessThan(1e-5);
  });

  it('is right at the ends: v = x - E[x0] at t = 1 and v = -x at t = 0', () => {
    const x = tf.tensor2d([
      [0.3, -0.2, 1, 0],
      [2, 2, -1, 0.5],
    ]);
    const mean = mixture4d.mean();
    const atOne = mixture4d.idealVelocity()(x, tf.tensor1d([1, 1]) as Tensor1D);
    expect(maxAbsDiff(atOne, tf.sub(x, tf.tensor2d([mean, mean])))).toBeLessThan(1e-6);
    const atZero = mixture4d.idealVelocity()(x, tf.tensor1d([0, 0]) as Tensor1D);
    expect(maxAbsDiff(atZero, tf.neg(x))).toBeLessThan(1e-6);
  });

  it('the ideal velocity is the regression of e - x0 on x_t: unbiased, residual orthogonal to it (Monte Carlo, 40000 draws)', () => {
    const n = 40000;
    const time = 0.4;
    const x0 = mixture2d.sample(n, 5);
    const e = tf.randomNormal([n, 2], 0, 1, 'float32', deriveSeed(6));
    const xt = tf.add(tf.mul(x0, 1 - time), tf.mul(e, time));
    const v = mixture2d.idealVelocity()(xt, tf.fill([n], time) as Tensor1D);
    const residual = tf.sub(tf.sub(e, x0), v);
    const meanResidual = tf.mean(residual, 0).dataSync();
    const inner = tf.mean(tf.sum(tf.mul(residual, v), 1)).dataSync()[0]!;
    const residualSd = Math.sqrt(tf.mean(tf.square(residual)).dataSync()[0]!);
    for (const r of meanResidual) expect(Math.abs(r)).toBeLessThan((4 * residualSd) / Math.sqrt(n));
    expect(Math.abs(inner)).toBeLessThan(0.02);
    // A perturbed predictor does worse (the regression minimises the squared error).
    const mse = (pred: tf.Tensor) => tf.mean(tf.square(tf.sub(tf.sub(e, x0), pred))).dataSync()[0]!;
    expect(mse(v)).toBeLessThan(mse(tf.mul(v, 1.05)));
    expect(mse(v)).toBeLessThan(mse(tf.mul(v, 0.95)));
  });

  it('the ideal epsilon on the DDPM path matches E[e | x_n] computed directly', () => {
    const schedule = createDdpmSchedule({ kind: 'linear' });
    const g = new GaussianMixture({ weights: [1], means: [[0.5, -0.5]], stds: [0.3] });
    const n = 300;
    const abar = schedule.alphasCumprod[n]!;
    const x = tf.tensor2d([
      [0.2, 0.1],
      [-1, 2],
    ]);
    const eps = g
      .idealEpsilon(schedule)(x, tf.tensor1d([n, n]) as Tensor1D)
      .arraySync() as number[][];
    // Single Gaussian: E[e | x] = sqrt(1 - abar) (x - sqrt(abar) mu) / (abar s^2 + 1 - abar).
    const xs = x.arraySync();
    for (let b = 0; b < 2; b++) {
      for (let d = 0; d < 2; d++) {
        const mu = d === 0 ? 0.5 : -0.5;
        const expected =
          (Math.sqrt(1 - abar) * (xs[b]![d]! - Math.sqrt(abar) * mu)) / (abar * 0.09 + 1 - abar);
        expect(eps[b]![d]).toBeCloseTo(expected, 5);
      }
    }
  });

  it('rejects inconsistent configs and normalises weights', () => {
    expect(() => new GaussianMixture({ weights: [1, 1], means: [[0]], stds: [1, 1] })).toThrow();
    expect(() => new GaussianMixture({ weights: [1], means: [[0]], stds: [0] })).toThrow(
      /positive/,
    );
    expect(
      new GaussianMixture({ weights: [2, 6], means: [[0], [1]], stds: [1, 1] }).config.weights,
    ).toEqual([0.25, 0.75]);
  });
});
