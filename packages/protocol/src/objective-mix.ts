import { Value } from 'typebox/value';
import { OBJECTIVE_ALIASES, OBJECTIVE_FAMILIES, ObjectiveSpec } from './objective-spec.js';

export class ObjectiveMixError extends Error {
  readonly code = 'invalid_objective_mix';
  constructor(message: string) {
    super(message);
    this.name = 'ObjectiveMixError';
  }
}

/** One expert of a mix: a (partial) objective spec, or `any` (the leasing worker's family). */
export type MixEntry = ObjectiveSpec | 'any';

/** The names a mix may use: the families, `any`, then the other aliases (e.g. `v`). */
export const MIX_NAMES: readonly string[] = [
  ...OBJECTIVE_FAMILIES,
  'any',
  ...Object.keys(OBJECTIVE_ALIASES)
    .filter((n) => !(OBJECTIVE_FAMILIES as string[]).includes(n))
    .sort(),
];

/**
 * Parse an objective mix such as `ddpm:2,fm:6` (counts must sum to `k`), a single name
 * (`fm`: all experts), or `any` (each expert takes the objective of the worker that leases it).
 * Names are those of {@link MIX_NAMES}.
 *
 * @returns one name per expert, in cluster order, as listed.
 */
export function parseObjectiveMix(mix: string, k: number): string[] {
  const text = mix.trim().toLowerCase();
  if (MIX_NAMES.includes(text)) return Array.from({ length: k }, () => text);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const part of text.split(',')) {
    const m = /^\s*([a-z]+)\s*:\s*(\d+)\s*$/.exec(part);
    if (!m) {
      throw new ObjectiveMixError(
        `objective mix "${mix}": cannot read "${part.trim()}"; write e.g. "ddpm:2,fm:6", "fm" or "any"`,
      );
    }
    const [, name, countText] = m as unknown as [string, string, string];
    if (!MIX_NAMES.includes(name)) {
      throw new ObjectiveMixError(
        `objective mix "${mix}": unknown objective "${name}"; valid: ${MIX_NAMES.join(', ')}`,
      );
    }
    if (seen.has(name))
      throw new ObjectiveMixError(`objective mix "${mix}": "${name}" is listed twice`);
    seen.add(name);
    for (let i = 0; i < Number(countText); i++) out.push(name);
  }
  if (out.length !== k) {
    throw new ObjectiveMixError(
      `objective mix "${mix}" names ${out.length} experts but the run has ${k}`,
    );
  }
  return out;
}

/**
 * The experts of a mix as specs: the short syntax of {@link parseObjectiveMix} (names become the
 * specs of `OBJECTIVE_ALIASES`), or a JSON array with one spec (or `"any"`) per expert, given as
 * an array or as its JSON text. Specs are checked against the schema here; their defaults are
 * the diffusion registry's to fill.
 */
export function objectiveMixEntries(mix: string | readonly unknown[], k: number): MixEntry[] {
  let list: readonly unknown[];
  if (typeof mix === 'string') {
    if (!mix.trim().startsWith('[')) {
      return parseObjectiveMix(mix, k).map((name) =>
        name === 'any' ? 'any' : structuredClone(OBJECTIVE_ALIASES[name]!),
      );
    }
    try {
      list = JSON.parse(mix);
    } catch (err) {
      throw new ObjectiveMixError(`objective mix: invalid JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(list)) throw new ObjectiveMixError('objective mix: JSON must be an array');
  } else {
    list = mix;
  }
  if (list.length !== k) {
    throw new ObjectiveMixError(`objective mix names ${list.length} experts but the run has ${k}`);
  }
  return list.map((entry, i) => {
    if (entry === 'any') return 'any';
    if (!Value.Check(ObjectiveSpec, entry)) {
      const names = OBJECTIVE_FAMILIES.join(', ');
      throw new ObjectiveMixError(
        `objective mix: expert ${i} is not an objective spec (${JSON.stringify(entry)}); each is "any" or an object whose name is one of ${names} with that family's fields`,
      );
    }
    return structuredClone(entry);
  });
}
