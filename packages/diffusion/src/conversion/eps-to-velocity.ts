import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertInRange, assertKnownKeys, assertOneOf, ConfigError } from '../config-error.js';
import type { Network, VelocityModel } from '../model.js';
import { batchSize, perSample } from '../per-sample.js';
import type { DdpmSchedule } from '../schedules/ddpm-schedule.js';
import { fmLogSnr, fmVpScale } from '../schedules/fm-log-snr.js';
import { type ClampedVelocityModel, withX0Clamp } from './x0-clamp.js';

/**
 * Options of the DDPM -> velocity conversion (docs/method.md §4), serialisable and recorded in the
 * ensemble manifest.
 *
 * - `mode`: `'snr'` matches log SNRs and rescales the input onto the variance-preserving path;
 *   `'naive'` feeds `x_t` unchanged at step `round((T - 1) t)` (= `round(999 t)` for T = 1000).
 * - `alphaMin` (default 0.01): floor of `1 - t` in `x0_hat = (x_t - t eps_hat) / (1 - t)`.
 * - `x0Clamp` (default [-20, 20]): range `x0_hat` is clamped to before forming `v_hat`.
 */
export type EpsToVelocityOptions = {
  mode: 'snr' | 'naive';
  alphaMin?: number;
  x0Clamp?: [number, number];
};

/** The valid `mode`s of {@link EpsToVelocityOptions}. */
export const CONVERSION_MODES = ['naive', 'snr'] as const;

/** Checks conversion options and fills their defaults (alphaMin 0.01, x0Clamp [-20, 20]). */
export function resolveEpsToVelocityOptions(
  options: EpsToVelocityOptions,
): Required<EpsToVelocityOptions> {
  assertKnownKeys(options, ['mode', 'alphaMin', 'x0Clamp'], 'eps-to-velocity option');
  const mode: unknown = options.mode;
  assertOneOf(mode, CONVERSION_MODES, 'conversion mode');
  const alphaMin = assertInRange(options.alphaMin ?? 0.01, 1e-6, 1, 'conversion alphaMin');
  const clamp = options.x0Clamp ?? [-20, 20];
  if (!Array.isArray(clamp) || clamp.length !== 2 || !(clamp[0] < clamp[1])) {
    throw new ConfigError(`conversion x0Clamp must be [min, max] with min < max, got ${clamp}`);
  }
  return { mode, alphaMin, x0Clamp: [clamp[0], clamp[1]] };
}

/**
 * A DDPM epsilon network as a {@link VelocityModel} (docs/method.md §4). For each sample, at FM state
 * `(x_t, t)`:
 *
 * 1. `lambda = 2 log((1 - t) / t)`; 2. `n* = schedule.stepForLogSnr(lambda)` (fractional);
 * 3. `x_vp = x_t / sqrt((1 - t)^2 + t^2)`; 4. `eps_hat = eps(x_vp, n*)`;
 * 5. `x0_hat = clamp((x_t - t eps_hat) / max(1 - t, alphaMin))`, `v_hat = eps_hat - x0_hat`.
 *
 * In `'naive'` mode steps 1-3 become `n = round((T - 1) t)`, `x_vp = x_t`.
 *
 * `x`: `[B, ...]`; `t`: `[B]` (per-sample times allowed); returns `[B, ...]`. The `[B]` times are
 * read back to the CPU (the step search runs in float64 there); `tau` is passed as float32.
 * Since `v_hat` is affine in `eps_hat` before the clamp, the conversion commutes with router
 * weighting and with classifier-free guidance there; the result is a {@link ClampedVelocityModel},
 * so `withGuidance` guides the unclamped velocity and clamps once afterwards (docs/method.md §11).
 * Unguided calls run the conversion as written above.
 */
export function epsToVelocity(
  network: Network,
  schedule: DdpmSchedule,
  options: EpsToVelocityOptions = { mode: 'snr' },
): ClampedVelocityModel {
  const { mode, alphaMin, x0Clamp } = resolveEpsToVelocityOptions(options);
  /** `[B, ...]` eps_hat and the unclamped `x0_hat` at `(x_t, t)`. */
  const parts = (x: Tensor, t: Tensor1D, labels?: Tensor1D): { eps: Tensor; x0: Tensor } => {
    const batch = batchSize(x, t, 'FM time t');
    const times = t.dataSync();
    const tau = new Float32Array(batch);
    const inputScale = new Float64Array(batch);
    const invOneMinusT = new Float64Array(batch);
    for (let b = 0; b < batch; b++) {
      const tb = times[b]!;
      if (!(tb >= 0 && tb <= 1)) throw new RangeError(`FM time must be in [0, 1], got ${tb}`);
      if (mode === 'snr') {
        tau[b] = schedule.stepForLogSnr(fmLogSnr(tb));
        inputScale[b] = 1 / fmVpScale(tb);
      } else {
        tau[b] = Math.min(Math.round((schedule.T - 1) * tb), schedule.T - 1);
        inputScale[b] = 1;
      }
      invOneMinusT[b] = 1 / Math.max(1 - tb, alphaMin);
    }
    const xIn = mode === 'snr' ? tf.mul(x, perSample(inputScale, x.rank)) : x;
    const eps = network(xIn, tf.tensor1d(tau), labels); // [B, ...]
    const x0 = tf.mul(
      tf.sub(x, tf.mul(perSample(t, x.rank), eps)),
      perSample(invOneMinusT, x.rank),
    );
    return { eps, x0 };
  };
  const unclamped: VelocityModel = (x, t, labels) =>
    tf.tidy(() => {
      const { eps, x0 } = parts(x, t, labels);
      return tf.sub(eps, x0);
    });
  const direct: VelocityModel = (x, t, labels) =>
    tf.tidy(() => {
      const { eps, x0 } = parts(x, t, labels);
      return tf.sub(eps, tf.clipByValue(x0, x0Clamp[0], x0Clamp[1]));
    });
  return withX0Clamp(unclamped, { range: x0Clamp, alphaMin }, direct);
}
