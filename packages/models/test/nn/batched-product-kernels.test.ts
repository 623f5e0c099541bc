/**
 * Both kernels of a batched product (`batchedProductKernel` in the backend module: a depthwise
 * convolution on wasm, a batched matMul elsewhere) give the same numbers, forward and backward,
 * on wasm and on webgpu (Mesa's software adapter here and in CI), for every op built on them:
 * attention, the grouped product and the rank-3 and rank-4 products.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BatchedProductKernel,
  batchedProductKernel,
  forceBatchedProductKernel,
  initBackend,
} from '../../src/backend.js';
import { attention } from '../../src/nn/attention.js';
import { groupedMatMul, matMul } from '../../src/nn/fast-matmul.js';

/** Float32 rounding of different summation orders (measured: at most 1.2e-7, attention on webgpu). */
const TOLERANCE = 1e-5;

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (2 * s) / 2 ** 32 - 1;
  }
  return out;
}

const OPS: { name: string; shapes: number[][]; f: (...x: tf.Tensor[]) => tf.Tensor }[] = [
  {
    name: 'attention',
    shapes: [
      [5, 6, 4],
      [7, 6, 4],
      [7, 6, 3],
    ],
    f: (q, k, v) => attention(q!, k!, v!),
  },
  {
    name: 'groupedMatMul',
    shapes: [
      [5, 4, 3],
      [4, 3, 6],
    ],
    f: (x, w) => groupedMatMul(x!, w!),
  },
  {
    name: 'matMul 3-D',
    shapes: [
      [3, 6, 4],
      [3, 4, 5],
    ],
    f: (a, b) => matMul(a!, b!),
  },
  {
    name: 'matMul 4-D, transposed',
    shapes: [
      [2, 2, 3, 4],
      [2, 2, 5, 3],
    ],
    f: (a, b) => matMul(a!, b!, true, true),
  },
];

/** Output and gradients of `sum(f(x) * w)` with respect to every input. */
async function run(op: (typeof OPS)[number], index: number): Promise<Float32Array[]> {
  const xs = op.shapes.map((s, i) =>
    tf.tensor(
      values(
        s.reduce((p, d) => p * d, 1),
        10 * index + i + 1,
      ),
      s,
    ),
  );
  const y = op.f(...xs);
  const w = tf.tensor(values(y.size, 99 + index), y.shape);
  const grads = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(op.f(...a), w)))(xs);
  const out = [(await y.data()) as Float32Array];
  for (const g of grads) out.push((await g.data()) as Float32Array);
  tf.dispose([...xs, y, w, ...grads]);
  return out;
}

async function runAll(backend: 'wasm' | 'webgpu', kernel: BatchedProductKernel) {
  const info = await initBackend({ backend });
  expect(info.name, info.warning).toBe(backend);
  forceBatchedProductKernel(kernel);
  expect(batchedProductKernel()).toBe(kernel);
  // webgpu would run these small products on the CPU; every kernel must run on the GPU here.
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  try {
    const out: Float32Array[][] = [];
    for (const [i, op] of OPS.entries()) out.push(await run(op, i));
    return out;
  } finally {
    tf.env().set('WEBGPU_CPU_FORWARD', true);
    forceBatchedProductKernel(null);
  }
}

describe('batched products: depthwise convolution and batched matMul agree', () => {
  afterAll(async () => {
    forceBatchedProductKernel(null);
    await initBackend({ backend: 'wasm' });
  });

  it('each backend has its own kernel: depthwise on wasm, batched matMul on webgpu', async () => {
    await initBackend({ backend: 'wasm' });
    expect(batchedProductKernel()).toBe('depthwise-conv');
    await initBackend({ backend: 'webgpu' });
    expect(batchedProductKernel()).toBe('batched-matmul');
    await initBackend({ backend: 'cpu' });
    expect(batchedProductKernel()).toBe('batched-matmul');
  });

  it('forward and backward, both kernels on both backends, against wasm with depthwise', async () => {
    const reference = await runAll('wasm', 'depthwise-conv');
    for (const [backend, kernel] of [
      ['wasm', 'batched-matmul'],
      ['webgpu', 'batched-matmul'],
      ['webgpu', 'depthwise-conv'],
    ] as const) {
      const got = await runAll(backend, kernel);
      for (const [i, op] of OPS.entries()) {
        for (const [j, ref] of reference[i]!.entries()) {
          const a = got[i]![j]!;
          expect(a.length).toBe(ref.length);
          let diff = 0;
          let scale = 1;
          for (let k = 0; k < ref.length; k++) {
            diff = Math.max(diff, Math.abs(a[k]! - ref[k]!));
            scale = Math.max(scale, Math.abs(ref[k]!));
          }
          expect(
            diff / scale,
            `${op.name} (${j === 0 ? 'output' : `gradient ${j}`}) on ${backend} with ${kernel}`,
          ).toBeLessThanOrEqual(TOLERANCE);
        }
      }
    }
  }, 120_000);
});
