/**
 * From what a run asks for to the objective spec an expert trains with: the mix (short names or
 * full specs), the run's own `schedule` and `fmTimeSampling` filling what a spec leaves out, and
 * the diffusion registry putting it in canonical form. Nothing here knows a family by name.
 */
import { ConfigError, resolveObjective } from '@archipelago/diffusion';
import {
  type CreateRunBody,
  type MixEntry,
  ObjectiveMixError,
  type ObjectiveSpec,
  objectiveMixEntries,
  type RunConfig,
  runSpecDefaults,
} from '@archipelago/protocol';
import { DomainError } from '../errors.js';

/** `entry` with the run's defaults for its family filled in, in canonical form. */
export function completeSpec(entry: ObjectiveSpec, config: RunConfig): ObjectiveSpec {
  const defaults = runSpecDefaults(config)[entry.name] ?? {};
  return resolveObjective({ ...defaults, ...entry } as ObjectiveSpec) as ObjectiveSpec;
}

/** The spec an `any` expert takes when a worker of `family` leases it. */
export function specForFamily(family: ObjectiveSpec['name'], config: RunConfig): ObjectiveSpec {
  return completeSpec({ name: family } as ObjectiveSpec, config);
}

/**
 * One spec per expert of a new run (null for `any`), or a DomainError `invalid_objective_mix`
 * whose message says what is wrong and lists the valid values.
 */
export function specsForNewRun(
  objectives: CreateRunBody['objectives'],
  k: number,
  config: RunConfig,
): (ObjectiveSpec | null)[] {
  try {
    return objectiveMixEntries(objectives ?? 'any', k).map((entry: MixEntry) =>
      entry === 'any' ? null : completeSpec(entry, config),
    );
  } catch (err) {
    if (err instanceof ObjectiveMixError || err instanceof ConfigError) {
      throw new DomainError('invalid_objective_mix', err.message);
    }
    throw err;
  }
}

/** How a run's mix is stored and shown: the text as given, or the JSON of the array form. */
export function mixText(objectives: CreateRunBody['objectives']): string {
  return typeof objectives === 'string' ? objectives : JSON.stringify(objectives ?? 'any');
}
