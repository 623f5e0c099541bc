import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GaussianMixture } from '../../src/gaussian-mixture.js';
import { euler } from '../../src/samplers/euler.js';
import { heun } from '../../src/samplers/heun.js';
import { initialNoise } from '../../src/samplers/sample.js';
import { timeGrid } from '../../src/samplers/time-grid.js';
import { mixture2d } from '../fixtures.js';
import { maxAbsDiff, moments, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

/**
 * N(0, I) -> N(mu, s^2 I): the FM ODE with the ideal velocity is the affine map x1 -> mu + s x1,
 * so each sample's exact endpoint is known, not just the moments.
 */
const MU = [0.5, -0.3];
const S = 0.2;
const gaussian = new GaussianMixture({ weights: [1], means: [MU], stds: [S] });

describe('Euler and Heun on a Gaussian transport N(0, I) -> N(mu, s^2 I)', () => {
  const xT = initialNoise([2000, 2], 1);
  const exact = tf.add(tf.mul(xT, S), tf.tensor1d(MU));
  afterAll(() => tf.dispose([xT, exact]));

  const error = (sampler: typeof euler, steps: number) => {
    const out = sampler(gaussian.idealVelocity(), xT, timeGrid(steps));
    const e = maxAbsDiff(out, exact);
    out.dispose();
    return e;
  };

  it('both converge to the exact endpoint; Heun is more accurate at the same steps (measured max error, 20 steps: Euler 0.086, Heun 0.018)', () => {
    for (const steps of [10, 20, 50]) {
      expect(error(heun, steps)).toBeLessThan(error(euler, steps) / 2);
    }
    expect(error(euler, 50)).toBeLessThan(error(euler, 10) / 3);
    expect(error(heun, 50)).toBeLessThan(0.005);
  });

  it('Heun, 50 steps: sample mean and variance match mu and s^2', () => {
    const out = heun(gaussian.idealVelocity(), xT, timeGrid(50));
    const ref = moments(exact);
    const m = moments(out);
    for (let d = 0; d < 2; d++) {
      expect(Math.abs(m.mean[d]! - MU[d]!)).toBeLessThan(4 * m.meanSe[d]!);
      expect(Math.abs(m.cov[d]![d]! - S * S)).toBeLessThan(4 * m.covSe[d]![d]!);
      // Against the exact map of the same noise, sampling error cancels.
      expect(Math.abs(m.cov[d]![d]! / ref.cov[d]![d]! - 1)).toBeLessThan(0.01);
    }
    out.dispose();
  });
});

describe('euler', () => {
  it('pinned: seed 2024, 4 x 2 samples of the 2-D mixture, 10 uniform steps', () => {
    const xT = initialNoise([4, 2], 2024);
    const out = euler(mixture2d.idealVelocity(), xT, timeGrid(10));
    const expected = [0.4783636, 0.57274354, -0.81203842, -0.26349002];
    Array.from(out.dataSync().slice(0, 4)).forEach((v, i) => {
      expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5);
    });
  });

  it('calls onStep after every step and does not leak over a 50-step loop', () => {
    const xT = initialNoise([16, 2], 5);
    const model = mixture2d.idealVelocity();
    euler(model, xT, timeGrid(2)).dispose(); // warm up any lazily created tensors
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const out = euler(model, xT, timeGrid(50), { onStep: (i, x) => seen.push(i, x.shape[0]!) });
    expect(seen.length).toBe(100);
    expect(seen.slice(-2)).toEqual([49, 16]);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(xT.isDisposed).toBe(false);
  });

  it('rejects a grid that does not strictly decrease inside [0, 1]', () => {
    const xT: Tensor = tf.zeros([1, 2]);
    const model = mixture2d.idealVelocity();
    expect(() => euler(model, xT, [1])).toThrow(/at least 2/);
    expect(() => euler(model, xT, [1, 0.5, 0.5, 0])).toThrow(/strictly decrease/);
    expect(() => euler(model, xT, [1.5, 0])).toThrow(/outside/);
  });
});
