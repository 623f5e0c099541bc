import { assertOneOf, ConfigError } from './config-error.js';
import type { EpsToVelocityOptions } from './conversion/eps-to-velocity.js';
import type { Network, VelocityModel } from './model.js';
import { OBJECTIVE_NAMES, type ObjectiveConfig } from './objectives/objective.js';
import { objectiveFamily } from './objectives/registry.js';
import { DdpmSchedule, type DdpmScheduleConfig } from './schedules/ddpm-schedule.js';

/**
 * A trained expert: its network and its objective, either as the objective spec it was trained
 * with (what checkpoints and manifests store) or, in the older form, as a family name with a DDPM
 * schedule.
 */
export type ExpertSpec = {
  objective: ObjectiveConfig | 'fm' | 'ddpm';
  network: Network;
  /** Older form only, required for DDPM experts: the schedule (or its config). */
  schedule?: DdpmSchedule | DdpmScheduleConfig;
  /**
   * The DDPM -> velocity conversion (docs/method.md §4; default `{ mode: 'snr' }`). With a spec
   * every family takes it (FM ignores it); in the older form FM experts refuse it.
   */
  conversion?: EpsToVelocityOptions;
};

/** The valid family names of {@link ExpertSpec}'s older form. */
export const EXPERT_OBJECTIVES = OBJECTIVE_NAMES;

/**
 * Any expert as a {@link VelocityModel} (docs/method.md §4, §10), through its family's adapter in
 * the registry: an FM network directly, `v(x, t) = net(x, 999 t)`; a DDPM-schedule network
 * through its prediction target's conversion.
 */
export function velocityExpert(spec: ExpertSpec): VelocityModel {
  const conversion = spec.conversion ?? { mode: 'snr' };
  const config = typeof spec.objective === 'object' ? spec.objective : legacyConfig(spec);
  return objectiveFamily(config).toVelocity(spec.network, config as never, conversion);
}

/** The spec an older-form expert stands for. */
function legacyConfig(spec: ExpertSpec): ObjectiveConfig {
  const objective: unknown = spec.objective;
  assertOneOf(objective, EXPERT_OBJECTIVES, 'expert objective');
  if (objective === 'fm') {
    if (spec.conversion !== undefined || spec.schedule !== undefined) {
      throw new ConfigError('an FM expert takes neither a schedule nor conversion options');
    }
    return { name: 'fm' };
  }
  if (spec.schedule === undefined) throw new ConfigError('a DDPM expert needs its schedule');
  const schedule = spec.schedule instanceof DdpmSchedule ? spec.schedule.config : spec.schedule;
  return { name: 'ddpm', schedule };
}
