import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { isClampedVelocityModel, withX0Clamp } from '../conversion/x0-clamp.js';
import type { VelocityModel } from '../model.js';
import { batchSize } from '../per-sample.js';

/**
 * A model that knows how to be guided itself: an ensemble guides each expert (so that each
 * expert's clamp comes after its guidance) and combines the guided experts (see combineExperts).
 */
export type GuidableModel = VelocityModel & {
  readonly guided: (scale: number, nullLabel: number) => VelocityModel;
};

function isGuidable(model: VelocityModel): model is GuidableModel {
  return typeof (model as Partial<GuidableModel>).guided === 'function';
}

/**
 * Classifier-free guidance (Ho & Salimans 2022): `v = v_uncond + w (v_cond - v_uncond)`, where
 * `v_uncond` is the model at `nullLabel`. Scale 1 is the conditional model (one call), 0 the
 * unconditional; otherwise both run in one `[2B, ...]` batch.
 *
 * Works for any `(x, time, labels)` model: a velocity model or an epsilon {@link Network}.
 * Guidance comes before any x0 clamp, whichever sampler runs the result (docs/method.md §11): a
 * clamped DDPM conversion (`ClampedVelocityModel`) is guided on its unclamped velocity and then
 * clamped once, so guiding epsilon and then converting equals converting and then guiding; an
 * ensemble (`GuidableModel`) guides each expert that way and combines the guided experts. A
 * sampler's own clip of x0 (DDIM's data range) sees the guided velocity.
 *
 * `x`: `[B, ...]`; time `[B]`; `labels`: `[B]` (required). Returns `[B, ...]`.
 */
export function withGuidance<M extends VelocityModel>(
  model: M,
  scale: number,
  nullLabel: number,
): M {
  if (!Number.isFinite(scale)) throw new RangeError(`guidance scale must be finite, got ${scale}`);
  if (isGuidable(model)) return model.guided(scale, nullLabel) as M;
  if (isClampedVelocityModel(model)) {
    if (scale === 1) return model;
    return withX0Clamp(withGuidance(model.unclamped, scale, nullLabel), model.x0Clamp) as never;
  }
  const guided: VelocityModel = (x: Tensor, t: Tensor1D, labels?: Tensor1D): Tensor => {
    if (labels === undefined) throw new RangeError('withGuidance needs class labels');
    const batch = batchSize(x, t, 'time');
    if (scale === 1) return model(x, t, labels);
    return tf.tidy(() => {
      const nulls = tf.fill([batch], nullLabel, labels.dtype) as Tensor1D;
      if (scale === 0) return model(x, t, nulls);
      const out = model(
        tf.concat([x, x], 0),
        tf.concat([t, t], 0) as Tensor1D,
        tf.concat([labels, nulls], 0) as Tensor1D,
      ); // [2B, ...]
      const [cond, uncond] = tf.split(out, 2, 0) as [Tensor, Tensor];
      return tf.add(uncond, tf.mul(tf.sub(cond, uncond), scale));
    });
  };
  return guided as M;
}
