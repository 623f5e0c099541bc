import { GaussianMixture } from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The toy data of the training tests: three isotropic Gaussians in 2-D, equal weights, means on a
 * circle of radius 0.8 (1.39 apart, 14 sigma), sigma 0.1.
 */
export const SIGMA = 0.1;
export const MEANS = [0, 1, 2].map((k) => [
  0.8 * Math.cos((2 * Math.PI * k) / 3),
  0.8 * Math.sin((2 * Math.PI * k) / 3),
]);
export const MIXTURE = new GaussianMixture({
  weights: [1, 1, 1],
  means: MEANS,
  stds: [SIGMA, SIGMA, SIGMA],
});

/** `n` samples `{ data [n * 2], shape [n, 2] }` with their component ids, deterministic in `seed`. */
export function sampleMixture(
  n: number,
  seed: number,
): { x: { data: Float32Array; shape: number[] }; clusters: Int32Array } {
  const [u, z] = tf.tidy(() => [
    tf.randomUniform([n], 0, 1, 'float32', seed).dataSync(),
    tf.randomNormal([n, 2], 0, 1, 'float32', seed + 1).dataSync(),
  ]);
  const data = new Float32Array(2 * n);
  const clusters = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = Math.min(2, Math.floor(u[i]! * 3));
    clusters[i] = k;
    data[2 * i] = MEANS[k]![0]! + SIGMA * z[2 * i]!;
    data[2 * i + 1] = MEANS[k]![1]! + SIGMA * z[2 * i + 1]!;
  }
  return { x: { data, shape: [n, 2] }, clusters };
}

/** Fraction of the rows of `x` `[N, 2]` within 3 sigma of some mode. */
export function nearModes(x: tf.Tensor): number {
  const v = x.dataSync();
  const n = v.length / 2;
  let near = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.min(...MEANS.map(([a, b]) => Math.hypot(v[2 * i]! - a!, v[2 * i + 1]! - b!)));
    if (d < 3 * SIGMA) near++;
  }
  return near / n;
}

/** Learning rate of step i of n: constant for the first half, then linear decay to 5%. */
export function learningRateAt(base: number, i: number, n: number): number {
  return base * (i < n / 2 ? 1 : Math.max(0.05, 2 * (1 - i / n)));
}

/** The largest absolute difference between two sets of parameters with the same names. */
export function maxAbsDiff(
  a: Record<string, Float32Array>,
  b: Record<string, Float32Array>,
): number {
  let max = 0;
  for (const [name, va] of Object.entries(a)) {
    const vb = b[name];
    if (!vb || vb.length !== va.length) throw new Error(`parameter ${name} differs in size`);
    for (let i = 0; i < va.length; i++) max = Math.max(max, Math.abs(va[i]! - vb[i]!));
  }
  return max;
}

/** Copies of a trainer's parameters. */
export function snapshot(params: Map<string, tf.Variable>): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, v] of params) out[name] = (v.dataSync() as Float32Array).slice();
  return out;
}
