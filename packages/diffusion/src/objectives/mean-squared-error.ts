import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { perSample } from '../per-sample.js';

/**
 * `mean((pred - target)^2)` over every element: the loss of every objective (docs/method.md §3).
 * With `weight` (`[B]`), sample b's squared errors are scaled by `weight[b]` before the mean
 * (the loss weightings of docs/method.md §11).
 */
export function meanSquaredError(pred: Tensor, target: Tensor, weight?: Tensor1D): Scalar {
  if (pred.shape.join() !== target.shape.join()) {
    throw new RangeError(
      `prediction [${pred.shape.join(', ')}] and target [${target.shape.join(', ')}] differ in shape`,
    );
  }
  if (weight && (weight.rank !== 1 || weight.shape[0] !== pred.shape[0])) {
    throw new RangeError(
      `loss weights [${weight.shape.join(', ')}] do not match a batch of ${pred.shape[0]}`,
    );
  }
  return tf.tidy(() => {
    const sq = tf.squaredDifference(pred, target);
    return tf.mean(weight ? tf.mul(sq, perSample(weight, sq.rank)) : sq);
  });
}
