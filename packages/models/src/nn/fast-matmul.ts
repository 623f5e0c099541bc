/**
 * Matrix products with hand-written gradients, fast on the WebAssembly backend.
 *
 * Why (measured on the project's 2-core machines, docs/machine-notes.md "The matMul fix"):
 * - tfjs-backend-wasm runs a 2-D `matMul` through XNNPACK only when neither transpose flag is
 *   set; with a flag it falls back to a scalar loop, 10-25x slower. tfjs's own matMul gradient
 *   sets those flags. Here every gradient is an explicit `tf.transpose` plus a plain product.
 * - Any *batched* `matMul` (leading batch > 1) also takes that scalar loop on wasm. A batched
 *   product is a depthwise convolution in disguise (one group per batch entry, the channel
 *   multiplier as the output columns), and wasm runs depthwise convolutions through XNNPACK:
 *   4-5x faster for attention-sized products. {@link groupedMatMul} is that product in the
 *   convolution's native layout; `attention.ts` chains it with the fewest transposes.
 * - Broadcast reductions over many rows (`tf.sum(dy, 0)`, the bias gradient tfjs would use) are
 *   slow on wasm; `ones[1, N] x dy` is an XNNPACK product, ~3x faster at `[3136, 512]`.
 *
 * The backend module says which kernel batched products take on the active backend
 * (`batchedProductKernel()`); these functions never select or load a backend (that is
 * `initBackend()`'s job).
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchedProductKernel } from '../backend.js';
import './gradients.js';

type Grad2 = (...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  value: tf.Tensor;
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];
};

/** Batched products run as depthwise convolutions only where that is the fast kernel. */
function depthwiseIsFast(): boolean {
  return batchedProductKernel() === 'depthwise-conv';
}

/** Swap the last two axes (rank 2 or 3). */
function swapLast(x: tf.Tensor): tf.Tensor {
  return tf.transpose(x, x.rank === 2 ? [1, 0] : [0, 2, 1]);
}

/**
 * Grouped product in depthwise-convolution layout, WITHOUT gradient (for use inside ops that
 * write their own, like the attention op):
 * `out[m, g, n] = sum_k x[m, k, g] * f[k, g, n]`.
 */
export function groupedForward(x: tf.Tensor, f: tf.Tensor): tf.Tensor {
  const [M, K, G] = x.shape as [number, number, number];
  const N = f.shape[2] as number;
  if (depthwiseIsFast()) {
    // NHWC image [1, M, K, G] against a [1, K] window per channel, channel multiplier N.
    const img = tf.reshape(x, [1, M, K, G]) as tf.Tensor4D; //      [1, M, K, G]
    const filter = tf.reshape(f, [1, K, G, N]) as tf.Tensor4D; //   [1, K, G, N]
    const out = tf.depthwiseConv2d(img, filter, 1, 'valid'); //    [1, M, 1, G*N]
    return tf.reshape(out, [M, G, N]); //                            [M, G, N]
  }
  const a = tf.transpose(x, [2, 0, 1]); //                          [G, M, K]
  const b = tf.transpose(f, [1, 0, 2]); //                          [G, K, N]
  return tf.transpose(tf.matMul(a, b), [1, 0, 2]); //               [M, G, N]
}

/** Batched product `[G, M, K] x [G, K, N] -> [G, M, N]`, no gradient. */
function batchedForward(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  if (!depthwiseIsFast()) return tf.matMul(a, b);
  const x = tf.transpose(a, [1, 2, 0]); //                          [M, K, G]
  const f = tf.transpose(b, [1, 0, 2]); //                          [K, G, N]
  return tf.transpose(groupedForward(x, f), [1, 0, 2]); //          [G, M, N]
}

/** Plain product of rank-2 or rank-3 (equal batch) tensors, no gradient. */
function plainForward(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return a.rank === 2 ? tf.matMul(a, b) : batchedForward(a, b);
}

/** `a x b` for rank 2 or 3; dA = dy x B^T, dB = A^T x dy, each a transpose plus a plain product. */
const plainMatMul = tf.customGrad(((...args) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: plainForward(a, b),
    gradFunc: (dy, [sa, sb]) => [
      plainForward(dy, swapLast(sb as tf.Tensor)),
      plainForward(swapLast(sa as tf.Tensor), dy),
    ],
  };
}) as Grad2);

/**
 * Matrix product with the fast gradient. Rank 2 (`[M, K] x [K, N]`), or rank 3/4 with equal
 * leading (batch) dimensions (`[..., M, K] x [..., K, N]`; no batch broadcasting). The transpose
 * flags are honoured with explicit transposes, never with tfjs's flags.
 */
