/**
 * Kernel gradients the trainers' losses need beyond those nn/gradients.ts registers (the Node
 * bundle of tfjs-core registers none): `SquaredDifference`, which the diffusion package's
 * `meanSquaredError` (both objectives' loss) uses. Registered on import, only where no gradient
 * is registered yet, as nn/gradients.ts does.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Sum a broadcast gradient back to an input's shape. */
function reduceTo(dy: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, dy.shape);
  return tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, shape);
}

if (tf.getGradient(tf.SquaredDifference) == null) {
  tf.registerGradient({
    kernelName: tf.SquaredDifference,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const d = tf.mul(dy as tf.Tensor, tf.mul(tf.sub(a, b), 2)); // d/da (a - b)^2 = 2 (a - b)
      return { a: () => reduceTo(d, a.shape), b: () => reduceTo(tf.neg(d), b.shape) };
    },
  });
}
