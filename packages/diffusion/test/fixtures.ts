import { deriveSeed } from '@archipelago/random';
import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { GaussianMixture } from '../src/gaussian-mixture.js';

/** 4-D, 3 components with distinct sigmas, means inside [-1, 1]. */
export const mixture4d = new GaussianMixture({
  weights: [0.5, 0.3, 0.2],
  means: [
    [0.6, -0.3, 0.2, 0.5],
    [-0.5, 0.4, -0.6, 0.1],
    [0.1, 0.7, 0.5, -0.6],
  ],
  stds: [0.08, 0.2, 0.4],
});

/** 2-D, 3 components with distinct sigmas. */
export const mixture2d = new GaussianMixture({
  weights: [0.5, 0.3, 0.2],
  means: [
    [0.5, 0.5],
    [-0.6, 0.2],
    [0.1, -0.6],
  ],
  stds: [0.1, 0.2, 0.3],
});

/**
 * FM-path states: for each time in `times`, `perTime` samples `x_t = (1 - t) x0 + t e` with x0 from
 * `mixture`. Returns `x` `[times * perTime, D]` and per-sample `t` `[times * perTime]`.
 */
export function fmStates(
  mixture: GaussianMixture,
  times: number[],
  perTime: number,
  seed: number,
): { x: Tensor; t: Tensor1D } {
  return tf.tidy(() => {
    const n = times.length * perTime;
    const x0 = mixture.sample(n, deriveSeed(seed, 1));
    const e = tf.randomNormal([n, mixture.dim], 0, 1, 'float32', deriveSeed(seed, 2));
    const t = tf.tensor1d(times.flatMap((v) => new Array<number>(perTime).fill(v)));
    const tb = tf.reshape(t, [n, 1]);
    return { x: tf.add(tf.mul(tf.sub(1, tb), x0), tf.mul(tb, e)), t: t as Tensor1D };
  });
}
