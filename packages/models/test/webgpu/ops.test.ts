/**
 * Every op and gradient the DiT, the router and the trainers use, forward and backward, on
 * webgpu (Dawn) against wasm. CI runs webgpu on Mesa's software adapter (llvmpipe through
 * OpenGL ES, `.ci/run` installs it): slow, so the shapes are tiny, but every kernel runs.
 *
 * Each case's inputs are the same float32 arrays on both backends; its output and the gradients
 * of `sum(f(x) * w)` (a fixed random `w`, so no gradient is trivially ones) with respect to every
 * float input are read with `await data()` and compared as
 * `max |webgpu - wasm| <= TOLERANCE * max(1, max |wasm|)`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { attention } from '../../src/nn/attention.js';
import { DiT, type DiTConfig, patchify, timestepEmbedding, unpatchify } from '../../src/nn/dit.js';
import { groupedMatMul, linear, matMul } from '../../src/nn/fast-matmul.js';
import {
  gatedResidual,
  geluTanh,
  layerNorm,
  modulatedLayerNorm,
  silu,
} from '../../src/nn/layers.js';
import { RouterNet } from '../../src/nn/router.js';
import '../../src/training/gradients.js';
import { createObjective } from '@archipelago/diffusion';
import { createLoss } from '../../src/training/losses.js';
import { MlpClassifier, MlpNet } from '../../src/training/mlp-net.js';

/**
 * Float32 on the GPU vs XNNPACK: different summation orders, nothing more. Measured on llvmpipe:
 * at most 2.6e-7 (geluTanh), most ops exact or within 1.2e-7; 1e-5 leaves a margin of 40.
 */
export const TOLERANCE = 1e-5;

/** A deterministic stream of floats in [-1, 1) (no tf random: the inputs are plain arrays). */
function values(n: number, seed: number, positive = false): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    out[i] = positive ? 0.2 + u : 2 * u - 1;
  }
  return out;
}

interface Input {
  shape: number[];
  /** `positive`: in [0.2, 1.2) (sqrt, log, rsqrt, div); `int`: integers in [0, max). */
  kind?: 'positive' | 'int';
  max?: number;
}

interface Case {
  name: string;
  inputs: Input[];
  f: (...x: tf.Tensor[]) => tf.Tensor;
  /** Gradients with respect to the float inputs; default true. */
  grad?: boolean;
}

const t2 = [3, 5];
const t3 = [2, 3, 4];

