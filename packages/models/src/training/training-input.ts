/**
 * What callers hand a trainer: a batch as a tensor or as host data with its shape, and integer
 * labels as a tensor or an array.
 */
import * as tf from '@tensorflow/tfjs-core';

/** A batch `[B, ...]`: a float32 tensor (left to the caller) or row-major data and its shape. */
export type BatchInput = tf.Tensor | { data: Float32Array; shape: readonly number[] };

/** `[B]` integer labels (class labels or cluster ids). */
export type LabelInput = tf.Tensor | Int32Array | readonly number[];

/** A new tensor holding `x0`, checked against the network's per-sample shape. */
export function batchTensor(
  x0: BatchInput,
  inputShape: readonly number[],
  what: string,
): tf.Tensor {
  const shape = x0 instanceof tf.Tensor ? x0.shape : [...x0.shape];
  if (
    shape.length !== inputShape.length + 1 ||
    shape.slice(1).some((d, i) => d !== inputShape[i])
  ) {
    throw new RangeError(
      `${what} must be [B, ${inputShape.join(', ')}], got [${shape.join(', ')}]`,
    );
  }
  if (!((shape[0] as number) > 0)) throw new RangeError(`${what} is an empty batch`);
  if (x0 instanceof tf.Tensor) {
    if (x0.dtype !== 'float32') throw new TypeError(`${what} must be float32, got ${x0.dtype}`);
    return tf.clone(x0);
  }
  return tf.tensor(x0.data, shape, 'float32');
}

/** A `[rows]` int32 tensor of labels, each an integer in `[0, limit)`. */
export function labelTensor(
  labels: LabelInput,
  rows: number,
  what: string,
  limit: number,
): tf.Tensor1D {
  const values =
    labels instanceof tf.Tensor
      ? labels.rank === 1
        ? Array.from(labels.dataSync())
        : null
      : Array.from(labels);
  if (!values || values.length !== rows) {
    const shape = labels instanceof tf.Tensor ? labels.shape : [labels.length];
    throw new RangeError(`${what} must be [${rows}], got [${shape.join(', ')}]`);
  }
  const bad = values.findIndex((v) => !(Number.isInteger(v) && v >= 0 && v < limit));
  if (bad >= 0) {
    throw new RangeError(
      `${what}[${bad}] is ${values[bad]}, expected an integer in [0, ${limit - 1}]`,
    );
  }
  return tf.tensor1d(Int32Array.from(values), 'int32');
}
