import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { heun } from '../../src/samplers/heun.js';
import { initialNoise, type SamplingConfig, sample } from '../../src/samplers/sample.js';
import { timeGrid } from '../../src/samplers/time-grid.js';
import { mixture2d } from '../fixtures.js';
import { maxAbsDiff, moments, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

describe('initialNoise', () => {
  it('is standard normal of the given shape', () => {
    const noise = initialNoise([5000, 2], 8);
    expect(noise.shape).toEqual([5000, 2]);
    const m = moments(noise);
    expect(Math.abs(m.mean[0]!)).toBeLessThan(4 * m.meanSe[0]!);
    expect(Math.abs(m.cov[1]![1]! - 1)).toBeLessThan(4 * m.covSe[1]![1]!);
  });

  it('is deterministic for a seed (0 included) and differs across seeds', () => {
    expect(maxAbsDiff(initialNoise([8, 3], 0), initialNoise([8, 3], 0))).toBe(0);
    expect(maxAbsDiff(initialNoise([8, 3], 1), initialNoise([8, 3], 1))).toBe(0);
    expect(maxAbsDiff(initialNoise([8, 3], 0), initialNoise([8, 3], 1))).toBeGreaterThan(0.1);
  });
});

describe('sample', () => {
  it('same seed, same samples; another seed, other samples', () => {
    const config: SamplingConfig = { sampler: 'heun', steps: 8, shift: 2 };
    const a = sample(mixture2d.idealVelocity(), [32, 2], 3, config);
    const b = sample(mixture2d.idealVelocity(), [32, 2], 3, config);
    const c = sample(mixture2d.idealVelocity(), [32, 2], 4, config);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(maxAbsDiff(a, c)).toBeGreaterThan(0.1);
    const direct = heun(
      mixture2d.idealVelocity(),
      initialNoise([32, 2], 3),
      timeGrid(8, { shift: 2 }),
    );
    expect(maxAbsDiff(a, direct)).toBe(0);
  });

  it('does not leak; an unknown sampler throws listing the valid ones', () => {
    const model = mixture2d.idealVelocity();
    sample(model, [4, 2], 1, { sampler: 'euler', steps: 2 }).dispose();
    const before = tf.memory().numTensors;
    sample(model, [4, 2], 1, { sampler: 'euler', steps: 10 }).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() =>
      sample(model, [4, 2], 1, { sampler: 'dpm++', steps: 10 } as unknown as SamplingConfig),
    ).toThrow(/valid: euler, heun/);
  });
});
