import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './config-error.js';
import type { VelocityModel } from './model.js';
import { batchSize } from './per-sample.js';

/**
 * Second moments of a data set, the whole of what a linear denoiser knows about it: the mean and
 * the covariance, either in its eigenbasis (`basis` row i is the unit eigenvector of
 * `variances[i]`; missing directions have variance 0) or per element (`basis` null: a diagonal
 * covariance, one variance per element).
 */
export type SecondMoments = {
  /** `[D]` mean. */
  mean: Float32Array;
  /** `[c, D]` row-major orthonormal eigenvectors, or null for a diagonal covariance. */
  basis: Float32Array | null;
  /** `[c]` eigenvalues (full form) or `[D]` per-element variances (diagonal form), all >= 0. */
  variances: Float64Array;
};

/**
 * The linear MMSE ("Wiener") denoiser of data with mean mu and covariance `U diag(lambda) U^T` on
 * the flow-matching path `x_t = (1 - t) x0 + t e`, `e ~ N(0, I)` (docs/method.md §12): the best
 * estimate of x0 that is affine in x_t,
 *
 *   `x0_hat = mu + U diag(g) U^T (x_t - (1 - t) mu)`, `g_i = (1 - t) lambda_i / ((1 - t)^2 lambda_i + t^2)`,
 *
 * with expected squared error `sum_i lambda_i t^2 / ((1 - t)^2 lambda_i + t^2)` whatever the data's
 * distribution (it depends on its second moments only; for Gaussian data it is the MMSE itself).
 * In the diagonal form U = I and lambda are the per-element variances (a per-pixel Wiener filter).
 *
 * Inputs are `[B, ...]` with D elements per sample; results are float32 tensors like `x`.
 */
export class LinearMmseDenoiser {
  /** Dimension D. */
  readonly dim: number;
  private readonly mean: Tensor;
  /** `[c, D]`, or null for the diagonal form. */
  private readonly basis: Tensor | null;

  constructor(readonly moments: SecondMoments) {
    const { mean, basis, variances } = moments;
    this.dim = mean.length;
    const rows = basis ? basis.length / this.dim : this.dim;
    if (this.dim === 0 || !Number.isInteger(rows) || variances.length !== rows) {
      throw new ConfigError(
        `second moments of ${this.dim} elements need ${basis ? 'a [c, D] basis and c' : 'D'} variances, got ${variances.length}`,
      );
    }
    if (
      variances.some((v) => !(v >= 0 && Number.isFinite(v))) ||
      mean.some((m) => !Number.isFinite(m))
    ) {
      throw new ConfigError('the mean and variances must be finite, the variances >= 0');
    }
    this.mean = tf.keep(tf.tensor2d(mean, [1, this.dim]));
    this.basis = basis ? tf.keep(tf.tensor2d(basis, [rows, this.dim])) : null;
  }

  /** Per-direction gains `g_i` at FM time t. */
  private gains(t: number): Float32Array {
    const a = 1 - t;
    return Float32Array.from(this.moments.variances, (v) => (a * v) / (a * a * v + t * t || 1));
  }

  /**
   * The estimate of x0 at one FM time `t` in [0, 1] for every sample of `x` (`[B, ...]`).
   * At t = 1 it is the mean; at t = 0, x itself in every direction of nonzero variance.
   */
  x0(x: Tensor, t: number): Tensor {
    if (!(t >= 0 && t <= 1)) throw new RangeError(`FM time must be in [0, 1], got ${t}`);
    return tf.tidy(() => {
      const flat = tf.reshape(x, [-1, this.dim]); //                             [B, D]
      const centred = tf.sub(flat, tf.mul(this.mean, 1 - t)); //                   [B, D]
      const g = tf.tensor1d(this.gains(t));
      const shrunk = this.basis
        ? tf.matMul(tf.mul(tf.matMul(centred, this.basis, false, true), g), this.basis) // [B, D]
        : tf.mul(centred, g); //                                                 [B, D]
      return tf.reshape(tf.add(this.mean, shrunk), x.shape);
    });
  }

  /** Expected squared error of {@link x0} at FM time t, per element (the sum divided by D). */
  expectedError(t: number): number {
    const a = 1 - t;
    let sum = 0;
    for (const v of this.moments.variances) sum += t > 0 ? (v * t * t) / (a * a * v + t * t) : 0;
    return sum / this.dim;
  }

  /**
   * The denoiser as a {@link VelocityModel}: `v = (x_t - x0_hat) / t`, so that `x_t - t v` is
   * `x0_hat` (at t = 0, where any v satisfies that, `-x0_hat`). Per-sample times allowed; labels
   * are ignored.
   */
  velocity(): VelocityModel {
    return (x: Tensor, t: Tensor1D): Tensor => {
      const batch = batchSize(x, t, 'FM time t');
      const times = t.dataSync();
      return tf.tidy(() => {
        const rows = Array.from({ length: batch }, (_, b) => {
          const xb = tf.slice(x, [b], [1]); //                                   [1, ...]
          const x0 = this.x0(xb, times[b]!);
          return times[b]! > 0 ? tf.div(tf.sub(xb, x0), times[b]!) : tf.neg(x0);
        });
        return tf.concat(rows, 0); //                                            [B, ...]
      });
    };
  }

  dispose(): void {
    this.mean.dispose();
    this.basis?.dispose();
  }
}
