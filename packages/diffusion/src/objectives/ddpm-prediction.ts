import type { Tensor } from '@tensorflow/tfjs-core';
import { assertOneOf } from '../config-error.js';
import type { EpsToVelocityOptions } from '../conversion/eps-to-velocity.js';
import type { Network, VelocityModel } from '../model.js';
import type { DdpmSchedule } from '../schedules/ddpm-schedule.js';
import { epsPrediction } from './eps-prediction.js';
import { vPrediction } from './v-prediction.js';

/**
 * What a network on a DDPM schedule predicts, one file each: the regression target on the
 * variance-preserving path and the adapter that turns the trained network into an FM velocity.
 */
export interface DdpmPrediction {
  /**
   * Whether the loss weightings of docs/method.md §11 apply: they are defined on the epsilon
   * loss, so other targets take only `none`.
   */
  readonly weighted: boolean;
  /**
   * The target at `x_n = a x0 + s e`, with `a = sqrt(abar_n)`, `s = sqrt(1 - abar_n)` given per
   * sample (shaped to broadcast, `[B, 1, ...]`). `x0`, `noise`: `[B, ...]`; returns `[B, ...]`.
   */
  target(x0: Tensor, noise: Tensor, a: Tensor, s: Tensor): Tensor;
  /** A trained network as a {@link VelocityModel}, with the conversion options of the manifest. */
  toVelocity(
    network: Network,
    schedule: DdpmSchedule,
    conversion: EpsToVelocityOptions,
  ): VelocityModel;
}

/** The prediction targets by name: a new one is one file plus its line here. */
export const PREDICTION_TARGETS = { eps: epsPrediction, v: vPrediction } as const;

/** The name of a {@link DdpmPrediction}. */
export type DdpmPredictionName = keyof typeof PREDICTION_TARGETS;

/** The valid prediction names. */
export const PREDICTION_NAMES = Object.keys(PREDICTION_TARGETS).sort() as DdpmPredictionName[];

/** The prediction target `name`; an unknown name throws a ConfigError listing the valid ones. */
export function predictionTarget(name: unknown): DdpmPrediction {
  assertOneOf(name, PREDICTION_NAMES, 'DDPM prediction');
  return PREDICTION_TARGETS[name];
}