const CASES: Case[] = [
  // Kernels whose gradients nn/gradients.ts and training/gradients.ts register.
  { name: 'add (broadcast)', inputs: [{ shape: t3 }, { shape: [4] }], f: (a, b) => tf.add(a!, b!) },
  {
    name: 'sub (broadcast)',
    inputs: [{ shape: t3 }, { shape: [3, 1] }],
    f: (a, b) => tf.sub(a!, b!),
  },
  {
    name: 'mul (broadcast)',
    inputs: [{ shape: t3 }, { shape: [2, 1, 4] }],
    f: (a, b) => tf.mul(a!, b!),
  },
  {
    name: 'div',
    inputs: [{ shape: t3 }, { shape: t3, kind: 'positive' }],
    f: (a, b) => tf.div(a!, b!),
  },
  {
    name: 'addN',
    inputs: [{ shape: t2 }, { shape: t2 }, { shape: t2 }],
    f: (a, b, c) => tf.addN([a!, b!, c!]),
  },
  { name: 'neg', inputs: [{ shape: t2 }], f: (x) => tf.neg(x!) },
  { name: 'square', inputs: [{ shape: t2 }], f: (x) => tf.square(x!) },
  { name: 'sqrt', inputs: [{ shape: t2, kind: 'positive' }], f: (x) => tf.sqrt(x!) },
  { name: 'rsqrt', inputs: [{ shape: t2, kind: 'positive' }], f: (x) => tf.rsqrt(x!) },
  { name: 'exp', inputs: [{ shape: t2 }], f: (x) => tf.exp(x!) },
  { name: 'log', inputs: [{ shape: t2, kind: 'positive' }], f: (x) => tf.log(x!) },
  { name: 'abs', inputs: [{ shape: t2 }], f: (x) => tf.abs(x!) },
  { name: 'sigmoid', inputs: [{ shape: t2 }], f: (x) => tf.sigmoid(x!) },
  { name: 'tanh', inputs: [{ shape: t2 }], f: (x) => tf.tanh(x!) },
  { name: 'relu', inputs: [{ shape: t2 }], f: (x) => tf.relu(x!) },
  { name: 'cast', inputs: [{ shape: t2 }], f: (x) => tf.cast(tf.cast(x!, 'float32'), 'float32') },
  { name: 'mean (axis 1, keepDims)', inputs: [{ shape: t3 }], f: (x) => tf.mean(x!, 1, true) },
  { name: 'sum (axes 0, 2)', inputs: [{ shape: t3 }], f: (x) => tf.sum(x!, [0, 2]) },
  { name: 'reshape', inputs: [{ shape: t3 }], f: (x) => tf.reshape(x!, [6, 4]) },
  { name: 'transpose', inputs: [{ shape: t3 }], f: (x) => tf.transpose(x!, [2, 0, 1]) },
  { name: 'slice', inputs: [{ shape: t3 }], f: (x) => tf.slice(x!, [0, 1, 1], [2, 2, 2]) },
  { name: 'split', inputs: [{ shape: t3 }], f: (x) => tf.split(x!, [1, 3], 2)[1]! },
  {
    name: 'concat',
    inputs: [{ shape: t3 }, { shape: [2, 3, 2] }],
    f: (a, b) => tf.concat([a!, b!], 2),
  },
  { name: 'stack', inputs: [{ shape: t2 }, { shape: t2 }], f: (a, b) => tf.stack([a!, b!], 1) },
  { name: 'unstack', inputs: [{ shape: t3 }], f: (x) => tf.unstack(x!, 1)[2]! },
  { name: 'softmax', inputs: [{ shape: t3 }], f: (x) => tf.softmax(tf.mul(x!, 3)) },
  { name: 'logSoftmax', inputs: [{ shape: t2 }], f: (x) => tf.logSoftmax(tf.mul(x!, 3)) },
  { name: 'tile', inputs: [{ shape: t2 }], f: (x) => tf.tile(x!, [2, 3]) },
  { name: 'broadcastTo', inputs: [{ shape: [1, 5] }], f: (x) => tf.broadcastTo(x!, [3, 5]) },
  {
    name: 'squaredDifference',
    inputs: [{ shape: t3 }, { shape: t3 }],
    f: (a, b) => tf.squaredDifference(a!, b!),
  },
  {
    name: 'oneHot x table (label embedding)',
    inputs: [{ shape: [4], kind: 'int', max: 3 }, { shape: [3, 6] }],
    f: (labels, table) =>
      matMul(tf.cast(tf.oneHot(tf.cast(labels!, 'int32') as tf.Tensor1D, 3), 'float32'), table!),
  },
  // The fused and hand-differentiated ops of nn/.
  {
    name: 'matMul 2-D',
    inputs: [{ shape: [4, 6] }, { shape: [6, 5] }],
    f: (a, b) => matMul(a!, b!),
  },
  {
    name: 'matMul 3-D, transposed',
    inputs: [{ shape: [3, 6, 4] }, { shape: [3, 5, 6] }],
    f: (a, b) => matMul(a!, b!, true, true),
  },
  {
    name: 'matMul 4-D',
    inputs: [{ shape: [2, 2, 4, 3] }, { shape: [2, 2, 3, 5] }],
    f: (a, b) => matMul(a!, b!),
  },
  {
    name: 'groupedMatMul',
    inputs: [{ shape: [5, 4, 3] }, { shape: [4, 3, 6] }],
    f: (x, w) => groupedMatMul(x!, w!),
  },
  {
    name: 'linear with bias, widening',
    inputs: [{ shape: [2, 3, 4] }, { shape: [4, 7] }, { shape: [7] }],
    f: (x, w, b) => linear(x!, w!, b!),
  },
  {
    name: 'linear with bias, narrowing',
    inputs: [{ shape: [6, 7] }, { shape: [7, 3] }, { shape: [3] }],
    f: (x, w, b) => linear(x!, w!, b!),
  },
  {
    name: 'linear without bias',
    inputs: [{ shape: [6, 4] }, { shape: [4, 5] }],
    f: (x, w) => linear(x!, w!),
  },
  {
    name: 'attention',
    inputs: [{ shape: [5, 6, 4] }, { shape: [7, 6, 4] }, { shape: [7, 6, 3] }],
    f: (q, k, v) => attention(q!, k!, v!),
  },
  { name: 'layerNorm', inputs: [{ shape: [2, 3, 8] }], f: (x) => layerNorm(x!) },
  {
    name: 'modulatedLayerNorm',
    inputs: [{ shape: [2, 3, 8] }, { shape: [2, 1, 8] }, { shape: [2, 1, 8] }],
    f: (x, shift, scale) => modulatedLayerNorm(x!, shift!, scale!),
  },
  {
    name: 'gatedResidual',
    inputs: [{ shape: [2, 3, 8] }, { shape: [2, 1, 8] }, { shape: [2, 3, 8] }],
    f: (x, gate, h) => gatedResidual(x!, gate!, h!),
  },
  { name: 'geluTanh', inputs: [{ shape: [4, 8] }], f: (x) => geluTanh(tf.mul(x!, 3)) },
  { name: 'silu', inputs: [{ shape: [4, 8] }], f: (x) => silu(tf.mul(x!, 3)) },
  {
    name: 'timestepEmbedding',
    inputs: [{ shape: [3], kind: 'positive' }],
    f: (t) => timestepEmbedding(tf.mul(t!, 500)),
    grad: false,
  },
  { name: 'patchify', inputs: [{ shape: [2, 4, 4, 3] }], f: (x) => patchify(x!, 2) },
  { name: 'unpatchify', inputs: [{ shape: [2, 4, 12] }], f: (x) => unpatchify(x!, 2, 3) },
];

