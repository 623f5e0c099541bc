import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { groupedMatMul, linear, matMul } from '../../src/nn/fast-matmul.js';

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => {
  expect(a.shape).toEqual(b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
};

/**
 * tfjs's own matMul gradient (tfjs-core `gradients/BatchMatMul_grad.ts`), which uses the transpose
 * flags. tfjs-core alone does not register it, so its formulas are applied directly.
 */
function tfjsMatMulGrad(a: tf.Tensor, b: tf.Tensor, dy: tf.Tensor, tA: boolean, tB: boolean) {
  if (!tA && !tB) return [tf.matMul(dy, b, false, true), tf.matMul(a, dy, true, false)];
  if (!tA && tB) return [tf.matMul(dy, b, false, false), tf.matMul(dy, a, true, false)];
  if (tA && !tB) return [tf.matMul(b, dy, false, true), tf.matMul(a, dy, false, false)];
  return [tf.matMul(b, dy, true, true), tf.matMul(dy, a, true, true)];
}

const seeded = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

describe.each(['wasm', 'cpu'] as const)('fast matMul on %s', (backend) => {
  const cases: [string, number[], number[]][] = [
    ['2-D', [5, 7], [7, 3]],
    ['batched rank 3', [4, 6, 8], [4, 8, 5]],
    ['batched rank 4 (attention-like)', [2, 3, 9, 4], [2, 3, 4, 9]],
  ];
  for (const [name, aShape, bShape] of cases) {
    for (const [tA, tB] of [
      [false, false],
      [false, true],
      [true, false],
      [true, true],
    ] as const) {
      it(`${name}, transposeA=${tA}, transposeB=${tB}: value and gradients equal tfjs's`, async () => {
        await initBackend({ backend });
        tf.tidy(() => {
          const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!];
          const a = seeded(tA ? swap(aShape) : aShape, 1);
          const b = seeded(tB ? swap(bShape) : bShape, 2);
          const ref = tf.matMul(a, b, tA, tB);
          const dy = seeded(ref.shape, 3);
          const out = matMul(a, b, tA, tB);
          expect(maxDiff(out, ref)).toBeLessThan(1e-5);
          const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
            tf.sum(tf.mul(matMul(x, y, tA, tB), dy)),
          )([a, b]);
          const [ra, rb] = tfjsMatMulGrad(a, b, dy, tA, tB);
          expect(maxDiff(ga!, ra!)).toBeLessThan(1e-5);
          expect(maxDiff(gb!, rb!)).toBeLessThan(1e-5);
        });
      });
    }
  }

  it('groupedMatMul: out[m,g,n] = sum_k x[m,k,g] f[k,g,n], with exact gradients', async () => {
    await initBackend({ backend });
    tf.tidy(() => {
      const [M, K, G, N] = [5, 4, 6, 3];
      const x = seeded([M, K, G], 4);
      const f = seeded([K, G, N], 5);
      const dy = seeded([M, G, N], 6);
      // Reference: the batched product [G, M, K] x [G, K, N] in tfjs's own kernel.
      const a = tf.transpose(x, [2, 0, 1]);
      const b = tf.transpose(f, [1, 0, 2]);
      const ref = tf.transpose(tf.matMul(a, b), [1, 0, 2]);
      expect(maxDiff(groupedMatMul(x, f), ref)).toBeLessThan(1e-5);
      const [gx, gf] = tf.grads((u: tf.Tensor, v: tf.Tensor) =>
        tf.sum(tf.mul(groupedMatMul(u, v), dy)),
      )([x, f]);
      const dyB = tf.transpose(dy, [1, 0, 2]); // [G, M, N]
      const [ra, rb] = tfjsMatMulGrad(a, b, dyB, false, false);
      expect(maxDiff(gx!, tf.transpose(ra!, [1, 2, 0]))).toBeLessThan(1e-5);
      expect(maxDiff(gf!, tf.transpose(rb!, [1, 0, 2]))).toBeLessThan(1e-5);
    });
  });

  it('linear: [.., in] x [in, out] + b, widening and narrowing, gradients as x^T dy and sum(dy)', async () => {
    await initBackend({ backend });
    tf.tidy(() => {
      for (const [inF, outF] of [
        [6, 10],
        [10, 6],
      ] as const) {
        const x = seeded([2, 3, inF], 7);
        const w = seeded([inF, outF], 8);
        const b = seeded([outF], 9);
        const dy = seeded([2, 3, outF], 10);
        const x2 = tf.reshape(x, [6, inF]);
        const dy2 = tf.reshape(dy, [6, outF]);
        const ref = tf.add(tf.reshape(tf.matMul(x2, w), [2, 3, outF]), b);
        expect(maxDiff(linear(x, w, b), ref)).toBeLessThan(1e-5);
        const [gx, gw, gb] = tf.grads((u: tf.Tensor, v: tf.Tensor, c: tf.Tensor) =>
          tf.sum(tf.mul(linear(u, v, c), dy)),
        )([x, w, b]);
        expect(maxDiff(gx!, tf.reshape(tf.matMul(dy2, w, false, true), [2, 3, inF]))).toBeLessThan(
          1e-5,
        );
        expect(maxDiff(gw!, tf.matMul(x2, dy2, true, false))).toBeLessThan(1e-5);
        expect(maxDiff(gb!, tf.sum(dy2, 0))).toBeLessThan(1e-5);
        // Without bias.
        expect(maxDiff(linear(x, w), tf.reshape(tf.matMul(x2, w), [2, 3, outF]))).toBeLessThan(
          1e-5,
        );
      }
    });
  });
});

describe('fast matMul argument checks', () => {
  it('rejects mismatched ranks and batch dimensions, naming the shapes', async () => {
    await initBackend({ backend: 'wasm' });
    tf.tidy(() => {
      expect(() => matMul(tf.zeros([2, 3, 4]), tf.zeros([4, 5]))).toThrow(/use linear\(\)/);
      expect(() => matMul(tf.zeros([2, 3, 4]), tf.zeros([3, 4, 5]))).toThrow(
        'matMul: batch dimensions differ: [2,3,4] x [3,4,5]',
      );
      expect(() => linear(tf.zeros([2, 3]), tf.zeros([4, 5]))).toThrow(/expected x \[\.\.\., 4\]/);
    });
  });
});
