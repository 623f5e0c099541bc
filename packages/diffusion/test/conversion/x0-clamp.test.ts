/**
 * The conversion's x0 clamp as a map of velocities (src/conversion/x0-clamp.ts): on the unclamped
 * conversion it gives the conversion's own clamped output, the floor of 1 - t included, and where
 * nothing leaves the range it returns its input.
 */
import type { Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { epsToVelocity } from '../../src/conversion/eps-to-velocity.js';
import { clampX0, isClampedVelocityModel, withX0Clamp } from '../../src/conversion/x0-clamp.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmStates, mixture4d } from '../fixtures.js';
import { maxAbsDiff, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

describe('clampX0', () => {
  const schedule = createDdpmSchedule({ kind: 'cosine' });
  // A slightly wrong network, so x0 estimates overshoot where 1 / (1 - t) is large.
  const ideal = mixture4d.idealEpsilon(schedule);
  const network = (x: tf.Tensor, tau: Tensor1D) => tf.mul(ideal(x, tau), 1.02);
  const { x, t } = fmStates(mixture4d, [0.1, 0.5, 0.9, 0.995, 1], 40, 3);

  it('on the unclamped conversion equals the clamped conversion, at every t', () => {
    const model = epsToVelocity(network, schedule, { mode: 'snr', x0Clamp: [-1, 1] });
    expect(isClampedVelocityModel(model)).toBe(true);
    const v = model.unclamped(x, t);
    const x0 = tf.sub(x, tf.mul(v, tf.reshape(t, [-1, 1])));
    expect(tf.max(tf.abs(x0)).dataSync()[0]!).toBeGreaterThan(1); // the clamp binds somewhere
    expect(maxAbsDiff(clampX0(v, x, t, model.x0Clamp), model(x, t))).toBeLessThan(1e-4);
    const viaWrapper = withX0Clamp(model.unclamped, model.x0Clamp);
    expect(maxAbsDiff(viaWrapper(x, t), model(x, t))).toBeLessThan(1e-4);
  });

  it('is the identity where no x0 estimate leaves the range', () => {
    const model = epsToVelocity(network, schedule, { mode: 'snr', x0Clamp: [-1e6, 1e6] });
    const v = model.unclamped(x, t);
    expect(maxAbsDiff(clampX0(v, x, t, model.x0Clamp), v)).toBeLessThan(1e-4);
    expect(maxAbsDiff(model(x, t), v)).toBe(0);
  });
});
