import { assertOneOf } from '../config-error.js';
import { DdpmEpsObjective } from './ddpm-eps.js';
import { FlowMatchingObjective } from './flow-matching.js';
import { OBJECTIVE_NAMES, type Objective, type ObjectiveConfig } from './objective.js';

/**
 * Builds the objective a config names: `{ name: 'fm', timeSampling }` or
 * `{ name: 'ddpm', schedule }`. An unknown name throws a ConfigError listing `ddpm, fm`.
 */
export function createObjective(config: ObjectiveConfig): Objective {
  const name: unknown = (config as { name?: unknown }).name;
  assertOneOf(name, OBJECTIVE_NAMES, 'objective name');
  return config.name === 'fm' ? new FlowMatchingObjective(config) : new DdpmEpsObjective(config);
}
