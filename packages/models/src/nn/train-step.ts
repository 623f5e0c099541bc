/**
 * A backend-agnostic training step for any model whose parameters are a `Map<string, tf.Variable>`.
 *
 * Optimiser: Adam with decoupled weight decay (AdamW, Loshchilov & Hutter, arXiv 1711.05101), as
 * PyTorch's `torch.optim.AdamW`: `p <- p (1 - lr wd)`, then the Adam step
 * `p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`. With `weightDecay = 0` (the
 * default, and DiT's setting) it is exactly `torch.optim.Adam`. Written by hand rather than with
 * `tf.train.adam` so that the decay is decoupled, the learning rate can change between steps
 * (warm-up, schedules), and the moments are named variables a checkpoint can save.
 *
 * `computeGradients` / `applyGradients` are split so a data-parallel trainer can average the
 * gradients of several workers before applying them; `applyGradients` clips the gradient it is
 * given (the average) by global L2 norm when `gradClip` is set.
 */
import * as tf from '@tensorflow/tfjs-core';
import './gradients.js';

export interface TrainerOptions {
  /** The model's parameters; only trainable variables are optimised. */
  params: Map<string, tf.Variable>;
  learningRate: number;
  /** Adam's (beta1, beta2); default (0.9, 0.999). */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (AdamW); default 0 (plain Adam). Applied to every trainable tensor. */
  weightDecay?: number;
  /** Clip the global L2 norm of the gradient to this value; default off. */
  gradClip?: number;
}

export interface Gradients {
  /** The loss value the gradients belong to. */
  loss: number;
  /** One gradient per trainable parameter name (zeros where the loss does not depend on it). */
  grads: Map<string, tf.Tensor>;
}

/**
 * Adam's state to start from instead of zero moments at step 0 (an exact resume): its step count
 * `t` (bias correction continues from it) and both moments of every trainable parameter, by name.
 */
export interface TrainerState {
  step: number;
  expAvg: Record<string, { shape: readonly number[]; data: Float32Array }>;
  expAvgSq: Record<string, { shape: readonly number[]; data: Float32Array }>;
}

export interface Trainer {
  /** Current learning rate; may be changed between steps. */
  learningRate: number;
  /** Optimiser steps applied so far (Adam's t). */
  readonly stepCount: number;
  /** Adam moments by parameter name (PyTorch's `exp_avg`, `exp_avg_sq`), for checkpoints. */
  readonly state: { expAvg: Map<string, tf.Variable>; expAvgSq: Map<string, tf.Variable> };
  /** One step: gradients of `lossFn`, then the update. Returns the loss. */
  step(lossFn: () => tf.Scalar): number;
  /**
   * {@link step} reading the loss with `await data()`: the same numbers, on every backend (webgpu
   * cannot read synchronously in Node).
   */
  stepAsync(lossFn: () => tf.Scalar): Promise<number>;
  /** Gradients of `lossFn` w.r.t. the trainable parameters. The caller disposes them. */
  computeGradients(lossFn: () => tf.Scalar): Gradients;
  /** Clip (if configured) and apply a gradient, e.g. an average over workers. Does not dispose it. */
  applyGradients(grads: Map<string, tf.Tensor>): void;
  /** Free the optimiser state (not the parameters). */
  dispose(): void;
}

