/**
 * Trains the router of docs/method.md section 5: a classifier r(x_t, tau) -> logits over the K data
 * clusters, by cross-entropy on flow-matching-path noised samples.
 *
 * The caller passes clean batches drawn from the union of all shards in their natural proportions
 * (so the cross-entropy minimiser is the true posterior p(k | x_t, t), prior included) with each
 * sample's cluster id. Each step draws t ~ U(0, 1) and e ~ N(0, I) from `(seed, step)`, forms
 * `x_t = (1 - t) x0 + t e`, `tau = 999 t`, and takes an Adam step on the mean cross-entropy, in
 * the calling thread or data-parallel over worker threads (the same machinery as the experts).
 *
 * A class-conditional router (`numClasses` > 0 in its config) also gets each sample's class; the
 * caller replaces a fraction of them by the null class (`numClasses`), as for the experts'
 * classifier-free guidance, so one network gives p(k | x_t, c) and p(k | x_t).
 */
import { createObjective, deriveSeed, type Objective, type Router } from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';
import type { CheckpointMeta } from '../checkpoint/index.js';
import { routerClasses } from '../nn/router.js';
import type { TrainerSaveOptions, TrainStepResult } from './expert-trainer.js';
import type { StepBatch } from './losses.js';
import {
  inputShapeOf,
  ROUTER_NETWORK_KINDS,
  type RouterNetworkSpec,
  resolveNetworkSpec,
} from './networks.js';
import { DataParallelTrainer } from './parallel/data-parallel-trainer.js';
import { disposeBatch } from './parallel/host-batch.js';
import type { OptimizerOptions } from './parallel/messages.js';
import { loadInit, saveTrained } from './trainer-checkpoint.js';
import { type BatchInput, batchTensor, type LabelInput, labelTensor } from './training-input.js';

export interface RouterTrainerOptions {
  network: RouterNetworkSpec;
  optimizer: OptimizerOptions;
  /** Seed of the initial parameters and of every step's noise and times. */
  seed: number;
  /** Data-parallel worker threads; default 1 (the calling thread, no workers). */
  threads?: number;
  /** A router checkpoint of the same architecture to resume from. */
  init?: Uint8Array;
}

/** Held-out accuracy by noise level. */
export interface RouterEvaluation {
  /** Accuracy of the argmax in each t bin `[i / bins, (i + 1) / bins)`; NaN for an empty bin. */
  accuracy: number[];
  /** Samples per bin. */
  counts: number[];
  /** Mean cross-entropy over all samples. */
  loss: number;
}

/** What a step or an evaluation may add to the images and their clusters. */
export interface RouterStepOptions {
  /** `[B]` classes in 0..numClasses (numClasses = null class): class-conditional routers only. */
  labels?: LabelInput;
  /** Overrides the noise seed, by default derived from `(seed, step)` (steps only). */
  stepSeed?: number;
}

/** Rows per forward pass in {@link RouterTrainer.evaluate}. */
const EVAL_CHUNK = 512;

export class RouterTrainer {
  private stepsTaken: number;
  /** FM noising with uniform t: the router's training distribution. */
  private readonly path: Objective = createObjective({
    name: 'fm',
    timeSampling: { kind: 'uniform' },
  });

  private constructor(
    private readonly engine: DataParallelTrainer,
    private readonly options: RouterTrainerOptions,
    private readonly init: CheckpointMeta | undefined,
  ) {
    this.stepsTaken = init?.step ?? 0;
  }

  static async create(options: RouterTrainerOptions): Promise<RouterTrainer> {
    const network = resolveNetworkSpec(options.network, ROUTER_NETWORK_KINDS);
    const init = options.init ? loadInit(options.init, 'router', network) : undefined;
    const engine = await DataParallelTrainer.create({
      network,
      task: { kind: 'classification' },
      optimizer: options.optimizer,
      seed: options.seed,
      ...(options.threads === undefined ? {} : { threads: options.threads }),
      ...(init ? { initParams: init.params } : {}),
    });
    return new RouterTrainer(engine, { ...options, network }, init?.meta);
  }

  /** K, the number of clusters. */
  get numClusters(): number {
    return (this.engine.network.spec as RouterNetworkSpec).config.numClusters;
  }

  /** Classes the router is conditioned on (0: unconditional; an MLP classifier is). */
  get numClasses(): number {
    const { config } = this.engine.network.spec as RouterNetworkSpec;
    return 'numClasses' in config ? routerClasses(config) : 0;
  }

  get stepCount(): number {
    return this.stepsTaken;
  }

  get threads(): number {
    return this.engine.threads;
  }

  get learningRate(): number {
    return this.engine.learningRate;
  }

  set learningRate(value: number) {
    this.engine.learningRate = value;
  }

  /**
   * One step of cross-entropy training.
   * @param x0 `[B, ...]` clean samples from the union of the shards
   * @param clusters `[B]` cluster ids in [0, K)
   * @param options each sample's class (class-conditional routers) and a noise seed
   */
  async step(
    x0: BatchInput,
    clusters: LabelInput,
    options: RouterStepOptions = {},
  ): Promise<TrainStepResult> {
    const start = performance.now();
    const batch = this.noised(
      x0,
      clusters,
      options.stepSeed ?? deriveSeed(this.options.seed, this.stepsTaken),
      options.labels,
    );
    const rows = batch.x.shape[0] as number;
    let loss: number;
    try {
      loss = await this.engine.step(batch);
    } finally {
      disposeBatch(batch);
    }
    this.stepsTaken += 1;
    return {
      loss,
      imagesPerSec: rows / ((performance.now() - start) / 1000),
      step: this.stepsTaken,
    };
  }

