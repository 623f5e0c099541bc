import { matMul } from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';

/** Feature vectors of N images: `[N, dim]` row-major. */
export interface Features {
  data: Float32Array;
  count: number;
  dim: number;
}

/**
 * Squared Euclidean distances between every row of `a` and every row of `b`: `[a.count, b.count]`,
 * as `|x|^2 + |y|^2 - 2 x.y` with the products on the TensorFlow.js backend (float32; clamped at
 * zero, since rounding can make a distance slightly negative).
 */
export function squaredDistances(a: Features, b: Features): Float32Array {
  if (a.dim !== b.dim) throw new RangeError(`feature dims differ: ${a.dim} vs ${b.dim}`);
  const out = tf.tidy(() => {
    const x = tf.tensor2d(a.data.subarray(0, a.count * a.dim), [a.count, a.dim]);
    const y = tf.tensor2d(b.data.subarray(0, b.count * b.dim), [b.count, b.dim]);
    const nx = tf.sum(tf.square(x), 1, true); //                    [A, 1]
    const ny = tf.reshape(tf.sum(tf.square(y), 1), [1, b.count]); // [1, B]
    const dot = matMul(x, y, false, true); //                        [A, B]
    return tf.relu(tf.sub(tf.add(nx, ny), tf.mul(dot, 2)));
  });
  const data = out.dataSync() as Float32Array;
  out.dispose();
  return data;
}
