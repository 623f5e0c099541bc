/**
 * Trains one expert (docs/method.md section 3) on its data shard: the API a worker process drives.
 *
 * Each step noises the caller's clean batch x0 with the objective (`sampleTraining`, seeded by
 * `(seed, step)` so a resumed run draws exactly the noise and times it would have drawn), and
 * takes one Adam step on the mean loss, in the calling thread or data-parallel over worker
 * threads (see {@link DataParallelTrainer}). `saveResumable` writes a checkpoint and its optimiser
 * state (Adam's moments and step, the live weights), from which a new trainer continues exactly
 * (bit for bit with the same thread count). Class-conditional DiTs take labels; for
 * classifier-free guidance the caller replaces a fraction of them by the null class.
 */
import {
  createObjective,
  deriveSeed,
  type Network,
  type Objective,
  type ObjectiveConfig,
} from '@archipelago/diffusion';
import type * as tf from '@tensorflow/tfjs-core';
import { add, mul, tensor, tidy, variable } from '@tensorflow/tfjs-core';
import {
  type CheckpointMeta,
  type CheckpointParam,
  checkpointSha256,
  encodeOptimizerState,
  loadOptimizerState,
} from '../checkpoint/index.js';
import type { StepBatch } from './losses.js';
import {
  EXPERT_NETWORK_KINDS,
  type ExpertNetworkSpec,
  inputShapeOf,
  paramShapesOf,
  resolveNetworkSpec,
} from './networks.js';
import { DataParallelTrainer } from './parallel/data-parallel-trainer.js';
import { disposeBatch } from './parallel/host-batch.js';
import type { OptimizerOptions } from './parallel/messages.js';
import { loadInit, saveTrained } from './trainer-checkpoint.js';
import { type BatchInput, batchTensor, type LabelInput, labelTensor } from './training-input.js';

export interface ExpertTrainerOptions {
  network: ExpertNetworkSpec;
  objective: ObjectiveConfig;
  optimizer: OptimizerOptions;
  /** Seed of the initial parameters and of every step's noise and times. */
  seed: number;
  /** Data-parallel worker threads; default 1 (the calling thread, no workers). */
  threads?: number;
  /**
   * Checkpoint to start from: an expert of the same architecture and objective, e.g. a run to
   * resume (its step count continues) or an FM init converted from a DDPM expert.
   */
  init?: Uint8Array;
  /**
   * The optimiser state saved with `init` ({@link ExpertTrainer.saveResumable}): the live weights,
   * Adam's moments and step count. With it training continues exactly as if it had never stopped;
   * without it, from `init`'s weights with fresh moments (a warm restart). It must name `init` by
   * sha256 and step ({@link CheckpointError} otherwise).
   */
  optimizerState?: Uint8Array;
  /**
   * Keep an exponential moving average of the weights and save it instead of the raw weights
   * (what diffusion models sample with). Step t uses decay `min(decay, (1 + t) / (10 + t))`, so
   * short runs average over their recent steps and long ones over ~1 / (1 - decay) steps. A
   * checkpoint holds the average; its optimiser state holds the raw weights.
   */
  ema?: { decay: number };
}

/** A checkpoint and the optimiser state that continues it exactly. */
export interface ResumableSave {
  checkpoint: Uint8Array;
  /** sha256 (hex) of `checkpoint`, which `optimizer` names. */
  sha256: string;
  optimizer: Uint8Array;
}

export interface TrainStepResult {
  /** Mean loss of the batch, before the update. */
  loss: number;
  /** Samples per second of this step (wall time: noising, gradients, update). */
  imagesPerSec: number;
  /** Steps taken so far, including those of the checkpoint resumed from. */
  step: number;
}

/** What a checkpoint records beyond the trainer's own state. */
export interface TrainerSaveOptions {
  /** sha256 (hex) of the training shard. */
  dataFingerprint?: string;
  /** Default: now. */
  createdAt?: string;
}

export class ExpertTrainer {
  private stepsTaken: number;
  /** EMA of every parameter (main thread), when enabled. */
  private readonly ema: Map<string, tf.Variable> | null;

