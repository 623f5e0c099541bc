import type { Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { epsToVelocity } from '../../src/conversion/eps-to-velocity.js';
import { velocityToEps, velocityToEpsNetwork } from '../../src/conversion/velocity-to-eps.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmLogSnr, fmVpScale } from '../../src/schedules/fm-log-snr.js';
import { fmStates, mixture4d } from '../fixtures.js';
import { maxOf, rowRelativeErrors, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

const TIMES = [0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98];

describe('velocityToEps', () => {
  it('turns the ideal velocity into the ideal epsilon E[e | x_t] on the FM path', () => {
    const { x, t } = fmStates(mixture4d, TIMES, 20, 11);
    const eps = velocityToEps(mixture4d.idealVelocity())(x, t);
    const times = t.dataSync();
    const stats = mixture4d.conditionalMeans(
      x.dataSync(),
      Float64Array.from(times, (v) => 1 - v),
      Float64Array.from(times),
    );
    const expected = new Float32Array(x.size);
    for (let b = 0; b < times.length; b++) {
      for (let d = 0; d < 4; d++) {
        for (let k = 0; k < 3; k++) {
          expected[b * 4 + d]! += stats.posterior[b * 3 + k]! * stats.eps[(b * 3 + k) * 4 + d]!;
        }
      }
    }
    expect(maxOf(rowRelativeErrors(eps, tf.tensor2d(expected, [times.length, 4])))).toBeLessThan(
      1e-5,
    );
  });

  for (const kind of ['cosine', 'linear'] as const) {
    const schedule = createDdpmSchedule({ kind });
    const epsNet = mixture4d.idealEpsilon(schedule);

    it(`${kind}: velocityToEps(epsToVelocity(eps)) at (x_t, t) is eps(x_vp, n*)`, () => {
      const { x, t } = fmStates(mixture4d, TIMES, 20, 12);
      const roundTrip = velocityToEps(epsToVelocity(epsNet, schedule))(x, t);
      const times = Array.from(t.dataSync());
      const xvp = tf.div(x, tf.tensor2d(times.map((v) => [fmVpScale(v)])));
      const nStar = tf.tensor1d(times.map((v) => schedule.stepForLogSnr(fmLogSnr(v))));
      expect(maxOf(rowRelativeErrors(roundTrip, epsNet(xvp, nStar)))).toBeLessThan(1e-4);
    });

    it(`${kind}: velocityToEpsNetwork(epsToVelocity(eps)) is eps at integer and fractional steps`, () => {
      const roundTrip = velocityToEpsNetwork(epsToVelocity(epsNet, schedule), schedule);
      // Up to n = 900: beyond, the matching FM time has 1 - t < alphaMin (linear: n >= ~960) and the
      // floor deliberately changes v (measured: 2.2e-4 relative at linear n = 990).
      const steps = [0, 3, 10.5, 100, 250.25, 500, 750, 900];
      const x = tf.tidy(() => {
        const x0 = mixture4d.sample(steps.length, 5);
        const e = tf.randomNormal([steps.length, 4], 0, 1, 'float32', 6);
        const a = steps.map((n) => Math.sqrt(schedule.alphaBar(n)));
        return tf.add(
          tf.mul(x0, tf.tensor2d(a, [steps.length, 1])),
          tf.mul(
            e,
            tf.tensor2d(
              a.map((v) => Math.sqrt(1 - v * v)),
              [steps.length, 1],
            ),
          ),
        );
      });
      const tau = tf.tensor1d(steps) as Tensor1D;
      expect(maxOf(rowRelativeErrors(roundTrip(x, tau), epsNet(x, tau)))).toBeLessThan(1e-4);
    });
  }

  it('is exact at t = 0 (eps = x0 + v) and t = 1 (eps = x_t)', () => {
    const v = tf.tensor2d([[0.5, -1]]);
    const x = tf.tensor2d([[2, 3]]);
    const model = () => tf.clone(v);
    expect(Array.from(velocityToEps(model)(x, tf.tensor1d([1])).dataSync())).toEqual([2, 3]);
    expect(Array.from(velocityToEps(model)(x, tf.tensor1d([0])).dataSync())).toEqual([2.5, 2]);
  });
});
