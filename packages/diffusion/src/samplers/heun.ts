import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';
import { assertTimeGrid, type Sampler, type SamplerOptions } from './sampler.js';

/**
 * Heun's method (Karras et al. 2022, Alg. 1) on the FM ODE (method.md §3): an Euler predictor
 * `x' = x + dt v(x, t_i)`, then `x <- x + dt (v(x, t_i) + v(x', t_{i+1})) / 2`. A step that ends at
 * t = 0 is plain Euler, as in Karras et al. Two model calls per step (one for the last).
 * Shapes: see {@link Sampler}.
 */
export const heun: Sampler = (
  model: VelocityModel,
  xT: Tensor,
  grid: readonly number[],
  options: SamplerOptions = {},
): Tensor => {
  assertTimeGrid(grid);
  const batch = xT.shape[0]!;
  let x = xT;
  for (let i = 0; i + 1 < grid.length; i++) {
    const t = grid[i]!;
    const tNext = grid[i + 1]!;
    const dt = tNext - t;
    const current = x;
    const next = tf.tidy(() => {
      const v = model(current, tf.fill([batch], t) as Tensor1D, options.labels); // [B, ...]
      const predicted = tf.add(current, tf.mul(v, dt));
      if (tNext === 0) return predicted;
      const vNext = model(predicted, tf.fill([batch], tNext) as Tensor1D, options.labels);
      return tf.add(current, tf.mul(tf.add(v, vNext), dt / 2));
    });
    if (current !== xT) current.dispose();
    x = next;
    options.onStep?.(i, x);
  }
  return x;
};