  private constructor(
    private readonly engine: DataParallelTrainer,
    /** The objective, with its config's defaults filled in. */
    readonly objective: Objective,
    private readonly options: ExpertTrainerOptions,
    private readonly init: CheckpointMeta | undefined,
    /** The EMA to start from (a checkpoint's weights resumed with its optimiser state). */
    emaInit?: Record<string, CheckpointParam>,
  ) {
    this.stepsTaken = init?.step ?? 0;
    const decay = options.ema?.decay;
    if (decay !== undefined && !(decay > 0 && decay < 1)) {
      throw new RangeError(`ema decay must be in (0, 1), got ${decay}`);
    }
    this.ema =
      decay === undefined
        ? null
        : new Map(
            [...engine.network.params].map(([name, v]) => {
              const start = emaInit?.[name];
              if (!start) return [name, tfVariable(v, `ema/${name}`)];
              return [name, variableOf(start, `ema/${name}`)];
            }),
          );
  }

  static async create(options: ExpertTrainerOptions): Promise<ExpertTrainer> {
    const network = resolveNetworkSpec(options.network, EXPERT_NETWORK_KINDS);
    const objective = createObjective(options.objective);
    const init = options.init
      ? loadInit(options.init, 'expert', network, objective.config)
      : undefined;
    if (options.optimizerState && !options.init)
      throw new Error('an optimizer state continues a checkpoint: give its init too');
    const state =
      options.optimizerState && options.init && init
        ? loadOptimizerState(options.optimizerState, paramShapesOf(network), {
            checkpoint: checkpointSha256(options.init),
            step: init.meta.step,
          })
        : undefined;
    const engine = await DataParallelTrainer.create({
      network,
      task: { kind: 'regression', objective: objective.config },
      optimizer: options.optimizer,
      seed: options.seed,
      ...(options.threads === undefined ? {} : { threads: options.threads }),
      ...(state ? { initParams: state.params } : init ? { initParams: init.params } : {}),
      ...(state
        ? {
            initOptimizer: {
              step: state.meta.adamStep,
              expAvg: state.expAvg,
              expAvgSq: state.expAvgSq,
            },
          }
        : {}),
    });
    return new ExpertTrainer(
      engine,
      objective,
      { ...options, network, objective: objective.config },
      init?.meta,
      // An EMA trainer's checkpoint holds the average: it goes on from there.
      state && init ? init.params : undefined,
    );
  }

  /** Steps taken so far (a resumed run continues the checkpoint's count). */
  get stepCount(): number {
    return this.stepsTaken;
  }

  get threads(): number {
    return this.engine.threads;
  }

  /** The learning rate of the next step; may be changed between steps. */
  get learningRate(): number {
    return this.engine.learningRate;
  }

  set learningRate(value: number) {
    this.engine.learningRate = value;
  }

  /**
   * One training step on a clean batch.
   * @param x0 `[B, ...]` data in [-1, 1] (the network's input shape)
   * @param labels `[B]` class labels (class-conditional DiT; the null class = numClasses)
   * @param stepSeed overrides the noise seed, by default derived from `(seed, step)`
   */
  async step(x0: BatchInput, labels?: LabelInput, stepSeed?: number): Promise<TrainStepResult> {
    const start = performance.now();
    const seed = stepSeed ?? deriveSeed(this.options.seed, this.stepsTaken);
    const batch = this.noised(x0, labels, seed);
    let loss: number;
    try {
      loss = await this.engine.step(batch);
    } finally {
      disposeBatch(batch);
    }
    this.stepsTaken += 1;
    if (this.ema) {
      const t = this.stepsTaken;
      const d = Math.min(this.options.ema!.decay, (1 + t) / (10 + t));
      const params = this.engine.network.params;
      tidy(() => {
        for (const [name, avg] of this.ema!) {
          avg.assign(add(mul(avg, d), mul(params.get(name)!, 1 - d)));
        }
      });
    }
    const seconds = (performance.now() - start) / 1000;
    const rows = batch.x.shape[0] as number;
    return { loss, imagesPerSec: rows / seconds, step: this.stepsTaken };
  }

  /** The objective's mean loss on a (held-out) batch noised with `seed`; no update. */
  evalLoss(x0: BatchInput, seed: number, labels?: LabelInput): number {
    const batch = this.noised(x0, labels, seed);
    try {
      return this.engine.evalLoss(batch);
    } finally {
      disposeBatch(batch);
    }
  }

