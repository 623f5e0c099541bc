import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { FmEpsilonModel, Network, VelocityModel } from '../model.js';
import { batchSize, perSample } from '../per-sample.js';
import type { DdpmSchedule } from '../schedules/ddpm-schedule.js';
import { fmTimeForLogSnr, fmVpScale } from '../schedules/fm-log-snr.js';

/**
 * Epsilon from a velocity at the same FM state: from `x_t = (1 - t) x0 + t e` and `v = e - x0`,
 * `e = x_t + (1 - t) v` (docs/method.md §4). `x`: `[B, ...]`, `t`: `[B]`; returns `[B, ...]`.
 * Exact everywhere (no division), including t = 0 and t = 1.
 */
export function velocityToEps(model: VelocityModel): FmEpsilonModel {
  return (x: Tensor, t: Tensor1D, labels?: Tensor1D): Tensor =>
    tf.tidy(() => {
      batchSize(x, t, 'FM time t');
      const v = model(x, t, labels); // [B, ...]
      return tf.add(x, tf.mul(perSample(tf.sub(1, t) as Tensor1D, x.rank), v));
    });
}

/**
 * A velocity model as a DDPM epsilon {@link Network} over `schedule`, so native DDIM runs on any
 * expert: the inverse of SNR-mode `epsToVelocity`. At `(x_vp, tau = n)` it takes the FM time of the
 * same log SNR, `t = 1 / (1 + exp(logSnr(n) / 2))`, moves onto the FM path,
 * `x_t = x_vp sqrt((1 - t)^2 + t^2)`, and returns `x_t + (1 - t) v(x_t, t)`.
 *
 * `x`: `[B, ...]`; `tau`: `[B]` (possibly fractional) steps in [0, T - 1]; returns `[B, ...]`.
 */
export function velocityToEpsNetwork(model: VelocityModel, schedule: DdpmSchedule): Network {
  const eps = velocityToEps(model);
  return (x: Tensor, tau: Tensor1D, labels?: Tensor1D): Tensor => {
    const batch = batchSize(x, tau, 'DDPM step tau');
    const steps = tau.dataSync();
    const t = new Float64Array(batch);
    const scale = new Float64Array(batch);
    for (let b = 0; b < batch; b++) {
      t[b] = fmTimeForLogSnr(schedule.logSnr(steps[b]!));
      scale[b] = fmVpScale(t[b]!);
    }
    return tf.tidy(() =>
      eps(tf.mul(x, perSample(scale, x.rank)), tf.tensor1d(Float32Array.from(t)), labels),
    );
  };
}
