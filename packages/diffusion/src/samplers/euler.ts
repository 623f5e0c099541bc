import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';
import { integrate, type Sampler, type SamplerOptions } from './sampler.js';

/**
 * Euler integration of the FM ODE (docs/method.md §3): `x <- x + (t_{i+1} - t_i) v(x, t_i)`.
 * One model call per step. Shapes: see {@link Sampler}.
 */
export const euler: Sampler = (
  model: VelocityModel,
  xT: Tensor,
  grid: readonly number[],
  options: SamplerOptions = {},
): Tensor =>
  integrate(model, xT, grid, options, (x, t, tNext, vAt) =>
    tf.add(x, tf.mul(vAt(x, t), tNext - t)),
  );