export function createTrainer(options: TrainerOptions, initial?: TrainerState): Trainer {
  const [beta1, beta2] = options.betas ?? [0.9, 0.999];
  const eps = options.eps ?? 1e-8;
  const weightDecay = options.weightDecay ?? 0;
  const gradClip = options.gradClip ?? 0;
  if (!(options.learningRate > 0)) {
    throw new Error(`learningRate must be > 0, got ${options.learningRate}`);
  }
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) {
    throw new Error(`betas must be in [0, 1), got ${beta1}, ${beta2}`);
  }
  if (weightDecay < 0 || gradClip < 0) throw new Error('weightDecay and gradClip must be >= 0');

  const trainable = [...options.params].filter(([, v]) => v.trainable);
  if (trainable.length === 0) throw new Error('createTrainer: no trainable parameters');
  const expAvg = new Map<string, tf.Variable>();
  const expAvgSq = new Map<string, tf.Variable>();
  if (initial && !(Number.isInteger(initial.step) && initial.step >= 0)) {
    throw new Error(`initial Adam step must be an integer >= 0, got ${initial.step}`);
  }
  const moment = (
    values: TrainerState['expAvg'] | undefined,
    which: string,
    name: string,
    v: tf.Variable,
  ): tf.Variable => {
    const value = values?.[name];
    if (values && !value) throw new Error(`initial Adam state: no ${which} for "${name}"`);
    if (value && value.shape.join() !== v.shape.join()) {
      throw new Error(
        `initial Adam state: ${which} of "${name}" has shape [${value.shape}], parameter [${v.shape}]`,
      );
    }
    // tf.variable keeps its own reference to the data: the tensor itself can go.
    const t = value ? tf.tensor(value.data, [...value.shape], 'float32') : tf.zerosLike(v);
    const out = tf.variable(t, false);
    t.dispose();
    return out;
  };
  for (const [name, v] of trainable) {
    expAvg.set(name, moment(initial?.expAvg, 'exp_avg', name, v));
    expAvgSq.set(name, moment(initial?.expAvgSq, 'exp_avg_sq', name, v));
  }

  let t = initial?.step ?? 0;
  /** The loss (a tensor, read by the caller) and one gradient per trainable parameter. */
  const gradientsOf = (lossFn: () => tf.Scalar) => {
    const vars = trainable.map(([, v]) => v);
    const { value, grads } = tf.variableGrads(lossFn, vars);
    const out = new Map<string, tf.Tensor>();
    for (const [name, v] of trainable) out.set(name, grads[v.name] ?? tf.zerosLike(v));
    return { value, grads: out };
  };
  const trainer: Trainer = {
    learningRate: options.learningRate,
    get stepCount() {
      return t;
    },
    state: { expAvg, expAvgSq },

    computeGradients(lossFn) {
      const { value, grads } = gradientsOf(lossFn);
      const loss = (value.dataSync() as Float32Array)[0] as number;
      value.dispose();
      return { loss, grads };
    },

    applyGradients(grads) {
      for (const [name] of trainable) {
        if (!grads.has(name)) throw new Error(`applyGradients: no gradient for "${name}"`);
      }
      t += 1;
      const lr = trainer.learningRate;
      const bc1 = 1 - beta1 ** t;
      const bc2 = 1 - beta2 ** t;
      tf.tidy(() => {
        let factor: tf.Tensor | null = null;
        if (gradClip > 0) {
          const sq = trainable.map(([name]) => tf.sum(tf.square(grads.get(name)!)));
          const norm = tf.sqrt(tf.addN(sq));
          factor = tf.div(gradClip, tf.maximum(norm, gradClip)); // min(1, clip / norm)
        }
        for (const [name, p] of trainable) {
          const g = factor ? tf.mul(grads.get(name)!, factor) : grads.get(name)!;
          const m = expAvg.get(name)!;
          const v = expAvgSq.get(name)!;
          m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
          v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
          const denom = tf.add(tf.mul(tf.sqrt(v), 1 / Math.sqrt(bc2)), eps);
          const decayed = weightDecay > 0 ? tf.mul(p, 1 - lr * weightDecay) : p;
          p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
        }
      });
    },

    step(lossFn) {
      const { loss, grads } = trainer.computeGradients(lossFn);
      try {
        trainer.applyGradients(grads);
      } finally {
        for (const g of grads.values()) g.dispose();
      }
      return loss;
    },

    async stepAsync(lossFn) {
      const { value, grads } = gradientsOf(lossFn);
      try {
        const loss = (await value.data())[0] as number;
        trainer.applyGradients(grads);
        return loss;
      } finally {
        value.dispose();
        for (const g of grads.values()) g.dispose();
      }
    },

    dispose() {
      for (const m of [expAvg, expAvgSq]) {
        for (const v of m.values()) v.dispose();
        m.clear();
      }
    },
  };
  return trainer;
}
