import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';
import { createDdpmSchedule } from '../schedules/ddpm-schedule.js';
import { fmTimeForLogSnr } from '../schedules/fm-log-snr.js';
import { ddimSteps } from './ddim.js';
import { integrate, type Sampler, type SamplerOptions } from './sampler.js';

/**
 * Deterministic DDIM (Song et al. 2021, eta = 0) on the FM path, behind the shared sampler
 * signature: from `v` at `(x, t)`, `x0_hat = x - t v` (clipped to `options.x0Clamp`, the data
 * range, when given), `e_hat = (x - (1 - t) x0_hat) / t`, and `x_next = (1 - t') x0_hat + t' e_hat`.
 * On the FM path this is DDIM on the variance-preserving path at the SNR-matched steps; without a
 * clip it equals Euler. One model call per step. Shapes: see {@link Sampler}.
 */
export const ddimSampler: Sampler = (
  model: VelocityModel,
  xT: Tensor,
  grid: readonly number[],
  options: SamplerOptions = {},
): Tensor => {
  const clamp = options.x0Clamp;
  if (clamp && !(clamp[0] < clamp[1]))
    throw new RangeError(`x0Clamp must be [lo, hi] with lo < hi, got [${clamp}]`);
  return integrate(model, xT, grid, options, (x, t, tNext, vAt) => {
    const v = vAt(x, t); //                                                               [B, ...]
    let x0 = tf.sub(x, tf.mul(v, t));
    let e = tf.add(x, tf.mul(v, 1 - t));
    if (clamp) {
      // Clip x0_hat to the data range and take the epsilon consistent with it (diffusers'
      // clip_sample); at t = 0 there is no noise left to re-derive.
      x0 = tf.clipByValue(x0, clamp[0], clamp[1]);
      if (t > 0) e = tf.div(tf.sub(x, tf.mul(x0, 1 - t)), t);
    }
    return tf.add(tf.mul(x0, 1 - tNext), tf.mul(e, tNext));
  });
};

/**
 * DDIM's customary grid: `steps` evenly spaced steps of the cosine DDPM schedule (`ddimSteps`) as
 * the FM times of the same log SNR, starting from pure noise at t = 1 and ending at t = 0.
 */
export function ddimGrid(steps: number): number[] {
  const schedule = createDdpmSchedule({ kind: 'cosine' });
  const grid = ddimSteps(steps, schedule.T).map((n) => fmTimeForLogSnr(schedule.logSnr(n)));
  grid[0] = 1;
  grid.push(0);
  return grid;
}
