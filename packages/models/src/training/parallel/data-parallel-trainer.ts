/**
 * Synchronous data-parallel training of one network over T worker threads (or none).
 *
 * threads = 1: an Adam step in the calling thread. threads = T > 1: the caller's batch (already
 * noised, so every random draw happens once, in the main thread) is split into T contiguous row
 * shards; worker i computes the gradient of shard i's mean loss; the main thread averages them
 * weighted by shard size, which equals the gradient of the full batch's mean loss; every replica
 * (the T workers and the main thread's own copy, which serves evaluation and checkpoints) applies
 * that same Adam update, so all hold identical parameters (verifiable with `replicaParams()`).
 * The main replica applies each update lazily, while the workers compute the next gradients (or
 * when it is read), so on 2 cores it does not sit on the critical path. Floats are summed in a
 * different order than in one thread: results agree to float tolerance, not bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { currentBackend } from '../../backend.js';
import type { CheckpointParam } from '../../checkpoint/index.js';
import { createTrainer, type Trainer, type TrainerState } from '../../nn/index.js';
import { createLoss, type LossFn, type StepBatch, type TaskSpec } from '../losses.js';
import { buildNetwork, type NetworkSpec, type TrainableNetwork } from '../networks.js';
import { shardSizes, splitRows, toHost } from './host-batch.js';
import type { OptimizerOptions, ParamValues } from './messages.js';
import { ReplicaPool, replicaWorkerUrl } from './replica-pool.js';

export interface DataParallelTrainerOptions {
  network: NetworkSpec;
  task: TaskSpec;
  optimizer: OptimizerOptions;
  /** Seed of the initial parameters. */
  seed: number;
  /** Worker threads; default 1 (no workers). */
  threads?: number;
  /** Parameter values to start from (every parameter of the network), e.g. from a checkpoint. */
  initParams?: Record<string, CheckpointParam>;
  /** Adam's state to continue from (every replica gets it); default zero moments at step 0. */
  initOptimizer?: TrainerState;
}

export class DataParallelTrainer {
  /** The last averaged gradient, applied by the workers but not yet by the main replica. */
  private pending: { grads: Float32Array[]; learningRate: number } | null = null;
  private stepping = false;

  private constructor(
    private readonly net: TrainableNetwork,
    private readonly trainer: Trainer,
    private readonly loss: LossFn,
    private readonly pool: ReplicaPool | null,
  ) {}

