import type { Objective, ObjectiveConfig } from './objective.js';
import { objectiveFamily } from './registry.js';

/**
 * Builds the objective a config names, through the registry: `{ name: 'fm', timeSampling }` or
 * `{ name: 'ddpm', schedule, prediction, lossWeighting }`. An unknown name throws a ConfigError
 * listing `ddpm, fm`.
 */
export function createObjective(config: ObjectiveConfig): Objective {
  return objectiveFamily(config).create(config);
}
