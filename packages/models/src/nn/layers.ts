/**
 * Parameter-free layers shared by the DiT and the router, with hand-written gradients.
 *
 * Why hand-written: each tfjs kernel costs a call into wasm plus JS bookkeeping, and every tensor
 * a kernel gradient saves is copied on wasm (its `Identity` kernel copies). Fusing LayerNorm with
 * its AdaLN modulation, and the gated residual, into single ops with explicit gradients halves the
 * kernels and the saved copies of a block. GELU avoids `tanh`, 30x slower than `sigmoid` on wasm.
 */
import * as tf from '@tensorflow/tfjs-core';
import { reduceTo } from './gradients.js';

type GradFn = (...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  value: tf.Tensor;
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
};

/** LayerNorm epsilon of DiT / PixArt (`nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)`). */
export const LN_EPS = 1e-6;

/** `xhat = (x - mean) / sqrt(var + eps)` over the last axis, and the `rstd` `[..., 1]`. */
function normalise(x: tf.Tensor): [tf.Tensor, tf.Tensor] {
  const xc = tf.sub(x, tf.mean(x, -1, true)); //                     [..., D]
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), LN_EPS)); // [..., 1]
  return [tf.mul(xc, rstd), rstd];
}

/** LayerNorm backward: `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))` for `g = dL/dxhat`. */
function normaliseGrad(g: tf.Tensor, xhat: tf.Tensor, rstd: tf.Tensor): tf.Tensor {
  const m1 = tf.mean(g, -1, true); //                                 [..., 1]
  const m2 = tf.mean(tf.mul(g, xhat), -1, true); //                   [..., 1]
  return tf.mul(tf.sub(tf.sub(g, m1), tf.mul(xhat, m2)), rstd); //    [..., D]
}

/** LayerNorm over the last axis without affine parameters. */
export const layerNorm = tf.customGrad(((...args) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const [xhat, rstd] = normalise(x);
  save([xhat, rstd]);
  return {
    value: xhat,
    gradFunc: (dy, [sxhat, srstd]) => normaliseGrad(dy, sxhat!, srstd!),
  };
}) as GradFn);

/**
 * AdaLN: `LN(x) * (1 + scale) + shift` (PixArt's `t2i_modulate(norm(x), shift, scale)`), one op.
 * @param x `[B, T, D]` @param shift `[B, 1, D]` @param scale `[B, 1, D]` @returns `[B, T, D]`
 */
export const modulatedLayerNorm = tf.customGrad(((...args) => {
  const [x, shift, scale, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  const [xhat, rstd] = normalise(x); //                               [B, T, D], [B, T, 1]
  const gain = tf.add(scale, 1); //                                   [B, 1, D]
  save([xhat, rstd, gain]);
  return {
    value: tf.add(tf.mul(xhat, gain), shift), //                      [B, T, D]
    gradFunc: (dy, [sxhat, srstd, sgain]) => {
      const xh = sxhat!;
      const dx = normaliseGrad(tf.mul(dy, sgain!), xh, srstd!); //    [B, T, D]
      const dshift = reduceTo(dy, shift.shape); //                    [B, 1, D]
      const dscale = reduceTo(tf.mul(dy, xh), scale.shape); //        [B, 1, D]
      return [dx, dshift, dscale];
    },
  };
}) as GradFn);

/**
 * Gated residual `x + gate * h`, one op.
 * @param x `[B, T, D]` @param gate `[B, 1, D]` @param h `[B, T, D]` @returns `[B, T, D]`
 */
export const gatedResidual = tf.customGrad(((...args) => {
  const [x, gate, h, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([gate, h]);
  return {
    value: tf.add(x, tf.mul(gate, h)),
    gradFunc: (dy, [sgate, sh]) => [
      tf.reshape(dy, x.shape), //                                      [B, T, D]
      reduceTo(tf.mul(dy, sh!), gate.shape), //                        [B, 1, D]
      tf.mul(dy, sgate!), //                                           [B, T, D]
    ],
  };
}) as GradFn);

const GELU_C = 2 * Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * GELU, tanh approximation (`nn.GELU(approximate="tanh")`), written with the identity
 * `0.5 (1 + tanh(z)) = sigmoid(2 z)`: `y = x * sigmoid(c (x + a x^3))`, c = 2 sqrt(2 / pi).
 * Gradient: `s + x s (1 - s) c (1 + 3 a x^2)` with `s` the sigmoid.
 */
export const geluTanh = tf.customGrad(((...args) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const u = tf.mul(x, tf.add(tf.mul(tf.square(x), GELU_A * GELU_C), GELU_C)); // c (x + a x^3)
  const s = tf.sigmoid(u);
  save([x, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy, [sx, ss]) => {
      const xs = sx!;
      const sg = ss!;
      const xdu = tf.mul(tf.add(tf.mul(tf.square(xs), 3 * GELU_A * GELU_C), GELU_C), xs); // x u'
      const inner = tf.add(tf.mul(tf.mul(tf.sub(1, sg), xdu), sg), sg); // s + s (1 - s) x u'
      return tf.mul(dy, inner);
    },
  };
}) as GradFn);

/** SiLU: `x * sigmoid(x)`. Used on `[B, D]` embeddings only, so tfjs's autodiff is fine. */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}