  static async create(options: DataParallelTrainerOptions): Promise<DataParallelTrainer> {
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
      throw new RangeError(`threads must be an integer in [1, 256], got ${threads}`);
    }
    const network = buildNetwork(options.network, options.seed);
    let trainer: Trainer | null = null;
    try {
      if (options.initParams) assignParams(network, options.initParams);
      trainer = createTrainer(
        { params: network.params, ...options.optimizer },
        options.initOptimizer,
      );
      let pool: ReplicaPool | null = null;
      if (threads > 1) {
        const backend = currentBackend();
        if (!backend || tf.getBackend() !== backend.tfBackend) {
          throw new Error(
            'data-parallel training needs initBackend() first: its worker threads load the same backend',
          );
        }
        if (backend.name === 'webgpu') {
          // Each replica thread would open its own device on the one GPU, to no gain.
          throw new Error(
            'data-parallel threads run on CPU backends; on webgpu train with threads: 1',
          );
        }
        pool = await ReplicaPool.start({
          threads,
          backend: backend.name,
          ...(backend.gpu === undefined ? {} : { gpu: backend.gpu }),
          network: network.spec,
          task: options.task,
          optimizer: options.optimizer,
          seed: options.seed,
          params: paramValues(network),
          ...(options.initOptimizer ? { optimizerState: options.initOptimizer } : {}),
        });
        const trainable = [...network.params].filter(([, v]) => v.trainable).map(([n]) => n);
        if (pool.trainable.join() !== trainable.join()) {
          await pool.terminate();
          throw new Error(
            "the replica workers' network differs from the main thread's: is the built " +
              `worker (${replicaWorkerUrl().pathname}) stale? Rebuild @archipelago/models`,
          );
        }
      }
      return new DataParallelTrainer(network, trainer, createLoss(options.task, network), pool);
    } catch (err) {
      trainer?.dispose();
      network.dispose();
      throw err;
    }
  }

  /** Worker threads (1 = the calling thread, no workers). */
  get threads(): number {
    return this.pool?.size ?? 1;
  }

  /** The learning rate of the next step; may be changed between steps (warm-up, schedules). */
  get learningRate(): number {
    return this.trainer.learningRate;
  }

  set learningRate(value: number) {
    if (!(value > 0)) throw new RangeError(`learningRate must be > 0, got ${value}`);
    this.trainer.learningRate = value;
  }

  /**
   * One Adam step on the batch's mean loss; returns that loss (before the update). The caller
   * owns (and disposes) the batch. One step at a time: await each before the next.
   */
  async step(batch: StepBatch): Promise<number> {
    if (!this.pool) return this.trainer.stepAsync(() => this.loss(batch));
    if (this.stepping) throw new Error('a step is already running: await it before the next');
    this.stepping = true;
    try {
      const host = toHost(batch);
      const rows = host.x.shape[0] as number;
      if (!(rows > 0)) throw new RangeError('a training batch needs at least one row');
      const computing = this.pool.gradients(splitRows(host, shardSizes(rows, this.pool.size)));
      try {
        // The main replica catches up with the previous update while the workers compute.
        this.flush();
      } catch (err) {
        computing.catch(() => {});
        throw err;
      }
      const { loss, grads } = average(await computing, rows, this.pool.trainable.length);
      await this.pool.apply(grads, this.trainer.learningRate);
      this.pending = { grads, learningRate: this.trainer.learningRate };
      return loss;
    } finally {
      this.stepping = false;
    }
  }

  /** The batch's mean loss under the current parameters, without an update (main thread). */
  evalLoss(batch: StepBatch): number {
    this.flush();
    const loss = this.loss(batch);
    const value = loss.dataSync()[0] as number;
    loss.dispose();
    return value;
  }

  /**
   * The main replica (evaluation, checkpoints, sampling), up to date with every step taken.
   * Read its parameters through this getter, not through a reference kept across steps.
   */
  get network(): TrainableNetwork {
    this.flush();
    return this.net;
  }

  /**
   * Adam's state after every step taken (the main replica's; every replica holds the same): its
   * step count and both moments of every trainable parameter, as copies.
   */
  async optimizerState(): Promise<TrainerState> {
    this.flush();
    const copy = async (m: Map<string, tf.Variable>) => {
      const out: TrainerState['expAvg'] = {};
      for (const [name, v] of m)
        out[name] = { shape: [...v.shape], data: ((await v.data()) as Float32Array).slice() };
      return out;
    };
    return {
      step: this.trainer.stepCount,
      expAvg: await copy(this.trainer.state.expAvg),
      expAvgSq: await copy(this.trainer.state.expAvgSq),
    };
  }

  /**
   * Every replica's parameters: the main thread's first, then each worker's (for checks that
   * they agree).
   */
  async replicaParams(): Promise<Record<string, Float32Array>[]> {
    const main: Record<string, Float32Array> = {};
    for (const [name, v] of this.network.params)
      main[name] = ((await v.data()) as Float32Array).slice();
    const pool = this.pool;
    const workers = pool
      ? await Promise.all(Array.from({ length: pool.size }, (_, i) => pool.params(i)))
      : [];
    return [main, ...workers];
  }

  /**
   * Applies to the main replica the update the workers applied last. Deferred from `step` so
   * that it runs while the workers compute the next gradients rather than after they finish.
   */
  private flush(): void {
    const pending = this.pending;
    if (!pending || !this.pool) return;
    this.pending = null;
    const grads = new Map<string, tf.Tensor>();
    this.pool.trainable.forEach((name, i) => {
      grads.set(name, tf.tensor(pending.grads[i]!, this.net.params.get(name)!.shape, 'float32'));
    });
    const learningRate = this.trainer.learningRate;
    try {
      this.trainer.learningRate = pending.learningRate;
      this.trainer.applyGradients(grads);
    } finally {
      this.trainer.learningRate = learningRate;
      for (const g of grads.values()) g.dispose();
    }
  }

  /** Terminates the workers and frees the network and optimizer state. */
  async dispose(): Promise<void> {
    try {
      await this.pool?.terminate();
    } finally {
      this.pending = null;
      this.trainer.dispose();
      this.net.dispose();
    }
  }
}

/** The size-weighted mean of shard losses and gradients: the full batch's mean loss and gradient. */
function average(
  shards: { loss: number; rows: number; grads: Float32Array[] }[],
  rows: number,
  count: number,
): { loss: number; grads: Float32Array[] } {
  let loss = 0;
  const grads: Float32Array[] = [];
  const used = shards.filter((s) => s.rows > 0);
  for (const s of used) loss += (s.rows / rows) * s.loss;
  for (let p = 0; p < count; p++) {
    const sum = new Float64Array(used[0]!.grads[p]!.length);
    for (const s of used) {
      const g = s.grads[p]!;
      for (let j = 0; j < sum.length; j++) sum[j]! += s.rows * g[j]!;
    }
    const out = new Float32Array(sum.length);
    for (let j = 0; j < sum.length; j++) out[j] = sum[j]! / rows;
    grads.push(out);
  }
  return { loss, grads };
}

function paramValues(network: TrainableNetwork): ParamValues {
  const out: ParamValues = {};
  for (const [name, v] of network.params) {
    out[name] = { shape: [...v.shape], data: (v.dataSync() as Float32Array).slice() };
  }
  return out;
}

/** Sets every parameter from plain values (bit-exact); shapes and names must match. */
function assignParams(network: TrainableNetwork, values: Record<string, CheckpointParam>): void {
  for (const [name, v] of network.params) {
    const value = values[name];
    if (!value) throw new Error(`no value for parameter "${name}"`);
    if (value.shape.join() !== v.shape.join()) {
      throw new Error(
        `parameter "${name}": value has shape [${value.shape}], network [${v.shape}]`,
      );
    }
    const t = tf.tensor(value.data, value.shape, 'float32');
    v.assign(t);
    t.dispose();
  }
}
