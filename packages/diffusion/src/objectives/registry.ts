/**
 * The one interpreter of objective specs (docs/method.md §3, §10): every objective family's
 * defaults, validation, training objective, held-out measure and velocity adapter, by `name`.
 * A new family is one file plus its entry here; apps never branch on a family's name.
 */

import * as tf from '@tensorflow/tfjs-core';
import { assertOneOf } from '../config-error.js';
import type { EpsToVelocityOptions } from '../conversion/eps-to-velocity.js';
import type { Network, VelocityModel } from '../model.js';
import { DdpmSchedule } from '../schedules/ddpm-schedule.js';
import { DdpmObjective, resolveDdpmObjective } from './ddpm-objective.js';
import { predictionTarget } from './ddpm-prediction.js';
import { FlowMatchingObjective, resolveFmObjective } from './flow-matching.js';
import {
  type DdpmObjectiveConfig,
  type FmObjectiveConfig,
  OBJECTIVE_NAMES,
  type Objective,
  type ObjectiveConfig,
} from './objective.js';

/** What the registry knows of one objective family. */
export interface ObjectiveFamily<C extends ObjectiveConfig> {
  /** Checks `config` and returns its canonical form (defaults filled in). */
  resolve(config: C): C;
  /** The training objective. */
  create(config: C): Objective;
  /**
   * The config held-out losses are measured with, so they compare across runs whatever the
   * training-time choices (time sampling, loss weighting).
   */
  heldOut(config: C): C;
  /** A trained network as an FM velocity model; `conversion` is the manifest's. */
  toVelocity(network: Network, config: C, conversion: EpsToVelocityOptions): VelocityModel;
  /**
   * The families whose checkpoints can initialise this one's (docs/method.md §7: a DDPM-schedule
   * network becomes an FM expert with its output layer re-initialised).
   */
  readonly initialisedFrom: readonly ObjectiveConfig['name'][];
}

type Families = {
  [N in ObjectiveConfig['name']]: ObjectiveFamily<Extract<ObjectiveConfig, { name: N }>>;
};

const ddpm: ObjectiveFamily<DdpmObjectiveConfig> = {
  resolve: resolveDdpmObjective,
  create: (config) => new DdpmObjective(config),
  heldOut: (config) => {
    const { lossWeighting: _unweighted, ...rest } = resolveDdpmObjective(config);
    return rest;
  },
  toVelocity: (network, config, conversion) => {
    const c = resolveDdpmObjective(config);
    return predictionTarget(c.prediction ?? 'eps').toVelocity(
      network,
      new DdpmSchedule(c.schedule!),
      conversion,
    );
  },
  initialisedFrom: [],
};

const fm: ObjectiveFamily<FmObjectiveConfig> = {
  resolve: resolveFmObjective,
  create: (config) => new FlowMatchingObjective(config),
  heldOut: () => ({ name: 'fm', timeSampling: { kind: 'uniform' } }),
  toVelocity: (network) => (x, t, labels) =>
    tf.tidy(() => network(x, tf.mul(t, 999) as tf.Tensor1D, labels)),
  initialisedFrom: ['ddpm'],
};

/** The objective families by name. */
export const OBJECTIVE_FAMILIES: Readonly<Families> = { ddpm, fm };

/** The family of `config`; an unknown name throws a ConfigError listing the valid ones. */
export function objectiveFamily<C extends ObjectiveConfig>(config: C): ObjectiveFamily<C> {
  const name: unknown = (config as { name?: unknown } | null)?.name;
  assertOneOf(name, OBJECTIVE_NAMES, 'objective name');
  return OBJECTIVE_FAMILIES[name] as unknown as ObjectiveFamily<C>;
}

/** `config` checked and in canonical form (defaults filled in). */
export function resolveObjective<C extends ObjectiveConfig>(config: C): C {
  return objectiveFamily(config).resolve(config);
}

/** The config the held-out loss of an expert trained with `config` is measured with. */
export function heldOutObjective<C extends ObjectiveConfig>(config: C): C {
  return objectiveFamily(config).heldOut(config);
}

/** The families whose checkpoints may initialise an expert of `config` (docs/method.md §7). */
export function initialisingFamilies(config: ObjectiveConfig): readonly ObjectiveConfig['name'][] {
  return objectiveFamily(config).initialisedFrom;
}
