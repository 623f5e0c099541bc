import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import type { DdpmScheduleConfig } from '../schedules/ddpm-schedule.js';
import type { FmTimeSampling } from './flow-matching.js';

/**
 * One training example batch, whatever the objective: the network is trained so that
 * `net(xt, tau)` matches `target` under {@link Objective.loss}.
 *
 * - `xt`: `[B, ...]` noised input; `tau`: `[B]` float network timestep in [0, 999];
 * - `target`: `[B, ...]`, epsilon (DDPM) or velocity `e - x0` (FM).
 */
export type TrainingBatch = { xt: Tensor; tau: Tensor1D; target: Tensor };

/** Serialisable objective config; stored with every checkpoint. */
export type ObjectiveConfig =
  | { name: 'fm'; timeSampling: FmTimeSampling }
  | { name: 'ddpm'; schedule: DdpmScheduleConfig };

/** The valid `name`s of {@link ObjectiveConfig}. */
export const OBJECTIVE_NAMES = ['ddpm', 'fm'] as const;

/** A training objective as a trainer sees it (method.md §3); built by `createObjective`. */
export interface Objective {
  readonly name: 'ddpm' | 'fm';
  /** The config with defaults filled in (serialisable; rebuilds this objective). */
  readonly config: ObjectiveConfig;
  /**
   * Draws noise and times from `seed` (deterministic) and noises `x0` (`[B, ...]`, in [-1, 1]).
   * The caller owns and disposes the returned tensors.
   */
  sampleTraining(x0: Tensor, seed: number): TrainingBatch;
  /** Mean squared error between `pred` and `target` (both `[B, ...]`), a scalar. */
  loss(pred: Tensor, target: Tensor): Scalar;
}
