/**
 * The metric's classifier: an MLP `D -> 256 -> 128 -> classes` with ReLU, trained on the dataset
 * itself (no Inception or VGG weights exist here, nor a standard MNIST extractor). Its 128
 * penultimate activations are the feature space of FD-cls, precision/recall and diversity.
 *
 * An MLP, not a CNN: the WebAssembly backend has no convolution gradients. Initialisation (He
 * normal) and batch order come from `@archipelago/random` streams derived from the seed, so a
 * seed gives the same weights on the same backend.
 *
 * Parameters are stored `[in, out]` as everywhere in `@archipelago/models`; the binary form is
 * their float32 values, little-endian, concatenated in {@link MlpClassifier.paramShapes} order.
 */
import type { ImageSet } from '@archipelago/data';
import { createTrainer, linear } from '@archipelago/models';
import { createRng, deriveSeed, shuffleInPlace } from '@archipelago/random';
import * as tf from '@tensorflow/tfjs-core';
import { grayFloats, type Images } from './images.js';

/** Serialisable config; equal to the constructor's arguments. */
export interface ClassifierConfig {
  /** Input height and width (one gray channel). */
  height: number;
  width: number;
  /** Hidden widths; the last is the feature dimension. */
  hidden: number[];
  classes: number;
}

/** The default widths: 256 then 128 features. */
export const DEFAULT_HIDDEN = [256, 128];

/** Images per forward pass when extracting features or logits. */
const EVAL_BATCH = 500;

/**
 * ReLU with its own gradient (`dy * step(y)`): the tfjs-core Node bundle registers no kernel
 * gradients and `@archipelago/models` registers none for Relu.
 */
const relu = tf.customGrad(((...args) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const y = tf.relu(x);
  save([y]);
  return { value: y, gradFunc: (dy, [saved]) => tf.mul(dy, tf.step(saved!)) };
}) as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

export class MlpClassifier {
  readonly params = new Map<string, tf.Variable>();

  constructor(readonly config: ClassifierConfig) {
    const { height, width, hidden, classes } = config;
    if (![height, width, classes, ...hidden].every((v) => Number.isInteger(v) && v >= 1))
      throw new RangeError(`classifier config needs positive integers: ${JSON.stringify(config)}`);
    if (hidden.length === 0) throw new RangeError('classifier needs at least one hidden layer');
    for (const [name, shape] of this.paramShapes())
      this.params.set(
        name,
        tf.tidy(() => tf.variable(tf.zeros(shape), true)),
      );
  }

  /** Parameter names and shapes, in storage order: `layers.<i>.weight [in, out]`, `.bias [out]`. */
  paramShapes(): [string, number[]][] {
    const dims = [
      this.config.height * this.config.width,
      ...this.config.hidden,
      this.config.classes,
    ];
    const out: [string, number[]][] = [];
    for (let i = 0; i + 1 < dims.length; i++) {
      out.push([`layers.${i}.weight`, [dims[i]!, dims[i + 1]!]]);
      out.push([`layers.${i}.bias`, [dims[i + 1]!]]);
    }
    return out;
  }

  /** He-normal weights (std sqrt(2 / fan_in)), zero biases; one stream per parameter. */
  initialize(seed: number): void {
    for (const [name, shape] of this.paramShapes()) {
      const size = shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(size);
      if (name.endsWith('.weight')) {
        const rng = createRng(deriveSeed(seed, 'metric-classifier', name));
        const std = Math.sqrt(2 / shape[0]!);
        for (let i = 0; i < size; i++) values[i] = rng.normal() * std;
      }
      this.params.get(name)!.assign(tf.tensor(values, shape));
    }
  }

  /** `x [B, D]` in [0, 1] -> `{features [B, F], logits [B, classes]}`. */
  forward(x: tf.Tensor2D): { features: tf.Tensor2D; logits: tf.Tensor2D } {
    const layers = this.config.hidden.length + 1;
    let h = x;
    let features = x;
    for (let i = 0; i < layers; i++) {
      const w = this.params.get(`layers.${i}.weight`)!;
      const b = this.params.get(`layers.${i}.bias`)!;
      const z = linear(h, w, b) as tf.Tensor2D; // [B, dims[i + 1]]
      if (i + 1 < layers) {
        h = relu(z) as tf.Tensor2D;
        features = h;
      } else h = z;
    }
    return { features, logits: h };
  }

  /** Penultimate-layer features `[N, F]` of `images` (resolution must match). */
  features(images: Images): { data: Float32Array; count: number; dim: number } {
    return this.evaluate(images, 'features');
  }

