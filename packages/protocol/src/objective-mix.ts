import { type ExpertObjective, OBJECTIVES } from './models.js';

export class ObjectiveMixError extends Error {
  readonly code = 'invalid_objective_mix';
  constructor(message: string) {
    super(message);
    this.name = 'ObjectiveMixError';
  }
}

/**
 * Parse an objective mix such as `ddpm:2,fm:6` (counts must sum to `k`), a single objective
 * (`fm`: all experts), or `any` (each expert takes the objective of the worker that leases it).
 *
 * @returns one objective per expert, in cluster order: DDPM experts first, as listed.
 */
export function parseObjectiveMix(mix: string, k: number): ExpertObjective[] {
  const text = mix.trim().toLowerCase();
  const valid = [...OBJECTIVES, 'any'];
  if (valid.includes(text)) return Array.from({ length: k }, () => text as ExpertObjective);
  const out: ExpertObjective[] = [];
  const seen = new Set<string>();
  for (const part of text.split(',')) {
    const m = /^\s*([a-z]+)\s*:\s*(\d+)\s*$/.exec(part);
    if (!m) {
      throw new ObjectiveMixError(
        `objective mix "${mix}": cannot read "${part.trim()}"; write e.g. "ddpm:2,fm:6", "fm" or "any"`,
      );
    }
    const [, name, countText] = m as unknown as [string, string, string];
    if (!valid.includes(name)) {
      throw new ObjectiveMixError(
        `objective mix "${mix}": unknown objective "${name}"; valid: ${valid.join(', ')}`,
      );
    }
    if (seen.has(name))
      throw new ObjectiveMixError(`objective mix "${mix}": "${name}" is listed twice`);
    seen.add(name);
    for (let i = 0; i < Number(countText); i++) out.push(name as ExpertObjective);
  }
  if (out.length !== k) {
    throw new ObjectiveMixError(
      `objective mix "${mix}" names ${out.length} experts but the run has ${k}`,
    );
  }
  return out;
}
