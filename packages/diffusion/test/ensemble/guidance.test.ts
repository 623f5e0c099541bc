import type { Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { epsToVelocity } from '../../src/conversion/eps-to-velocity.js';
import { velocityToEpsNetwork } from '../../src/conversion/velocity-to-eps.js';
import { withGuidance } from '../../src/ensemble/guidance.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmStates, mixture2d } from '../fixtures.js';
import { maxAbsDiff, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

const NULL = 3;
/** Label k: component k's ideal velocity; label 3 (null): the mixture's. */
const conditional = mixture2d.conditionalVelocity(NULL);

describe('withGuidance', () => {
  const { x, t } = fmStates(mixture2d, [0.2, 0.5, 0.8], 8, 30);
  const labels = tf.tensor1d(
    Array.from({ length: 24 }, (_, i) => i % 3),
    'int32',
  ) as Tensor1D;
  const nulls = tf.fill([24], NULL, 'int32') as Tensor1D;
  const cond = conditional(x, t, labels);
  const uncond = conditional(x, t, nulls);

  it('scale 1 is the conditional model, scale 0 the unconditional', () => {
    expect(maxAbsDiff(withGuidance(conditional, 1, NULL)(x, t, labels), cond)).toBe(0);
    expect(maxAbsDiff(withGuidance(conditional, 0, NULL)(x, t, labels), uncond)).toBe(0);
  });

  it('scale w is v_uncond + w (v_cond - v_uncond), in one doubled batch', () => {
    let calls = 0;
    const counted = (xx: tf.Tensor, tt: Tensor1D, ll?: Tensor1D) => {
      calls++;
      return conditional(xx, tt, ll);
    };
    const guided = withGuidance(counted, 2.5, NULL)(x, t, labels);
    const expected = tf.add(uncond, tf.mul(tf.sub(cond, uncond), 2.5));
    expect(maxAbsDiff(guided, expected)).toBeLessThan(1e-5);
    expect(calls).toBe(1);
  });

  it('commutes with the affine DDPM -> velocity conversion', () => {
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const epsNet = velocityToEpsNetwork(conditional, schedule); // a class-conditional eps network
    const guideThenConvert = epsToVelocity(withGuidance(epsNet, 3, NULL), schedule);
    const convertThenGuide = withGuidance(epsToVelocity(epsNet, schedule), 3, NULL);
    expect(maxAbsDiff(guideThenConvert(x, t, labels), convertThenGuide(x, t, labels))).toBeLessThan(
      1e-4,
    );
  });

  it('needs labels and does not leak', () => {
    expect(() => withGuidance(conditional, 2, NULL)(x, t)).toThrow(/labels/);
    const guided = withGuidance(conditional, 2, NULL);
    guided(x, t, labels).dispose();
    const before = tf.memory().numTensors;
    guided(x, t, labels).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