  /**
   * The trained network as the diffusion package's {@link Network} (`net(x, tau, labels)`):
   * epsilon for a DDPM expert, velocity for an FM expert; wrap it with `velocityExpert` to sample.
   */
  network(): Network {
    return (x, tau, labels) => this.engine.network.apply(x, tau, labels);
  }

  /** The main thread's parameters by name (live variables, owned by the trainer). */
  getParams(): Map<string, tf.Variable> {
    return this.engine.network.params;
  }

  /** Every replica's parameters (main thread first), to check that data-parallel replicas agree. */
  replicaParams(): Promise<Record<string, Float32Array>[]> {
    return this.engine.replicaParams();
  }

  /** The weights a checkpoint holds: the EMA when enabled, else the live parameters. */
  savedParams(): Map<string, tf.Variable> {
    return this.ema ?? this.engine.network.params;
  }

  /** A checkpoint of kind 'expert' (see trainer-checkpoint.ts for what it holds). */
  save(options: TrainerSaveOptions = {}): Promise<Uint8Array> {
    return saveTrained({
      kind: 'expert',
      spec: this.engine.network.spec,
      params: this.savedParams(),
      step: this.stepsTaken,
      objective: this.objective.config,
      optimizer: this.options.optimizer,
      seed: this.options.seed,
      ...(this.init ? { init: this.init } : {}),
      ...options,
    });
  }

  /**
   * A checkpoint ({@link save}) and its optimiser state: the live weights, Adam's moments (every
   * parameter; zeros for one not trained) and step count, naming the checkpoint by sha256. A
   * trainer created from both continues exactly as this one would.
   */
  async saveResumable(options: TrainerSaveOptions = {}): Promise<ResumableSave> {
    const checkpoint = await this.save(options);
    const sha256 = checkpointSha256(checkpoint);
    const adam = await this.engine.optimizerState();
    const params: Record<string, CheckpointParam> = {};
    const expAvg: Record<string, CheckpointParam> = {};
    const expAvgSq: Record<string, CheckpointParam> = {};
    for (const [name, v] of this.engine.network.params) {
      const shape = [...v.shape];
      params[name] = { shape, data: ((await v.data()) as Float32Array).slice() };
      const zeros = () => new Float32Array(v.size);
      expAvg[name] = { shape, data: adam.expAvg[name]?.data ?? zeros() };
      expAvgSq[name] = { shape, data: adam.expAvgSq[name]?.data ?? zeros() };
    }
    const optimizer = encodeOptimizerState(
      { checkpoint: sha256, step: this.stepsTaken, adamStep: adam.step },
      { params, expAvg, expAvgSq },
    );
    return { checkpoint, sha256, optimizer };
  }

  /** Terminates the workers and frees the network. */
  dispose(): Promise<void> {
    if (this.ema) for (const v of this.ema.values()) v.dispose();
    return this.engine.dispose();
  }

  private noised(x0: BatchInput, labels: LabelInput | undefined, seed: number): StepBatch {
    const spec = this.engine.network.spec as ExpertNetworkSpec;
    const x = batchTensor(x0, inputShapeOf(spec), 'x0');
    const rows = x.shape[0] as number;
    let y: tf.Tensor1D | undefined;
    try {
      if (labels !== undefined) {
        const classes = spec.kind === 'dit' ? spec.config.numClasses : 0;
        if (classes === 0) throw new Error('labels given to an unconditional expert');
        y = labelTensor(labels, rows, 'labels', classes + 1);
      }
      const { xt, tau, target, weight } = this.objective.sampleTraining(x, seed);
      return { x: xt, tau, target, ...(weight ? { weight } : {}), ...(y ? { labels: y } : {}) };
    } catch (err) {
      y?.dispose();
      throw err;
    } finally {
      x.dispose();
    }
  }
}

/** A non-trainable variable holding `value`. */
function variableOf(value: CheckpointParam, name: string): tf.Variable {
  return tidy(() =>
    variable(
      tensor(value.data, value.shape, 'float32'),
      false,
      `${name}/${Math.random().toString(36).slice(2)}`,
    ),
  );
}

/** A non-trainable copy of `v`. */
function tfVariable(v: tf.Variable, name: string): tf.Variable {
  return tidy(() => variable(v.clone(), false, `${name}/${Math.random().toString(36).slice(2)}`));
}
