import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';
import { perSample } from '../per-sample.js';

/**
 * The x0 clamp of the DDPM -> velocity conversion (docs/method.md §4): `x0_hat` is clamped to
 * `range` before `v_hat = eps_hat - x0_hat` is formed, where `x0_hat = (x_t - t eps_hat) /
 * max(1 - t, alphaMin)`.
 */
export type X0Clamp = { range: [number, number]; alphaMin: number };

/**
 * A velocity model whose output is `clampX0(unclamped(x, t), x, t, x0Clamp)`. Classifier-free
 * guidance (`withGuidance`) combines the conditional and unconditional outputs of `unclamped` and
 * clamps once afterwards (docs/method.md §11): the clamp is not linear, so clamping each
 * prediction first would let the guided x0 leave the range.
 */
export type ClampedVelocityModel = VelocityModel & {
  readonly unclamped: VelocityModel;
  readonly x0Clamp: X0Clamp;
};

/**
 * The one place the conversion's x0 clamp is applied. Given the unclamped converted velocity
 * `v = eps_hat - x0_hat` at `(x_t, t)`, recovers `eps_hat = (a v + x_t) / (a + t)` and
 * `x0_hat = eps_hat - v` (`a = max(1 - t, alphaMin)`; exact inverses of the conversion's step 5)
 * and returns `eps_hat - clamp(x0_hat)`. Where no pixel leaves the range it returns `v` (up to
 * float error). Both maps are affine in `v`, so a guided `v` gives the guided `eps_hat` and
 * `x0_hat`: guidance applied to epsilon, before the clamp.
 *
 * `v`, `x`: `[B, ...]`; `t`: `[B]`; returns `[B, ...]`.
 */
export function clampX0(v: Tensor, x: Tensor, t: Tensor1D, clamp: X0Clamp): Tensor {
  return tf.tidy(() => {
    const tb = perSample(t, x.rank);
    const a = tf.maximum(tf.sub(1, tb), clamp.alphaMin);
    const eps = tf.div(tf.add(tf.mul(a, v), x), tf.add(a, tb)); //                  [B, ...]
    const x0 = tf.sub(eps, v); //                                                    [B, ...]
    return tf.sub(eps, tf.clipByValue(x0, clamp.range[0], clamp.range[1]));
  });
}

/**
 * `unclamped` followed by {@link clampX0}, as a {@link ClampedVelocityModel}. `direct`, when
 * given, is the same map computed without the round trip through `v` (the conversion's own,
 * bit-identical to what it always returned); it is what an unguided call runs.
 */
export function withX0Clamp(
  unclamped: VelocityModel,
  x0Clamp: X0Clamp,
  direct?: VelocityModel,
): ClampedVelocityModel {
  const model: VelocityModel =
    direct ??
    ((x: Tensor, t: Tensor1D, labels?: Tensor1D): Tensor =>
      tf.tidy(() => clampX0(unclamped(x, t, labels), x, t, x0Clamp)));
  return Object.assign(model, { unclamped, x0Clamp });
}

/** Whether `model` clamps its x0 estimate after an unclamped prediction (see {@link withX0Clamp}). */
export function isClampedVelocityModel(model: VelocityModel): model is ClampedVelocityModel {
  const m = model as Partial<ClampedVelocityModel>;
  return typeof m.unclamped === 'function' && m.x0Clamp !== undefined;
}
