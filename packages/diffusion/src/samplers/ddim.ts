import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertInteger } from '../config-error.js';
import type { Network } from '../model.js';
import type { DdpmSchedule } from '../schedules/ddpm-schedule.js';
import type { SamplerOptions } from './sampler.js';

/**
 * `count` evenly spaced integer DDPM steps, descending from `T - 1` to 0:
 * `round((T - 1) (1 - i / (count - 1)))` (a single step is `[T - 1]`).
 */
export function ddimSteps(count: number, T: number): number[] {
  assertInteger(count, 1, T, 'DDIM step count');
  if (count === 1) return [T - 1];
  return Array.from({ length: count }, (_, i) => Math.round((T - 1) * (1 - i / (count - 1))));
}

export type DdimOptions = SamplerOptions & {
  /**
   * Clip each x0 estimate to this range (the data's, e.g. [-1, 1] for images). Without it, the
   * first steps of a cosine schedule (abar_{T-1} ~ 1e-6) divide the network's error by
   * sqrt(abar) and throw samples far out of distribution.
   */
  x0Clamp?: [number, number];
};

/**
 * Deterministic DDIM (Song et al. 2021, eq. 12 with eta = 0; docs/method.md §3), the native sampler of
 * an epsilon network. For consecutive steps n -> m of `steps` (after the last step, m is "clean",
 * abar = 1):
 * `x0_hat = (x_n - sqrt(1 - abar_n) eps) / sqrt(abar_n)`,
 * `x_m = sqrt(abar_m) x0_hat + sqrt(1 - abar_m) eps`.
 *
 * Runs on any expert via `velocityToEpsNetwork(expert, schedule)` (on the FM path DDIM is exactly
 * Euler on the matching times).
 *
 * @param xT - `[B, ...]` noise at step `steps[0]`; @param steps - strictly decreasing integer
 *   steps in [0, T - 1] (see {@link ddimSteps}). Returns `[B, ...]` x0 samples.
 */
export function ddim(
  network: Network,
  schedule: DdpmSchedule,
  xT: Tensor,
  steps: readonly number[],
  options: DdimOptions = {},
): Tensor {
  if (steps.length < 1) throw new RangeError('DDIM needs at least one step');
  steps.forEach((n, i) => {
    assertInteger(n, 0, schedule.T - 1, `DDIM step ${i}`);
    if (i > 0 && !(n < steps[i - 1]!)) throw new RangeError('DDIM steps must strictly decrease');
  });
  const clamp = options.x0Clamp;
  if (clamp && !(clamp[0] < clamp[1]))
    throw new RangeError(`x0Clamp must be [lo, hi] with lo < hi, got [${clamp}]`);
  const batch = xT.shape[0]!;
  let x = xT;
  for (let i = 0; i < steps.length; i++) {
    const n = steps[i]!;
    const abar = schedule.alphasCumprod[n]!;
    const abarNext = i + 1 < steps.length ? schedule.alphasCumprod[steps[i + 1]!]! : 1;
    const current = x;
    const next = tf.tidy(() => {
      const eps = network(current, tf.fill([batch], n) as Tensor1D, options.labels); // [B, ...]
      let x0 = tf.div(tf.sub(current, tf.mul(eps, Math.sqrt(1 - abar))), Math.sqrt(abar));
      let e = eps;
      if (clamp) {
        // Clip x0_hat to the data range and take the epsilon consistent with it (diffusers'
        // clip_sample): near n = T - 1, abar ~ 0 and 1/sqrt(abar) amplifies any error in eps.
        x0 = tf.clipByValue(x0, clamp[0], clamp[1]);
        e = tf.div(tf.sub(current, tf.mul(x0, Math.sqrt(abar))), Math.sqrt(1 - abar));
      }
      return tf.add(tf.mul(x0, Math.sqrt(abarNext)), tf.mul(e, Math.sqrt(1 - abarNext)));
    });
    if (current !== xT) current.dispose();
    x = next;
    options.onStep?.(i, x);
  }
  return x;
}
