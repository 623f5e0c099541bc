import { initBackend } from '@archipelago/models';
import { createRng } from '@archipelago/random';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { pca } from '../src/pca.js';

beforeAll(async () => {
  await initBackend();
});

/** `count` random orthonormal vectors of length d (Gram-Schmidt of Gaussian vectors). */
function orthonormal(count: number, d: number, seed: number): Float64Array[] {
  const rng = createRng(seed);
  const out: Float64Array[] = [];
  while (out.length < count) {
    const v = Float64Array.from({ length: d }, () => rng.normal());
    for (const u of out) {
      const dot = v.reduce((s, x, j) => s + x * u[j]!, 0);
      for (let j = 0; j < d; j++) v[j]! -= dot * u[j]!;
    }
    const norm = Math.hypot(...v);
    out.push(v.map((x) => x / norm));
  }
  return out;
}

/**
 * n points: mean + sum_i z_i * std_i * u_i + isotropic noise, z standard normal. The covariance
 * is sum_i std_i^2 u_i u_i^T + noise^2 I, so the principal axes are u_i with variances
 * std_i^2 + noise^2, and the total variance is sum std_i^2 + d * noise^2.
 */
function synthetic(n: number, d: number, stds: number[], noise: number, seed: number) {
  const axes = orthonormal(stds.length, d, seed);
  const rng = createRng(seed + 1);
  const data = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) data[i * d + j] = 3 + noise * rng.normal();
    stds.forEach((s, a) => {
      const z = s * rng.normal();
      for (let j = 0; j < d; j++) data[i * d + j]! += z * axes[a]![j]!;
    });
  }
  const total = stds.reduce((s, x) => s + x * x, 0) + d * noise * noise;
  return { data, axes, total };
}

const cosine = (a: ArrayLike<number>, b: ArrayLike<number>, d: number): number => {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[j]! * b[j]!;
  return s;
};

describe('pca', () => {
  for (const [solver, d] of [
    ['exact', 12],
    ['randomized', 400],
  ] as const) {
    it(`recovers known principal directions (${solver}, d=${d})`, async () => {
      const stds = [5, 3, 1.5];
      const noise = 0.1;
      const n = 4000;
      const { data, axes, total } = synthetic(n, d, stds, noise, 11);
      const tensorsBefore = tf.memory().numTensors;
      const model = await pca(data, n, d, { components: 3, seed: 1 });
      expect(tf.memory().numTensors).toBe(tensorsBefore);
      expect(model.solver).toBe(solver);
      for (let a = 0; a < 3; a++) {
        const comp = model.components.subarray(a * d, (a + 1) * d);
        expect(Math.abs(cosine(comp, axes[a]!, d))).toBeGreaterThan(0.99);
        // Sign convention: the largest-magnitude entry is positive.
        let arg = 0;
        for (let j = 0; j < d; j++) if (Math.abs(comp[j]!) > Math.abs(comp[arg]!)) arg = j;
        expect(comp[arg]).toBeGreaterThan(0);
        const expected = (stds[a]! ** 2 + noise ** 2) / total;
        expect(model.explainedVarianceRatio[a]).toBeCloseTo(expected, 1);
        expect(Math.abs(model.explainedVarianceRatio[a]! / expected - 1)).toBeLessThan(0.08);
      }
      for (let j = 0; j < d; j++) {
        let m = 0;
        for (let i = 0; i < n; i++) m += data[i * d + j]!;
        expect(model.mean[j]).toBeCloseTo(m / n, 4);
      }

      // Projection: the mean maps to 0, and each axis direction to its coordinate.
      const probe = new Float32Array(2 * d);
      for (let j = 0; j < d; j++) {
        probe[j] = model.mean[j]!;
        probe[d + j] = model.mean[j]! + 2 * model.components[j]!;
      }
      const y = await model.project(probe, 2);
      expect(y.length).toBe(6);
      for (let c = 0; c < 3; c++) expect(y[c]).toBeCloseTo(0, 3);
      expect(y[3]).toBeCloseTo(2, 3);
      expect(y[4]).toBeCloseTo(0, 3);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    });
  }

  it('is deterministic for a seed and subsamples large inputs', async () => {
    const { data } = synthetic(3000, 300, [4, 2], 0.2, 5);
    const a = await pca(data, 3000, 300, { components: 2, seed: 9, maxSampleRows: 1000 });
    const b = await pca(data, 3000, 300, { components: 2, seed: 9, maxSampleRows: 1000 });
    expect(a.sampleRows).toBe(1000);
    expect(b.components).toEqual(a.components);
    expect(b.explainedVarianceRatio).toEqual(a.explainedVarianceRatio);
  });

  it('validates arguments', async () => {
    await expect(pca(new Float32Array(10), 5, 2, { components: 3, seed: 1 })).rejects.toThrow(
      /components/,
    );
    await expect(pca(new Float32Array(9), 5, 2, { components: 1, seed: 1 })).rejects.toThrow(
      /length 9/,
    );
  });
});