  /** The predicted class of each image. */
  predict(images: Images): Int32Array {
    const { data, count, dim } = this.evaluate(images, 'logits');
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      let best = 0;
      for (let c = 1; c < dim; c++) if (data[i * dim + c]! > data[i * dim + best]!) best = c;
      out[i] = best;
    }
    return out;
  }

  /** Fraction of `set`'s labels predicted right. */
  accuracy(set: ImageSet): number {
    const predicted = this.predict(set);
    let right = 0;
    for (let i = 0; i < set.count; i++) if (predicted[i] === set.labels[i]) right++;
    return right / set.count;
  }

  private evaluate(images: Images, which: 'features' | 'logits') {
    const { height, width } = this.config;
    if (images.height !== height || images.width !== width)
      throw new RangeError(
        `classifier is for ${height}x${width} images, got ${images.height}x${images.width}`,
      );
    const x = grayFloats(images);
    const size = height * width;
    const dim = which === 'features' ? this.config.hidden.at(-1)! : this.config.classes;
    const data = new Float32Array(images.count * dim);
    for (let start = 0; start < images.count; start += EVAL_BATCH) {
      const n = Math.min(EVAL_BATCH, images.count - start);
      const out = tf.tidy(() => {
        const batch = tf.tensor2d(x.subarray(start * size, (start + n) * size), [n, size]);
        return this.forward(batch)[which];
      });
      data.set(out.dataSync() as Float32Array, start * dim);
      out.dispose();
    }
    return { data, count: images.count, dim };
  }

  /** The parameters as little-endian float32 bytes in {@link paramShapes} order. */
  toBytes(): Uint8Array {
    const parts = this.paramShapes().map(([name]) => this.params.get(name)!.dataSync());
    const total = parts.reduce((a, p) => a + p.length, 0);
    const out = new Float32Array(total);
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return new Uint8Array(out.buffer);
  }

  /** A classifier holding the parameters of {@link toBytes}. */
  static fromBytes(config: ClassifierConfig, bytes: Uint8Array): MlpClassifier {
    const net = new MlpClassifier(config);
    const expected = net.paramShapes().reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
    if (bytes.byteLength !== expected * 4)
      throw new RangeError(
        `classifier weights: ${bytes.byteLength} bytes, expected ${expected * 4}`,
      );
    const values = new Float32Array(bytes.slice().buffer);
    let offset = 0;
    for (const [name, shape] of net.paramShapes()) {
      const size = shape.reduce((a, b) => a * b, 1);
      net.params.get(name)!.assign(tf.tensor(values.subarray(offset, offset + size), shape));
      offset += size;
    }
    return net;
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
  }
}

export interface TrainClassifierOptions {
  seed: number;
  /** Passes over the training set; default 10. */
  epochs?: number;
  /** Stop after this many optimiser steps (tests); default no limit. */
  maxSteps?: number;
  /** Default 64. */
  batchSize?: number;
  /** Adam's peak learning rate, cosine-decayed to 0 over the run; default 1e-3. */
  learningRate?: number;
  hidden?: number[];
}

/**
 * Train an {@link MlpClassifier} on `train` (labelled) with Adam and softmax cross-entropy.
 * Batches are drawn from a shuffle seeded per epoch. Deterministic for a seed and backend.
 */
export function trainClassifier(train: ImageSet, options: TrainClassifierOptions): MlpClassifier {
  const epochs = options.epochs ?? 10;
  const batchSize = options.batchSize ?? 64;
  const peak = options.learningRate ?? 1e-3;
  const classes = train.classNames.length;
  if (classes < 2) throw new RangeError('trainClassifier needs a labelled set with >= 2 classes');
  const net = new MlpClassifier({
    height: train.height,
    width: train.width,
    hidden: options.hidden ?? DEFAULT_HIDDEN,
    classes,
  });
  net.initialize(options.seed);
  const x = grayFloats(train);
  const size = train.height * train.width;
  const stepsPerEpoch = Math.floor(train.count / batchSize);
  const totalSteps = Math.min(epochs * stepsPerEpoch, options.maxSteps ?? Number.POSITIVE_INFINITY);
  const trainer = createTrainer({ params: net.params, learningRate: peak });
  const batchX = new Float32Array(batchSize * size);
  const batchY = new Int32Array(batchSize);
  let step = 0;
  try {
    for (let epoch = 0; epoch < epochs && step < totalSteps; epoch++) {
      const order = Int32Array.from({ length: train.count }, (_, i) => i);
      shuffleInPlace(order, createRng(deriveSeed(options.seed, 'metric-batches', epoch)));
      for (let b = 0; b < stepsPerEpoch && step < totalSteps; b++, step++) {
        for (let i = 0; i < batchSize; i++) {
          const j = order[b * batchSize + i]!;
          batchX.set(x.subarray(j * size, (j + 1) * size), i * size);
          batchY[i] = train.labels[j]!;
        }
        trainer.learningRate = Math.max(
          (peak * (1 + Math.cos((Math.PI * step) / totalSteps))) / 2,
          peak * 1e-3,
        );
        trainer.step(() =>
          tf.tidy(() => {
            const logits = net.forward(tf.tensor2d(batchX, [batchSize, size])).logits;
            const onehot = tf.oneHot(tf.tensor1d(batchY, 'int32'), classes);
            return tf.losses.softmaxCrossEntropy(onehot, logits) as tf.Scalar;
          }),
        );
      }
    }
  } finally {
    trainer.dispose();
  }
  return net;
}
