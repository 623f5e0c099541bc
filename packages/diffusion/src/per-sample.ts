import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Per-sample scalars shaped to broadcast against a batch of rank `rank`: `[B]` becomes
 * `[B, 1, ..., 1]`. Plain numbers are computed in float64 by the caller and stored as float32.
 */
export function perSample(values: Tensor1D | ArrayLike<number>, rank: number): Tensor {
  const v = values instanceof tf.Tensor ? values : tf.tensor1d(Float32Array.from(values));
  const shape = [v.shape[0], ...new Array<number>(Math.max(rank - 1, 0)).fill(1)];
  return tf.reshape(v, shape);
}

/** The batch size of `x` (its first dimension), checked against a per-sample `[B]` tensor. */
export function batchSize(x: Tensor, perSampleValues: Tensor1D, what: string): number {
  const batch = x.shape[0];
  if (batch === undefined || perSampleValues.rank !== 1 || perSampleValues.shape[0] !== batch) {
    throw new RangeError(
      `${what} must be a [B] tensor matching x of shape [${x.shape.join(', ')}], got [${perSampleValues.shape.join(', ')}]`,
    );
  }
  return batch;
}