export function matMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false) {
  if (a.rank !== b.rank || a.rank < 2 || a.rank > 4) {
    throw new Error(
      `matMul: ranks must be equal and 2, 3 or 4, got ${a.rank} and ${b.rank} ` +
        `(for [..., in] x [in, out] use linear())`,
    );
  }
  const batch = a.shape.slice(0, -2);
  if (b.shape.slice(0, -2).some((d, i) => d !== batch[i])) {
    throw new Error(`matMul: batch dimensions differ: [${a.shape}] x [${b.shape}]`);
  }
  return tf.tidy(() => {
    const G = batch.reduce((p, d) => p * d, 1);
    let a3 = a.rank === 4 ? tf.reshape(a, [G, ...a.shape.slice(-2)]) : a;
    let b3 = b.rank === 4 ? tf.reshape(b, [G, ...b.shape.slice(-2)]) : b;
    if (transposeA) a3 = swapLast(a3);
    if (transposeB) b3 = swapLast(b3);
    const out = plainMatMul(a3, b3); //                              [..., M, N]
    return a.rank === 4 ? tf.reshape(out, [...batch, ...out.shape.slice(-2)]) : out;
  });
}

/**
 * Grouped product in the layout of a depthwise convolution (channels last, the group axis):
 * `out[m, g, n] = sum_k x[m, k, g] * f[k, g, n]`, i.e. for each group g the product
 * `x[:, :, g] (M x K) times f[:, g, :] (K x N)`.
 *
 * @param x `[M, K, G]`
 * @param f `[K, G, N]`
 * @returns `[M, G, N]`
 */
export const groupedMatMul = tf.customGrad(((...args) => {
  const [x, f, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  if (x.rank !== 3 || f.rank !== 3 || x.shape[1] !== f.shape[0] || x.shape[2] !== f.shape[1]) {
    throw new Error(
      `groupedMatMul: expected [M, K, G] and [K, G, N], got [${x.shape}], [${f.shape}]`,
    );
  }
  save([x, f]);
  return {
    value: groupedForward(x, f),
    gradFunc: (dy, [sx, sf]) => {
      // dx[m, k, g] = sum_n dy[m, g, n] f[k, g, n]
      const dyT = tf.transpose(dy, [0, 2, 1]); //                   [M, N, G]
      const fT = tf.transpose(sf as tf.Tensor, [2, 1, 0]); //        [N, G, K]
      const dx = tf.transpose(groupedForward(dyT, fT), [0, 2, 1]); // [M, K, G]
      // df[k, g, n] = sum_m x[m, k, g] dy[m, g, n]
      const xT = tf.transpose(sx as tf.Tensor, [1, 0, 2]); //        [K, M, G]
      const df = groupedForward(xT, dy); //                          [K, G, N]
      return [dx, df];
    },
  };
}) as Grad2);

/**
 * `x w + b` on rows. For dW, XNNPACK packs its right operand on every call (~3 ns per element),
 * so the product is oriented to pack the smaller of x and dy: `x^T dy`, or `(dy^T x)^T` when the
 * layer widens. db is a product with a ones vector (an XNNPACK call, not a slow column sum).
 */
const affine = tf.customGrad(((...args) => {
  const [x, w, b, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([x, w]);
  const [inF, outF] = w.shape as [number, number];
  return {
    value: tf.fused.matMul({ a: x, b: w, bias: b }), //              [N, out], bias inside XNNPACK
    gradFunc: (dy, [sx, sw]) => {
      const n = dy.shape[0] as number;
      const dx = tf.matMul(dy, tf.transpose(sw!)); //                 [N, in]
      if (outF > inF) {
        const dyT = tf.transpose(dy); //                              [out, N]
        const dw = tf.transpose(tf.matMul(dyT, sx!)); //              [in, out]
        return [dx, dw, tf.reshape(tf.matMul(dyT, tf.ones([n, 1])), [outF])];
      }
      const dw = tf.matMul(tf.transpose(sx!), dy); //                 [in, out]
      return [dx, dw, tf.reshape(tf.matMul(tf.ones([1, n]), dy), [outF])];
    },
  };
}) as Grad2);

/**
 * A linear layer on the last axis: `[..., in] x [in, out] (+ [out]) -> [..., out]`. Weights are
 * stored `[in, out]` (the transpose of PyTorch's `nn.Linear.weight`). Leading axes are flattened
 * into rows so the product is one 2-D (XNNPACK) matMul.
 */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const [inF, outF] = w.shape as [number, number];
  if (w.rank !== 2 || x.shape[x.rank - 1] !== inF || (b && (b.rank !== 1 || b.shape[0] !== outF))) {
    throw new Error(
      `linear: expected x [..., ${inF}], w [in, out], b [out]; got x [${x.shape}], ` +
        `w [${w.shape}]${b ? `, b [${b.shape}]` : ''}`,
    );
  }
  return tf.tidy(() => {
    const rows = tf.reshape(x, [-1, inF]); //                        [N, in]
    const y = b ? affine(rows, w, b) : plainMatMul(rows, w); //      [N, out]
    return tf.reshape(y, [...x.shape.slice(0, -1), outF]); //        [..., out]
  });
}