  /**
   * Held-out accuracy per noise level: noises `x0` with `seed` (t ~ U(0, 1)), classifies each
   * x_t by the argmax of the logits, and bins the samples by t into `bins` equal bins. A
   * class-conditional router is given `labels` (the null class for every row when omitted).
   */
  evaluate(
    x0: BatchInput,
    clusters: LabelInput,
    seed: number,
    bins = 10,
    labels?: LabelInput,
  ): RouterEvaluation {
    if (!(Number.isInteger(bins) && bins >= 1)) {
      throw new RangeError(`bins must be a positive integer, got ${bins}`);
    }
    const batch = this.noised(x0, clusters, seed, labels);
    try {
      const rows = batch.x.shape[0] as number;
      const tau = batch.tau.dataSync();
      const truth = batch.classes!.dataSync();
      const correct = new Array<number>(bins).fill(0);
      const counts = new Array<number>(bins).fill(0);
      let nll = 0;
      for (let start = 0; start < rows; start += EVAL_CHUNK) {
        const n = Math.min(EVAL_CHUNK, rows - start);
        const [predicted, logp] = tf.tidy(() => {
          const x = tf.slice(batch.x, start, n);
          const logits = this.engine.network.apply(
            x,
            tf.slice(batch.tau, start, n),
            batch.labels ? tf.slice(batch.labels, start, n) : undefined,
          ); //                                                                     [n, K]
          // Compared with a range rather than tf.oneHot, which refuses K = 1 (a monolith).
          const onehot = tf.equal(
            tf.reshape(tf.cast(tf.slice(batch.classes!, start, n), 'int32'), [-1, 1]),
            tf.range(0, this.numClusters, 1, 'int32'),
          ); //                                                                     [n, K]
          const picked = tf.sum(tf.mul(tf.logSoftmax(logits), tf.cast(onehot, 'float32')), 1); // [n]
          return [tf.argMax(logits, 1).dataSync(), picked.dataSync()];
        });
        for (let i = 0; i < n; i++) {
          const b = Math.min(Math.floor((tau[start + i]! / 999) * bins), bins - 1);
          counts[b]! += 1;
          if (predicted[i] === truth[start + i]) correct[b]! += 1;
          nll -= logp[i]!;
        }
      }
      return {
        accuracy: correct.map((c, i) => (counts[i]! > 0 ? c / counts[i]! : Number.NaN)),
        counts,
        loss: nll / rows,
      };
    } finally {
      disposeBatch(batch);
    }
  }

  /**
   * The trained router as the diffusion package's {@link Router}: p(k | x_t, t), `[B, K]`, or for
   * a class-conditional router p(k | x_t, c) given the rows' labels (null class: p(k | x_t)).
   */
  router(): Router {
    const conditional = this.numClasses > 0;
    return (x, t, labels) =>
      tf.tidy(
        () =>
          tf.softmax(
            this.engine.network.apply(x, tf.mul(t, 999), conditional ? labels : undefined),
          ) as tf.Tensor2D,
      );
  }

  /** The main thread's parameters by name (live variables, owned by the trainer). */
  getParams(): Map<string, tf.Variable> {
    return this.engine.network.params;
  }

  /** Every replica's parameters (main thread first). */
  replicaParams(): Promise<Record<string, Float32Array>[]> {
    return this.engine.replicaParams();
  }

  /** A checkpoint of kind 'router'. */
  save(options: TrainerSaveOptions = {}): Promise<Uint8Array> {
    return saveTrained({
      kind: 'router',
      spec: this.engine.network.spec,
      params: this.engine.network.params,
      step: this.stepsTaken,
      optimizer: this.options.optimizer,
      seed: this.options.seed,
      ...(this.init ? { init: this.init } : {}),
      ...options,
    });
  }

  dispose(): Promise<void> {
    return this.engine.dispose();
  }

  private noised(
    x0: BatchInput,
    clusters: LabelInput,
    seed: number,
    labelInput?: LabelInput,
  ): StepBatch {
    if (labelInput !== undefined && this.numClasses === 0)
      throw new Error('labels given to an unconditional router');
    const x = batchTensor(x0, inputShapeOf(this.engine.network.spec), 'x0');
    let classes: tf.Tensor1D | undefined;
    let labels: tf.Tensor1D | undefined;
    try {
      const rows = x.shape[0] as number;
      classes = labelTensor(clusters, rows, 'clusters', this.numClusters);
      // Labels 0..numClasses, the last the null class; none given: every row unconditional.
      if (this.numClasses > 0)
        labels =
          labelInput === undefined
            ? (tf.fill([rows], this.numClasses, 'int32') as tf.Tensor1D)
            : labelTensor(labelInput, rows, 'labels', this.numClasses + 1);
      const { xt, tau, target } = this.path.sampleTraining(x, seed);
      target.dispose();
      return { x: xt, tau, classes, ...(labels ? { labels } : {}) };
    } catch (err) {
      classes?.dispose();
      labels?.dispose();
      throw err;
    } finally {
      x.dispose();
    }
  }
}
