/**
 * The training policy of a lease: the DiT of the run's preset trained with the grant's objective,
 * each step on the shard batch of that step (deterministic, so a resumed or re-leased expert sees
 * the same batches), the learning rate warmed up, a checkpoint every `checkpointInterval` steps
 * and at the target, and smoothed rates for heartbeats and the progress line. It stops after the
 * current step when asked to.
 */
import {
  CheckpointError,
  ditConfigFromPreset,
  ExpertTrainer,
  type TrainStepResult,
} from '@archipelago/models';
import type { LeaseGrant } from '@archipelago/protocol';
import type { ShardBatches } from './shard-batches.js';

/** EMA decay of the weights a checkpoint holds (see ExpertTrainer's `ema`). */
export const EMA_DECAY = 0.999;

/**
 * Linear warm-up of the learning rate over the first 10 % of the steps (at most 100): Adam's early
 * updates at a high rate destabilise a freshly initialised transformer. A function of the step
 * alone, so a resumed lease continues the same schedule.
 */
export function warmupLearningRate(base: number, step: number, target: number): number {
  const warmup = Math.max(1, Math.min(100, Math.ceil(target / 10)));
  return base * Math.min(1, (step + 1) / warmup);
}

/** What heartbeats and the progress line show. */
export interface TrainingRates {
  /** Loss of the last step; null before the first. */
  loss: number | null;
  imagesPerSec: number;
  stepsPerSec: number;
}

export const IDLE_RATES: TrainingRates = { loss: null, imagesPerSec: 0, stepsPerSec: 0 };

/**
 * The rates after a step that took `seconds`: exponential moving averages, smooth enough to read
 * and quick to follow a change of load; the first step sets them.
 */
export function smoothRates(
  prev: TrainingRates,
  r: Pick<TrainStepResult, 'loss' | 'imagesPerSec'>,
  seconds: number,
): TrainingRates {
  const a = prev.stepsPerSec === 0 ? 1 : 0.1;
  return {
    loss: r.loss,
    imagesPerSec: (1 - a) * prev.imagesPerSec + a * r.imagesPerSec,
    stepsPerSec: (1 - a) * prev.stepsPerSec + a / seconds,
  };
}

/** The part of {@link ExpertTrainer} the loop drives. */
export type LoopTrainer = Pick<
  ExpertTrainer,
  'stepCount' | 'threads' | 'learningRate' | 'step' | 'save' | 'saveResumable' | 'dispose'
>;

export interface TrainingHooks {
  /** Stop after the current step (the lease was lost, a stop was asked for). */
  interrupted: () => boolean;
  /** After each step, with the rates updated. */
  onStep: () => void;
  /** Save a checkpoint of the current step; `final` at the target. */
  checkpoint: (final: boolean) => Promise<void>;
  /** After each step and its checkpoint (e.g. upload a waiting checkpoint). */
  betweenSteps: () => Promise<void>;
}

export class TrainingLoop {
  private current: TrainingRates = IDLE_RATES;
  private lastStepAt = 0;

  constructor(
    private readonly trainer: LoopTrainer,
    private readonly batches: Pick<ShardBatches, 'batch'>,
    private readonly training: LeaseGrant['training'],
    /** sha256 of the training shard, recorded in each checkpoint. */
    private readonly dataFingerprint: string,
  ) {}

  /**
   * The grant's DiT and objective, from `init` (a checkpoint to continue) when given, and its
   * `optimizerState` (an exact resume); a state that does not load (`warn`ed) is dropped: training
   * continues from `init` with fresh moments.
   */
  static async create(
    g: LeaseGrant,
    batches: ShardBatches,
    options: {
      init?: Uint8Array;
      optimizerState?: Uint8Array;
      threads: number;
      warn?: (message: string) => void;
    },
  ): Promise<TrainingLoop> {
    const config = ditConfigFromPreset(g.model.preset, {
      imageSize: g.model.imageSize,
      channels: g.model.channels,
      numClasses: g.model.numClasses,
      ...(g.model.patchSize !== undefined ? { patchSize: g.model.patchSize } : {}),
    });
    const create = (optimizerState?: Uint8Array) =>
      ExpertTrainer.create({
        network: { kind: 'dit', config },
        // The grant's objective spec, verbatim: the registry interprets it.
        objective: g.spec,
        optimizer: { learningRate: g.training.learningRate },
        // Checkpoints hold the EMA of the weights: what diffusion models sample well with.
        ema: { decay: EMA_DECAY },
        seed: g.training.seed,
        threads: options.threads,
        ...(options.init ? { init: options.init } : {}),
        ...(optimizerState ? { optimizerState } : {}),
      });
    let trainer: ExpertTrainer;
    try {
      trainer = await create(options.optimizerState);
    } catch (err) {
      if (!(options.optimizerState && err instanceof CheckpointError)) throw err;
      options.warn?.(
        `ignoring the checkpoint's optimizer state (${err.message}): fresh Adam moments`,
      );
      trainer = await create();
    }
    return new TrainingLoop(trainer, batches, g.training, g.shard.train.sha256);
  }

  /** Steps trained so far, those of the checkpoint started from included. */
  get step(): number {
    return this.trainer.stepCount;
  }

  get threads(): number {
    return this.trainer.threads;
  }

  get rates(): TrainingRates {
    return this.current;
  }

  /** Train until the target or until `hooks.interrupted()`. */
  async run(hooks: TrainingHooks): Promise<void> {
    const { targetSteps: target, checkpointInterval: interval, learningRate } = this.training;
    const trainer = this.trainer;
    this.lastStepAt = performance.now();
    while (!hooks.interrupted() && trainer.stepCount < target) {
      const batch = this.batches.batch(trainer.stepCount);
      trainer.learningRate = warmupLearningRate(learningRate, trainer.stepCount, target);
      const result = await trainer.step(batch.x, batch.labels);
      const now = performance.now();
      this.current = smoothRates(
        this.current,
        result,
        Math.max(1e-6, (now - this.lastStepAt) / 1000),
      );
      this.lastStepAt = now;
      hooks.onStep();
      if (result.step % interval === 0 || result.step === target)
        await hooks.checkpoint(result.step === target);
      await hooks.betweenSteps();
      // Steps are synchronous tfjs work: let heartbeats and socket frames through.
      await new Promise(setImmediate);
    }
  }

  /** A pause ended: the next step's rate counts from now, not from the step before the pause. */
  restartClock(): void {
    this.lastStepAt = performance.now();
  }

  /** A safetensors checkpoint of the current step. */
  save(): Promise<Uint8Array> {
    return this.trainer.save({ dataFingerprint: this.dataFingerprint });
  }

  /** A checkpoint of the current step and its optimiser state (what an exact resume needs). */
  async saveResumable(): Promise<{ bytes: Uint8Array; optimizer: Uint8Array }> {
    const r = await this.trainer.saveResumable({ dataFingerprint: this.dataFingerprint });
    return { bytes: r.checkpoint, optimizer: r.optimizer };
  }

  /** Free the trainer; {@link step} stays readable. */
  dispose(): Promise<void> {
    return this.trainer.dispose();
  }
}
