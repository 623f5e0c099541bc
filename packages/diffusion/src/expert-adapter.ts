import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertOneOf, ConfigError } from './config-error.js';
import { type EpsToVelocityOptions, epsToVelocity } from './conversion/eps-to-velocity.js';
import type { Network, VelocityModel } from './model.js';
import {
  createDdpmSchedule,
  DdpmSchedule,
  type DdpmScheduleConfig,
} from './schedules/ddpm-schedule.js';

/** A trained expert as the ensemble manifest describes it, plus its network. */
export type ExpertSpec = {
  objective: 'fm' | 'ddpm';
  network: Network;
  /** Required for DDPM experts: the schedule (or its config) the network was trained with. */
  schedule?: DdpmSchedule | DdpmScheduleConfig;
  /** DDPM experts only; default `{ mode: 'snr' }`. */
  conversion?: EpsToVelocityOptions;
};

/** The valid `objective`s of {@link ExpertSpec}. */
export const EXPERT_OBJECTIVES = ['ddpm', 'fm'] as const;

/**
 * Any expert as a {@link VelocityModel} (method.md §4): an FM network directly,
 * `v(x, t) = net(x, 999 t)`; a DDPM network through {@link epsToVelocity}.
 */
export function velocityExpert(spec: ExpertSpec): VelocityModel {
  const objective: unknown = spec.objective;
  assertOneOf(objective, EXPERT_OBJECTIVES, 'expert objective');
  const { network } = spec;
  if (spec.objective === 'fm') {
    if (spec.conversion !== undefined || spec.schedule !== undefined) {
      throw new ConfigError('an FM expert takes neither a schedule nor conversion options');
    }
    return (x: Tensor, t: Tensor1D, labels?: Tensor1D): Tensor =>
      tf.tidy(() => network(x, tf.mul(t, 999) as Tensor1D, labels));
  }
  if (spec.schedule === undefined) throw new ConfigError('a DDPM expert needs its schedule');
  const schedule =
    spec.schedule instanceof DdpmSchedule ? spec.schedule : createDdpmSchedule(spec.schedule);
  return epsToVelocity(network, schedule, spec.conversion ?? { mode: 'snr' });
}
