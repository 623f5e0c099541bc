import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';
import { integrate, type Sampler, type SamplerOptions } from './sampler.js';

/**
 * Heun's method (Karras et al. 2022, Alg. 1) on the FM ODE (docs/method.md §3): an Euler predictor
 * `x' = x + dt v(x, t_i)`, then `x <- x + dt (v(x, t_i) + v(x', t_{i+1})) / 2`. A step that ends at
 * t = 0 is plain Euler, as in Karras et al. Two model calls per step (one for the last).
 * Shapes: see {@link Sampler}.
 */
export const heun: Sampler = (
  model: VelocityModel,
  xT: Tensor,
  grid: readonly number[],
  options: SamplerOptions = {},
): Tensor =>
  integrate(model, xT, grid, options, (x, t, tNext, vAt) => {
    const dt = tNext - t;
    const v = vAt(x, t); //                                                               [B, ...]
    const predicted = tf.add(x, tf.mul(v, dt));
    if (tNext === 0) return predicted;
    return tf.add(x, tf.mul(tf.add(v, vAt(predicted, tNext)), dt / 2));
  });
