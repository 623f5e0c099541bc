/**
 * Class-conditional routing by the product rule, p(k | x_t, c) ∝ p(k | x_t) p(c | k), in log space:
 * softmax(logits + log p(c | k)). Multiplying probabilities instead underflows: a router sure of
 * one cluster gives the others float32 probabilities that round to 0, and when those are the only
 * clusters holding the class the row's weights all vanish (the sample gets no expert at all).
 * In log space the clusters that hold the class keep their relative router weights however small,
 * and a cluster with p(c | k) = 0 gets exactly 0.
 *
 * The rule is exact at t = 1 (x_t says nothing of the class); docs/method.md says where it
 * double-counts the class once x_t shows it.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Router probabilities `[rows, K]` from its logits and, per row, p(c | k) over the K clusters
 * (`null`: the row is unconditional, or no cluster holds its class; its router weights stay as
 * they are). `priors[r % priors.length]` is row r's (a batch stacked [cond; uncond] repeats them).
 */
export function classConditionalProbabilities(
  logits: tf.Tensor2D,
  priors: readonly (readonly number[] | null)[] | null,
): tf.Tensor2D {
  return tf.tidy(() => {
    if (!priors || priors.length === 0) return tf.softmax(logits) as tf.Tensor2D;
    const [rows, K] = logits.shape;
    const logPrior = new Float32Array(rows * K);
    for (let r = 0; r < rows; r++) {
      const prior = priors[r % priors.length];
      if (!prior) continue; // log 1 = 0: the router's own weights
      if (prior.length !== K)
        throw new RangeError(`a class prior over ${prior.length} clusters for ${K} experts`);
      for (let k = 0; k < K; k++)
        logPrior[r * K + k] = prior[k]! > 0 ? Math.log(prior[k]!) : Number.NEGATIVE_INFINITY;
    }
    return tf.softmax(tf.add(logits, tf.tensor2d(logPrior, [rows, K]))) as tf.Tensor2D;
  });
}
