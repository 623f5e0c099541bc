import type { Scalar, Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';

/** `mean((pred - target)^2)` over every element: the loss of both objectives (method.md §3). */
export function meanSquaredError(pred: Tensor, target: Tensor): Scalar {
  if (pred.shape.join() !== target.shape.join()) {
    throw new RangeError(
      `prediction [${pred.shape.join(', ')}] and target [${target.shape.join(', ')}] differ in shape`,
    );
  }
  return tf.tidy(() => tf.mean(tf.squaredDifference(pred, target)));
}
