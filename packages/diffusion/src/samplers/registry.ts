/**
 * The samplers by name, each with its default time grid and its model calls per step (what a
 * request costs). A new sampler is one file plus its entry here (and its name in the protocol's
 * `SAMPLERS`, which validates requests).
 */
import { assertOneOf } from '../config-error.js';
import { ddimGrid, ddimSampler } from './ddim-sampler.js';
import { euler } from './euler.js';
import { heun } from './heun.js';
import type { Sampler } from './sampler.js';
import { type TimeGridOptions, timeGrid } from './time-grid.js';

/** A sampler and what the caller needs to run it. */
export interface SamplerEntry {
  readonly sampler: Sampler;
  /** Its time grid for `steps` steps (steps + 1 times from 1 down to 0). */
  grid(steps: number, options?: TimeGridOptions): number[];
  /** Model calls per step (Heun: 2; the last step may take fewer). */
  readonly evaluationsPerStep: number;
}

/** The samplers by name, in the order errors list them. */
export const SAMPLER_REGISTRY = {
  euler: { sampler: euler, grid: timeGrid, evaluationsPerStep: 1 },
  heun: { sampler: heun, grid: timeGrid, evaluationsPerStep: 2 },
  ddim: { sampler: ddimSampler, grid: (steps: number) => ddimGrid(steps), evaluationsPerStep: 1 },
} as const satisfies Record<string, SamplerEntry>;

/** A sampler's name. */
export type SamplerKey = keyof typeof SAMPLER_REGISTRY;

/** The valid sampler names, in registration order. */
export const SAMPLER_NAMES = Object.keys(SAMPLER_REGISTRY) as SamplerKey[];

/** The sampler `name`; an unknown name throws a ConfigError listing the valid ones. */
export function samplerEntry(name: unknown): SamplerEntry {
  assertOneOf(name, SAMPLER_NAMES, 'sampler');
  return SAMPLER_REGISTRY[name];
}
