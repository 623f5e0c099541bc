import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { resolveEpsToVelocityOptions } from '../conversion/eps-to-velocity.js';
import type { Network, VelocityModel } from '../model.js';
import { batchSize, perSample } from '../per-sample.js';
import type { DdpmSchedule } from '../schedules/ddpm-schedule.js';
import { fmLogSnr, fmVpScale } from '../schedules/fm-log-snr.js';
import type { DdpmPrediction } from './ddpm-prediction.js';

/**
 * A v-prediction network as a {@link VelocityModel} (docs/method.md §10). At FM state `(x_t, t)`:
 * the step `n*` and input `x_vp = x_t / sqrt((1 - t)^2 + t^2)` of the SNR-matched conversion
 * (docs/method.md §4), `a = sqrt(abar(n*))`, `s = sqrt(1 - abar(n*))`, `v_hat = net(x_vp, n*)`,
 * `x0_hat = a x_vp - s v_hat`, `e_hat = s x_vp + a v_hat`, and `v_FM = e_hat - x0_hat`. Bounded
 * in the network's output: no division by `1 - t`, so `alphaMin` and `x0Clamp` do not apply.
 * Where the FM state holds less signal than the schedule's last step (linear: t > 0.9937),
 * `x0_hat` is extrapolated to first order in the signal level (see below), so the ideal
 * v-predictor converts to the ideal velocity at every t, t = 1 included.
 * `'naive'` mode feeds `x_t` unchanged at `round((T - 1) t)`.
 *
 * `x`: `[B, ...]`; `t`: `[B]`; returns `[B, ...]`.
 */
export function vToVelocity(
  network: Network,
  schedule: DdpmSchedule,
  options: { mode: 'snr' | 'naive' },
): VelocityModel {
  const { mode } = resolveEpsToVelocityOptions({ mode: options.mode });
  const last = schedule.T - 1;
  const aLast = Math.sqrt(schedule.alphaBar(last));
  return (x: Tensor, t: Tensor1D, labels?: Tensor1D): Tensor => {
    const batch = batchSize(x, t, 'FM time t');
    const times = t.dataSync();
    const tau = new Float32Array(batch);
    const inputScale = new Float64Array(batch);
    const sMinusA = new Float64Array(batch);
    const aPlusS = new Float64Array(batch);
    // Below the schedule's least signal (t near 1), the ratio a_FM / a_{T-1} of docs/method.md §10.
    const ratio = new Float64Array(batch);
    const beyond = new Float64Array(batch); // 1 where the FM state is below that signal
    for (let b = 0; b < batch; b++) {
      const tb = times[b]!;
      if (!(tb >= 0 && tb <= 1)) throw new RangeError(`FM time must be in [0, 1], got ${tb}`);
      const n =
        mode === 'snr'
          ? schedule.stepForLogSnr(fmLogSnr(tb))
          : Math.min(Math.round((schedule.T - 1) * tb), schedule.T - 1);
      tau[b] = n;
      inputScale[b] = mode === 'snr' ? 1 / fmVpScale(tb) : 1;
      const abar = schedule.alphaBar(n);
      const a = Math.sqrt(abar);
      const s = Math.sqrt(1 - abar);
      sMinusA[b] = s - a;
      aPlusS[b] = a + s;
      const aFm = (1 - tb) / fmVpScale(tb);
      if (mode === 'snr' && n === last && aFm < aLast) {
        ratio[b] = aFm / aLast;
        beyond[b] = 1;
      }
    }
    return tf.tidy(() => {
      const y = tf.mul(x, perSample(inputScale, x.rank)); //                         [B, ...]
      const v = network(y, tf.tensor1d(tau), labels); //                              [B, ...]
      // e_hat - x0_hat = (s - a) x_vp + (a + s) v_hat
      const out = tf.add(
        tf.mul(y, perSample(sMinusA, x.rank)),
        tf.mul(v, perSample(aPlusS, x.rank)),
      );
      if (!beyond.includes(1)) return out;
      // The FM state has less signal than step T - 1 (t > t(T - 1); linear: t > 0.9937). E[x0 | x]
      // is affine in the signal level to first order, with limit E[x0] at none: extrapolate
      // x0_hat from a_{T-1} to a_FM, with E[x0] read as the network's x0_hat at the input 0.
      const sLast = Math.sqrt(1 - aLast * aLast);
      const x0Last = tf.sub(tf.mul(y, aLast), tf.mul(v, sLast));
      const zero = tf.zerosLike(y);
      const mean = tf.neg(tf.mul(network(zero, tf.tensor1d(tau), labels), sLast));
      const r = perSample(ratio, x.rank);
      const x0 = tf.add(mean, tf.mul(r, tf.sub(x0Last, mean)));
      const tb = perSample(t, x.rank);
      // e_hat from the FM state itself: x_t = (1 - t) x0 + t e (t > 0.99 here).
      const e = tf.div(tf.sub(x, tf.mul(tf.sub(1, tb), x0)), tb);
      const use = perSample(beyond, x.rank);
      return tf.add(tf.mul(out, tf.sub(1, use)), tf.mul(tf.sub(e, x0), use));
    });
  };
}

/**
 * v-prediction (Salimans & Ho 2022; docs/method.md §10): target `v = a e - s x0` on the DDPM
 * schedule, converted by {@link vToVelocity}.
 */
export const vPrediction: DdpmPrediction = {
  weighted: false,
  target: (x0, noise, a, s) => tf.sub(tf.mul(a, noise), tf.mul(s, x0)),
  toVelocity: (network, schedule, conversion) =>
    vToVelocity(network, schedule, { mode: conversion.mode }),
};