/** A micro-sized DiT (AdaLN-Single, class-conditional) on 4x4 images: 4 tokens. */
const DIT: DiTConfig = {
  imageSize: 4,
  channels: 2,
  patchSize: 2,
  hidden: 16,
  depth: 2,
  heads: 2,
  mlpRatio: 2,
  numClasses: 3,
  learnSigma: false,
};

interface Result {
  name: string;
  arrays: Float32Array[];
}

function tensorOf(input: Input, seed: number): tf.Tensor {
  const n = input.shape.reduce((p, d) => p * d, 1);
  if (input.kind === 'int') {
    const v = values(n, seed, true);
    return tf.tensor(
      Float32Array.from(v, (x) => Math.floor((x - 0.2) * (input.max ?? 2))),
      input.shape,
    );
  }
  return tf.tensor(values(n, seed, input.kind === 'positive'), input.shape);
}

async function runCase(c: Case, index: number): Promise<Result> {
  const xs = c.inputs.map((input, i) => tensorOf(input, 1000 * index + i + 1));
  try {
    const y = tf.tidy(() => c.f(...xs));
    const w = tf.tensor(values(y.size, 7 * index + 3), y.shape);
    const arrays = [(await y.data()) as Float32Array];
    if (c.grad !== false) {
      const float = xs.filter((_, i) => c.inputs[i]!.kind !== 'int');
      const others = xs.filter((_, i) => c.inputs[i]!.kind === 'int');
      const grads = tf.grads((...a: tf.Tensor[]) => {
        let k = 0;
        let m = 0;
        const args = c.inputs.map((input) => (input.kind === 'int' ? others[m++]! : a[k++]!));
        return tf.sum(tf.mul(c.f(...args), w));
      })(float);
      for (const g of grads) arrays.push((await g.data()) as Float32Array);
      tf.dispose(grads);
    }
    tf.dispose([y, w]);
    return { name: c.name, arrays };
  } finally {
    tf.dispose(xs);
  }
}

