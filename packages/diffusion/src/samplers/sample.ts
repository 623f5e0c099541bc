import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertKnownKeys, assertOneOf } from '../config-error.js';
import type { VelocityModel } from '../model.js';
import { deriveSeed } from '../seed.js';
import { euler } from './euler.js';
import { heun } from './heun.js';
import type { Sampler, SamplerOptions } from './sampler.js';
import { timeGrid } from './time-grid.js';

/** `shape` standard normal noise (the start of sampling, t = 1), deterministic in `seed`. */
export function initialNoise(shape: number[], seed: number): Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', deriveSeed(seed));
}

/** The velocity samplers by name. */
export const SAMPLERS: Readonly<Record<'euler' | 'heun', Sampler>> = { euler, heun };

/** Serialisable sampling config: which sampler, how many steps, the grid shift (default 1). */
export type SamplingConfig = { sampler: 'euler' | 'heun'; steps: number; shift?: number };

/**
 * Draws `shape` samples from `model`: `initialNoise(shape, seed)` integrated over
 * `timeGrid(steps, { shift })` by the named sampler. An unknown sampler throws a ConfigError
 * listing `euler, heun`. Returns `[B, ...]` = `shape`; the caller owns it.
 */
export function sample(
  model: VelocityModel,
  shape: number[],
  seed: number,
  config: SamplingConfig,
  options: SamplerOptions = {},
): Tensor {
  assertKnownKeys(config, ['sampler', 'steps', 'shift'], 'sampling config');
  const name: unknown = config.sampler;
  assertOneOf(name, ['euler', 'heun'] as const, 'sampler');
  const grid = timeGrid(config.steps, config.shift === undefined ? {} : { shift: config.shift });
  const noise = initialNoise(shape, seed);
  try {
    return SAMPLERS[name](model, noise, grid, options);
  } finally {
    noise.dispose();
  }
}
