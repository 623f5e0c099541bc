/**
 * Kernel gradients for `@tensorflow/tfjs-core` used alone.
 *
 * The umbrella `@tensorflow/tfjs` package registers every kernel gradient as a side effect; the
 * Node bundle of tfjs-core (what `import '@tensorflow/tfjs-core'` loads) registers none, and its
 * ES-module `register_all_gradients.js` cannot be imported by Node (extensionless imports). So
 * this module registers, on import, the gradients of the kernels our networks and losses
 * differentiate through, each only where no gradient is registered yet (a later `@tensorflow/tfjs`
 * import would simply find ours). Products, LayerNorm and GELU carry their own gradients
 * (`fast-matmul.ts`, `layers.ts`) and need none of these.
 *
 * Deliberately absent: Max/Min/Greater-style gradients (docs/machine-notes.md: broken), gather,
 * convolutions. Use `tf.losses.softmaxCrossEntropy` / `tf.logSoftmax` (custom gradients) for
 * cross-entropy.
 */
import * as tf from '@tensorflow/tfjs-core';

type Attrs = tf.NamedAttrMap;

/** Sum a broadcast gradient back to an input's shape. */
export function reduceTo(dy: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, dy.shape);
  return tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, shape);
}

/** `dy` of a reduction spread back over `x` (keepDims shape, then a broadcast multiply). */
function spread(dy: tf.Tensor, x: tf.Tensor, attrs: Attrs, scaleByCount: boolean): tf.Tensor {
  const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
  const keep = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = axes.reduce((p, a) => p * (x.shape[a] as number), 1);
  return tf.mul(tf.reshape(dy, keep), tf.fill(x.shape, scaleByCount ? 1 / n : 1));
}

function unary(
  kernelName: string,
  grad: (dy: tf.Tensor, saved: tf.Tensor) => tf.Tensor,
  save: 'x' | 'y',
): tf.GradConfig {
  return {
    kernelName,
    ...(save === 'x' ? { inputsToSave: ['x'] } : { outputsToSave: [true] }),
    gradFunc: (dy, saved) => ({ x: () => grad(dy as tf.Tensor, saved[0] as tf.Tensor) }),
  };
}

function binary(
  kernelName: string,
  da: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
  db: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const d = dy as tf.Tensor;
      return { a: () => reduceTo(da(d, a, b), a.shape), b: () => reduceTo(db(d, a, b), b.shape) };
    },
  };
}

