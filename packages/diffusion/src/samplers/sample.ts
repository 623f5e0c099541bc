import { deriveSeed } from '@archipelago/random';
import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertKnownKeys } from '../config-error.js';
import type { VelocityModel } from '../model.js';
import { type SamplerKey, samplerEntry } from './registry.js';
import type { SamplerOptions } from './sampler.js';

/** `shape` standard normal noise (the start of sampling, t = 1), deterministic in `seed`. */
export function initialNoise(shape: number[], seed: number): Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', deriveSeed(seed));
}

/** Serialisable sampling config: which sampler, how many steps, the grid shift (default 1). */
export type SamplingConfig = { sampler: SamplerKey; steps: number; shift?: number };

/**
 * Draws `shape` samples from `model`: `initialNoise(shape, seed)` integrated over the named
 * sampler's grid (`timeGrid(steps, { shift })` for Euler and Heun) by that sampler. An unknown
 * sampler throws a ConfigError listing `euler, heun, ddim`. Returns `[B, ...]` = `shape`; the
 * caller owns it.
 */
export function sample(
  model: VelocityModel,
  shape: number[],
  seed: number,
  config: SamplingConfig,
  options: SamplerOptions = {},
): Tensor {
  assertKnownKeys(config, ['sampler', 'steps', 'shift'], 'sampling config');
  const entry = samplerEntry(config.sampler);
  const grid = entry.grid(config.steps, config.shift === undefined ? {} : { shift: config.shift });
  const noise = initialNoise(shape, seed);
  try {
    return entry.sampler(model, noise, grid, options);
  } finally {
    noise.dispose();
  }
}
