import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';
import { assertTimeGrid, type Sampler, type SamplerOptions } from './sampler.js';

/**
 * Euler integration of the FM ODE (method.md §3): `x <- x + (t_{i+1} - t_i) v(x, t_i)`.
 * One model call per step. Shapes: see {@link Sampler}.
 */
export const euler: Sampler = (
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
    const dt = grid[i + 1]! - t;
    const current = x;
    const next = tf.tidy(() => {
      const v = model(current, tf.fill([batch], t) as Tensor1D, options.labels); // [B, ...]
      return tf.add(current, tf.mul(v, dt));
    });
    if (current !== xT) current.dispose();
    x = next;
    options.onStep?.(i, x);
  }
  return x;
};