/** The DiT, the router or an MLP: output and the gradient of every parameter of a loss. */
async function runNetwork(kind: 'dit' | 'router' | 'mlp' | 'mlp-classifier'): Promise<Result> {
  const net =
    kind === 'dit'
      ? new DiT(DIT, 3)
      : kind === 'router'
        ? new RouterNet(
            {
              imageSize: 4,
              channels: 2,
              patchSize: 2,
              hidden: 16,
              depth: 1,
              heads: 2,
              mlpRatio: 2,
              numClusters: 3,
            },
            4,
          )
        : kind === 'mlp'
          ? new MlpNet({ dim: 2, hidden: 16, depth: 2 }, 5)
          : new MlpClassifier({ dim: 2, hidden: 16, depth: 2, numClusters: 3 }, 6);
  const image = kind === 'dit' || kind === 'router';
  const x = tf.tensor(values(image ? 2 * 4 * 4 * 2 : 4, 11), image ? [2, 4, 4, 2] : [2, 2]);
  const tau = tf.tensor1d([17, 630]);
  const labels = kind === 'dit' ? tf.tensor1d([1, 3], 'int32') : undefined;
  const network = {
    apply: (a: tf.Tensor, t: tf.Tensor, l?: tf.Tensor) => net.apply(a, t, l as never),
  } as never;
  const batch =
    kind === 'dit' || kind === 'mlp'
      ? {
          x,
          tau,
          target: tf.tensor(values(x.size, 12), x.shape),
          ...(labels ? { labels } : {}),
        }
      : { x, tau, classes: tf.tensor1d([2, 0], 'int32') };
  const loss = createLoss(
    kind === 'dit' || kind === 'mlp'
      ? {
          kind: 'regression',
          objective: createObjective({ name: 'fm', timeSampling: { kind: 'uniform' } }).config,
        }
      : { kind: 'classification' },
    network,
  );
  try {
    const out = net.apply(x, tau, labels as never);
    const arrays = [(await out.data()) as Float32Array];
    out.dispose();
    const vars = [...net.params.values()].filter((v) => v.trainable);
    const { value, grads } = tf.variableGrads(() => loss(batch), vars);
    arrays.push((await value.data()) as Float32Array);
    for (const v of vars) arrays.push((await grads[v.name]!.data()) as Float32Array);
    tf.dispose([value, ...Object.values(grads)]);
    return { name: kind, arrays };
  } finally {
    tf.dispose(Object.values(batch));
    net.dispose();
  }
}

async function runAll(): Promise<Result[]> {
  const out: Result[] = [];
  for (const [i, c] of CASES.entries()) out.push(await runCase(c, i));
  for (const kind of ['dit', 'router', 'mlp', 'mlp-classifier'] as const)
    out.push(await runNetwork(kind));
  return out;
}

/** `max |a - b| / max(1, max |b|)` over every array of a result. */
function relativeError(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  for (const [i, ref] of b.entries()) {
    const got = a[i]!;
    let diff = 0;
    let scale = 1;
    for (let j = 0; j < ref.length; j++) {
      diff = Math.max(diff, Math.abs(got[j]! - ref[j]!));
      scale = Math.max(scale, Math.abs(ref[j]!));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

describe('webgpu against wasm: every op and gradient of the DiT, the router and the trainers', () => {
  let wasm: Result[];
  let webgpu: Result[];

  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    wasm = await runAll();
    const info = await initBackend({ backend: 'webgpu' });
    // CI has Mesa's software adapter (.ci/run installs it): no adapter here is a failure.
    expect(info.name, info.warning).toBe('webgpu');
    // The backend runs small ops on CPU-resident inputs on the CPU; here every kernel must run on
    // the GPU.
    tf.env().set('WEBGPU_CPU_FORWARD', false);
    try {
      webgpu = await runAll();
    } finally {
      tf.env().set('WEBGPU_CPU_FORWARD', true);
    }
    await initBackend({ backend: 'wasm' });
  }, 240_000);

  it.each(CASES.map((c) => c.name).concat(['dit', 'router', 'mlp', 'mlp-classifier']))(
    '%s',
    (name) => {
      const ref = wasm.find((r) => r.name === name)!;
      const got = webgpu.find((r) => r.name === name)!;
      expect(got.arrays.map((a) => a.length)).toEqual(ref.arrays.map((a) => a.length));
      expect(got.arrays.length).toBeGreaterThan(0);
      const err = relativeError(got.arrays, ref.arrays);
      if (process.env.WEBGPU_OPS_REPORT) console.info(`${name}: ${err.toExponential(2)}`);
      expect(err, `${name}: relative error ${err}`).toBeLessThanOrEqual(TOLERANCE);
    },
  );
});