const GRADIENTS: tf.GradConfig[] = [
  binary(
    tf.Add,
    (dy) => dy,
    (dy) => dy,
  ),
  binary(
    tf.Sub,
    (dy) => dy,
    (dy) => tf.neg(dy),
  ),
  binary(
    tf.Multiply,
    (dy, _a, b) => tf.mul(dy, tf.cast(b, 'float32')),
    (dy, a) => tf.mul(dy, tf.cast(a, 'float32')),
  ),
  binary(
    tf.RealDiv,
    (dy, _a, b) => tf.div(dy, b),
    (dy, a, b) => tf.neg(tf.div(tf.mul(dy, a), tf.square(b))),
  ),
  {
    kernelName: tf.AddN,
    saveAllInputs: true,
    gradFunc: (dy, saved) =>
      Object.fromEntries(saved.map((_, i) => [i, () => tf.clone(dy as tf.Tensor)])),
  },
  unary(tf.Neg, (dy) => tf.neg(dy), 'x'),
  unary(tf.Square, (dy, x) => tf.mul(dy, tf.mul(x, 2)), 'x'),
  unary(tf.Sqrt, (dy, y) => tf.div(dy, tf.mul(y, 2)), 'y'),
  unary(tf.Rsqrt, (dy, y) => tf.mul(dy, tf.mul(tf.mul(tf.square(y), y), -0.5)), 'y'),
  unary(tf.Exp, (dy, y) => tf.mul(dy, y), 'y'),
  unary(tf.Log, (dy, x) => tf.div(dy, x), 'x'),
  unary(tf.Abs, (dy, x) => tf.mul(dy, tf.sign(x)), 'x'),
  unary(tf.Sigmoid, (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(1, y))), 'y'),
  unary(tf.Tanh, (dy, y) => tf.mul(dy, tf.sub(1, tf.square(y))), 'y'),
  unary(tf.Relu, (dy, x) => tf.mul(dy, tf.step(x)), 'x'),
  unary(tf.Identity, (dy) => dy, 'x'),
  {
    kernelName: tf.Cast,
    gradFunc: (dy) => ({ x: () => tf.clone(dy as tf.Tensor) }),
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => ({
      x: () => spread(dy as tf.Tensor, saved[0] as tf.Tensor, attrs, true),
    }),
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => ({
      x: () => spread(dy as tf.Tensor, saved[0] as tf.Tensor, attrs, false),
    }),
  },
  {
    kernelName: tf.Reshape,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({
      x: () => tf.reshape(dy as tf.Tensor, (saved[0] as tf.Tensor).shape),
    }),
  },
  {
    kernelName: tf.Transpose,
    gradFunc: (dy, _saved, attrs) => {
      const perm = attrs.perm as number[];
      const inverse = perm.map((_, i) => perm.indexOf(i));
      return { x: () => tf.transpose(dy as tf.Tensor, inverse) };
    },
  },
  {
    kernelName: tf.Slice,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0] as tf.Tensor;
      const [begin, size] = tf.slice_util.parseSliceParams(
        x,
        attrs.begin as number | number[],
        attrs.size as number | number[],
      ) as [number[], number[]];
      const pads = x.shape.map((d, i) => [begin[i]!, d - begin[i]! - size[i]!] as [number, number]);
      return { x: () => tf.pad(dy as tf.Tensor, pads) };
    },
  },
  {
    kernelName: tf.SplitV,
    gradFunc: (dy, _saved, attrs) => ({
      x: () => tf.concat(Array.isArray(dy) ? dy : [dy], attrs.axis as number),
    }),
  },
  {
    kernelName: tf.Concat,
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const axis = tf.util.parseAxisParam(attrs.axis as number, saved[0]!.shape)[0]!;
      const sizes = saved.map((t) => t.shape[axis] as number);
      const parts = tf.split(dy as tf.Tensor, sizes, axis);
      return Object.fromEntries(parts.map((p, i) => [i, () => p]));
    },
  },
  {
    kernelName: tf.Pack,
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const parts = tf.unstack(dy as tf.Tensor, attrs.axis as number);
      return Object.fromEntries(saved.map((_, i) => [i, () => parts[i]!]));
    },
  },
  {
    kernelName: tf.Unpack,
    gradFunc: (dy, _saved, attrs) => ({
      value: () => tf.stack(Array.isArray(dy) ? dy : [dy], attrs.axis as number),
    }),
  },
  {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const y = saved[0] as tf.Tensor;
      const d = dy as tf.Tensor;
      const dim = attrs.dim as number;
      return { logits: () => tf.mul(y, tf.sub(d, tf.sum(tf.mul(d, y), dim, true))) };
    },
  },
  {
    kernelName: tf.Tile,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      // dy viewed as [r0, s0, r1, s1, ...]; sum over the repetition axes.
      const x = saved[0] as tf.Tensor;
      const reps = attrs.reps as number[];
      const interleaved = x.shape.flatMap((d, i) => [reps[i]!, d]);
      const repAxes = x.shape.map((_, i) => 2 * i);
      return {
        x: () => tf.reshape(tf.sum(tf.reshape(dy as tf.Tensor, interleaved), repAxes), x.shape),
      };
    },
  },
  {
    kernelName: tf.BroadcastTo,
    gradFunc: (dy, _saved, attrs) => ({
      x: () => reduceTo(dy as tf.Tensor, attrs.inputShape as number[]),
    }),
  },
];

for (const config of GRADIENTS) {
  if (tf.getGradient(config.kernelName) == null) tf.registerGradient(config);
}

/** Kernels this module provides gradients for (registered unless another module did first). */
export const REGISTERED_GRADIENT_KERNELS: readonly string[] = GRADIENTS.map((g) => g.kernelName);
