import { deriveSeed } from '@archipelago/random';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { LinearMmseDenoiser } from '../src/linear-mmse-denoiser.js';
import { maxAbsDiff, useCpuBackend } from './helpers.js';

beforeAll(useCpuBackend);

/** A rotation of the plane by `a` radians, applied to the first two of `d` axes. */
function rotatedBasis(d: number, a: number): Float32Array {
  const u = new Float32Array(d * d);
  for (let i = 0; i < d; i++) u[i * d + i] = 1;
  u.set([Math.cos(a), Math.sin(a)], 0);
  u.set([-Math.sin(a), Math.cos(a)], d);
  return u;
}

const D = 4;
const mean = Float32Array.from([0.5, -0.25, 0, 1]);
const variances = Float64Array.from([2, 0.3, 0.05, 0]);
const basis = rotatedBasis(D, 0.7);

/** `n` Gaussian samples with the moments above: `mean + U^T (sqrt(lambda) z)`, `[n, D]`. */
function gaussian(n: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const z = tf.randomNormal([n, D], 0, 1, 'float32', deriveSeed(seed, 1));
    const scaled = tf.mul(z, tf.tensor1d(Float32Array.from(variances, Math.sqrt)));
    return tf.add(tf.matMul(scaled, tf.tensor2d(basis, [D, D])), tf.tensor2d(mean, [1, D]));
  });
}

/** Mean squared error per element of `estimate(x_t)` at FM time t on Gaussian data. */
function empiricalError(estimate: (xt: tf.Tensor, t: number) => tf.Tensor, t: number): number {
  return tf.tidy(() => {
    const x0 = gaussian(40_000, 3);
    const e = tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(4, 2));
    const xt = tf.add(tf.mul(x0, 1 - t), tf.mul(e, t));
    return tf.mean(tf.square(tf.sub(estimate(xt, t), x0))).dataSync()[0]!;
  });
}

describe('LinearMmseDenoiser', () => {
  const full = new LinearMmseDenoiser({ mean, basis, variances });

  it('has the closed-form expected error on data with its moments, and beats the per-pixel form on correlated data', () => {
    // The diagonal of U^T diag(lambda) U: each pixel's own variance.
    const perPixel = new Float64Array(D);
    for (let i = 0; i < D; i++)
      for (let j = 0; j < D; j++) perPixel[j] += variances[i]! * basis[i * D + j]! ** 2;
    const wiener = new LinearMmseDenoiser({ mean, basis: null, variances: perPixel });
    for (const t of [0.2, 0.5, 0.8, 0.95]) {
      const measured = empiricalError((x, s) => full.x0(x, s), t);
      expect(Math.abs(measured - full.expectedError(t))).toBeLessThan(0.03 * full.expectedError(t));
      const diagonal = empiricalError((x, s) => wiener.x0(x, s), t);
      expect(Math.abs(diagonal - wiener.expectedError(t))).toBeLessThan(0.03 * diagonal);
      expect(diagonal).toBeGreaterThan(full.expectedError(t));
    }
  });

  it('is the mean at t = 1 and the input (where there is variance) at t = 0', () => {
    const x = gaussian(5, 9);
    const atOne = full.x0(x, 1);
    expect(maxAbsDiff(atOne, tf.tile(tf.tensor2d(mean, [1, D]), [5, 1]))).toBeLessThan(1e-6);
    // Along the zero-variance axis (the last one, untouched by the rotation) x0 is the mean.
    const atZero = full.x0(x, 0).arraySync() as number[][];
    const input = x.arraySync();
    for (const [b, row] of atZero.entries()) {
      for (let j = 0; j < 3; j++) expect(row[j]).toBeCloseTo(input[b]![j]!, 5);
      expect(row[3]).toBeCloseTo(mean[3]!, 6);
    }
    expect(full.expectedError(0)).toBe(0);
    expect(full.expectedError(1)).toBeCloseTo(variances.reduce((a, v) => a + v, 0) / D, 12);
  });

  it('the diagonal form is the full form with the identity basis', () => {
    const eye = new LinearMmseDenoiser({ mean, basis: rotatedBasis(D, 0), variances });
    const diag = new LinearMmseDenoiser({ mean, basis: null, variances });
    const x = tf.randomNormal([7, 2, 2, 1], 0, 1, 'float32', 11);
    for (const t of [0.1, 0.6, 0.9]) {
      expect(maxAbsDiff(eye.x0(x, t), diag.x0(x, t))).toBeLessThan(1e-6);
      expect(eye.expectedError(t)).toBeCloseTo(diag.expectedError(t), 12);
    }
    expect(diag.x0(x, 0.5).shape).toEqual([7, 2, 2, 1]);
  });

  it('as a velocity model, x_t - t v is its x0 estimate at per-sample times', () => {
    const x = gaussian(3, 5);
    const times = [0.25, 0.5, 0.9];
    const v = full.velocity()(x, tf.tensor1d(times));
    for (const [b, t] of times.entries()) {
      const row = tf.slice(x, [b], [1]);
      const back = tf.sub(row, tf.mul(tf.slice(v, [b], [1]), t));
      expect(maxAbsDiff(back, full.x0(row, t))).toBeLessThan(1e-5);
    }
  });

  it('refuses moments that do not fit together or are not finite', () => {
    expect(() => new LinearMmseDenoiser({ mean, basis, variances: variances.slice(0, 3) })).toThrow(
      /variances/,
    );
    expect(
      () =>
        new LinearMmseDenoiser({ mean, basis: null, variances: Float64Array.from([1, 1, -1, 1]) }),
    ).toThrow(/finite/);
    expect(() => full.x0(tf.zeros([1, D]), 1.5)).toThrow(RangeError);
  });
});
