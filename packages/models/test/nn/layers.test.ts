import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { attention } from '../../src/nn/attention.js';
import { matMul } from '../../src/nn/fast-matmul.js';
import { REGISTERED_GRADIENT_KERNELS } from '../../src/nn/gradients.js';
import {
  gatedResidual,
  geluTanh,
  LN_EPS,
  layerNorm,
  modulatedLayerNorm,
} from '../../src/nn/layers.js';

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => {
  expect(a.shape).toEqual(b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
};
const seeded = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

/** Value and gradients of `sum(f(...xs) * dy)` for the op and for its reference. */
function compare(
  op: (...xs: tf.Tensor[]) => tf.Tensor,
  ref: (...xs: tf.Tensor[]) => tf.Tensor,
  xs: tf.Tensor[],
  tol: number,
) {
  const dy = seeded(op(...xs).shape, 99);
  expect(maxDiff(op(...xs), ref(...xs))).toBeLessThan(tol);
  const g1 = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(op(...a), dy)))(xs);
  const g2 = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(ref(...a), dy)))(xs);
  g1.forEach((g, i) => {
    expect(maxDiff(g, g2[i]!)).toBeLessThan(tol);
  });
}

/** Reference LayerNorm by tfjs ops and automatic differentiation (gradients from gradients.ts). */
const lnRef = (x: tf.Tensor) => {
  const mu = tf.mean(x, -1, true);
  const xc = tf.sub(x, mu);
  return tf.div(xc, tf.sqrt(tf.add(tf.mean(tf.square(xc), -1, true), LN_EPS)));
};

describe.each(['wasm', 'cpu'] as const)('layers with hand-written gradients on %s', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend });
  });

  it('layerNorm equals (x - mean) / sqrt(var + eps), gradients included', () => {
    tf.tidy(() => compare(layerNorm, lnRef, [seeded([2, 5, 8], 1)], 1e-4));
  });

  it('modulatedLayerNorm equals LN(x) (1 + scale) + shift', () => {
    tf.tidy(() =>
      compare(
        modulatedLayerNorm,
        (x, shift, scale) => tf.add(tf.mul(lnRef(x), tf.add(scale!, 1)), shift!),
        [seeded([3, 4, 8], 2), seeded([3, 1, 8], 3), seeded([3, 1, 8], 4)],
        1e-4,
      ),
    );
  });

  it('gatedResidual equals x + gate * h', () => {
    tf.tidy(() =>
      compare(
        gatedResidual,
        (x, g, h) => tf.add(x, tf.mul(g!, h!)),
        [seeded([3, 4, 8], 5), seeded([3, 1, 8], 6), seeded([3, 4, 8], 7)],
        1e-5,
      ),
    );
  });

  it('geluTanh equals 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))', () => {
    tf.tidy(() =>
      compare(
        geluTanh,
        (x) => {
          const inner = tf.mul(
            tf.add(x, tf.mul(tf.mul(tf.square(x), x), 0.044715)),
            Math.sqrt(2 / Math.PI),
          );
          return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
        },
        [tf.mul(seeded([4, 16], 8), 3)],
        1e-5,
      ),
    );
  });

  it('attention equals softmax(q k^T) v through generic batched products', () => {
    tf.tidy(() => {
      const [T, G, Dh] = [5, 6, 4];
      const toBatched = (t: tf.Tensor) => tf.transpose(t, [1, 0, 2]); // [T, G, D] -> [G, T, D]
      compare(
        attention,
        (q, k, v) => {
          const p = tf.softmax(matMul(toBatched(q), toBatched(k!), false, true));
          return toBatched(matMul(p, toBatched(v!)));
        },
        [seeded([T, G, Dh], 9), seeded([T, G, Dh], 10), seeded([T, G, Dh], 11)],
        1e-5,
      );
    });
  });
});

describe('kernel gradients registered by gradients.ts', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu' });
  });

  /** Central differences of sum(f(x) * w) against tf.grads, in float32 (hence the loose tolerance). */
  function checkNumerically(f: (x: tf.Tensor) => tf.Tensor, shape: number[]) {
    tf.tidy(() => {
      const x = seeded(shape, 21);
      const w = seeded(f(x).shape, 22);
      const loss = (t: tf.Tensor) => tf.sum(tf.mul(f(t), w));
      const g = tf.grad(loss)(x).dataSync();
      const xs = x.dataSync();
      const h = 1e-2;
      for (let i = 0; i < xs.length; i++) {
        const plus = Float32Array.from(xs);
        const minus = Float32Array.from(xs);
        plus[i]! += h;
        minus[i]! -= h;
        const fd =
          ((loss(tf.tensor(plus, shape)).dataSync()[0] as number) -
            (loss(tf.tensor(minus, shape)).dataSync()[0] as number)) /
          (2 * h);
        expect(Math.abs(fd - (g[i] as number))).toBeLessThan(2e-2 * Math.max(1, Math.abs(fd)));
      }
    });
  }

  const c = (shape: number[], seed: number) => seeded(shape, seed);
  const cases: [string, (x: tf.Tensor) => tf.Tensor, number[]][] = [
    [
      'broadcast add / sub / mul / div',
      (x) =>
        tf.div(
          tf.mul(tf.sub(tf.add(x, c([3], 1)), c([2, 1], 2)), x),
          tf.add(tf.square(c([2, 3], 3)), 1),
        ),
      [2, 3],
    ],
    [
      'mean, sum, square, sqrt, neg',
      (x) => tf.neg(tf.sqrt(tf.add(tf.add(tf.sum(tf.square(x), 1, true), tf.mean(x, 0)), 4))),
      [2, 3],
    ],
    [
      'exp, log, sigmoid, tanh, relu, abs',
      (x) =>
        tf.add(
          tf.add(tf.log(tf.add(tf.exp(x), 1)), tf.sigmoid(x)),
          tf.add(tf.tanh(x), tf.add(tf.relu(x), tf.abs(x))),
        ),
      [2, 3],
    ],
    [
      'reshape, transpose, slice, concat, split, stack, unstack',
      (x) => {
        const [a, b] = tf.split(tf.transpose(tf.reshape(x, [2, 3, 2]), [2, 0, 1]), 2, 0);
        const s = tf.slice(tf.concat([a!, b!, a!], 1), [0, 1, 0], [1, 3, 2]);
        // (copy before reversing: tfjs's tape holds the very array unstack returns)
        return tf.stack([...tf.unstack(s, 1)].reverse(), 0);
      },
      [2, 6],
    ],
    [
      'softmax, addN, cast, rsqrt, broadcastTo',
      (x) =>
        tf.addN([
          tf.softmax(x),
          tf.cast(x, 'float32'),
          tf.rsqrt(tf.add(tf.square(x), 1)),
          tf.broadcastTo(tf.slice(x, [0, 0], [1, 3]), [2, 3]),
        ]),
      [2, 3],
    ],
  ];
  it.each(cases)('%s', (_name, f, shape) => checkNumerically(f, shape));

  it('lists what it registers', () => {
    expect(REGISTERED_GRADIENT_KERNELS).toEqual(
      expect.arrayContaining(['Add', 'Softmax', 'SplitV', 'Unpack']),
    );
  });
});
