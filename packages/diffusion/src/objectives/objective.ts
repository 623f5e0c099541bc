import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import type { DdpmScheduleConfig } from '../schedules/ddpm-schedule.js';
import type { DdpmPredictionName } from './ddpm-prediction.js';
import type { FmTimeSampling } from './flow-matching.js';
import type { LossWeighting } from './loss-weighting.js';

/**
 * One training example batch, whatever the objective: the network is trained so that
 * `net(xt, tau)` matches `target` under {@link Objective.loss}.
 *
 * - `xt`: `[B, ...]` noised input; `tau`: `[B]` float network timestep in [0, 999];
 * - `target`: `[B, ...]`: epsilon or v (DDPM schedule), velocity `e - x0` (FM);
 * - `weight`: `[B]` per-sample loss weights, absent when every weight is 1.
 */
export type TrainingBatch = { xt: Tensor; tau: Tensor1D; target: Tensor; weight?: Tensor1D };

/**
 * A DDPM-schedule objective (docs/method.md §3, §10, §11): the schedule (default cosine), what the
 * network predicts (default `eps`) and the epsilon loss's weighting (default none).
 */
export type DdpmObjectiveConfig = {
  name: 'ddpm';
  schedule?: DdpmScheduleConfig;
  prediction?: DdpmPredictionName;
  lossWeighting?: LossWeighting;
};

/** Flow matching (docs/method.md §3) with its training-time distribution (default uniform). */
export type FmObjectiveConfig = { name: 'fm'; timeSampling?: FmTimeSampling };

/**
 * Serialisable objective config, the objective spec of `packages/protocol` (the same shape);
 * stored with every checkpoint. The `name` is the objective's family.
 */
export type ObjectiveConfig = DdpmObjectiveConfig | FmObjectiveConfig;

/** The valid `name`s of {@link ObjectiveConfig}: the objective families. */
export const OBJECTIVE_NAMES = ['ddpm', 'fm'] as const;

/** A training objective as a trainer sees it (docs/method.md §3); built by `createObjective`. */
export interface Objective {
  readonly name: ObjectiveConfig['name'];
  /** The config in canonical form (serialisable; rebuilds this objective). */
  readonly config: ObjectiveConfig;
  /**
   * Draws noise and times from `seed` (deterministic) and noises `x0` (`[B, ...]`, in [-1, 1]).
   * The caller owns and disposes the returned tensors.
   */
  sampleTraining(x0: Tensor, seed: number): TrainingBatch;
  /**
   * Mean squared error between `pred` and `target` (both `[B, ...]`), each sample's squared
   * error scaled by `weight` (`[B]`) when given; a scalar.
   */
  loss(pred: Tensor, target: Tensor, weight?: Tensor1D): Scalar;
}
