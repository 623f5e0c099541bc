import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { epsToVelocity } from '../../src/conversion/eps-to-velocity.js';
import { velocityExpert } from '../../src/expert-adapter.js';
import type { Network } from '../../src/model.js';
import { DdpmObjective, ddpmTrainingBatch } from '../../src/objectives/ddpm-objective.js';
import { vToVelocity } from '../../src/objectives/v-prediction.js';
import { createDdpmSchedule, type DdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmStates, mixture4d } from '../fixtures.js';
import { maxAbsDiff, maxOf, median, rowRelativeErrors, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

/** The ideal v-predictor E[a e - s x0 | x_n] of the mixture on `schedule`, at fractional steps. */
function idealV(schedule: DdpmSchedule): Network {
  return (x, tau) => {
    const steps = tau.dataSync();
    const D = mixture4d.dim;
    const alpha = Float64Array.from(steps, (n) => Math.sqrt(schedule.alphaBar(n)));
    const sigma = Float64Array.from(steps, (n) => Math.sqrt(1 - schedule.alphaBar(n)));
    const stats = mixture4d.conditionalMeans(x.dataSync(), alpha, sigma);
    const K = stats.posterior.length / steps.length;
    const out = new Float32Array(steps.length * D);
    for (let b = 0; b < steps.length; b++) {
      for (let d = 0; d < D; d++) {
        let x0 = 0;
        let e = 0;
        for (let k = 0; k < K; k++) {
          const p = stats.posterior[b * K + k]!;
          x0 += p * stats.x0[(b * K + k) * D + d]!;
          e += p * stats.eps[(b * K + k) * D + d]!;
        }
        out[b * D + d] = alpha[b]! * e - sigma[b]! * x0;
      }
    }
    return tf.tensor2d(out, [steps.length, D]);
  };
}

// 50 times in [0.02, 1] (t = 1, pure noise, included) x 40 FM-path states each.
const TIMES = Array.from({ length: 50 }, (_, i) => 0.02 + (0.98 * i) / 49);
const PER_TIME = 40;

describe('v-prediction (docs/method.md §10)', () => {
  const { x, t } = fmStates(mixture4d, TIMES, PER_TIME, 11);
  const ideal = mixture4d.idealVelocity()(x, t);
  afterAll(() => tf.dispose([x, t, ideal]));

  for (const kind of ['cosine', 'linear'] as const) {
    it(`${kind}: the converted ideal v-predictor is the ideal velocity for all t in [0.02, 1]`, () => {
      const schedule = createDdpmSchedule({ kind });
      const converted = vToVelocity(idealV(schedule), schedule, { mode: 'snr' })(x, t);
      const e = rowRelativeErrors(converted, ideal);
      converted.dispose();
      // Measured: max 7.2e-7 (cosine), 8.2e-6 (linear, at t = 1, the extrapolated region).
      expect(maxOf(e)).toBeLessThan(1e-4);
      expect(median(e)).toBeLessThan(1e-6);
      expect(maxOf(e.slice(-PER_TIME))).toBeLessThan(1e-4);
    });
  }
});

describe('v-prediction training and adapters', () => {
  it('the training target is v = a e - s x0, so x0 = a x_n - s v and e = s x_n + a v', () => {
    const schedule = createDdpmSchedule({ kind: 'linear' });
    const x0 = tf.randomUniform([16, 5], -1, 1, 'float32', 3);
    const noise = tf.randomNormal([16, 5], 0, 1, 'float32', 4);
    const steps = tf.tensor1d(
      [0, 10, 100, 300, 500, 700, 900, 999, 1, 2, 3, 4, 5, 6, 7, 8],
      'int32',
    );
    const batch = ddpmTrainingBatch(x0, noise, steps, schedule, 'v');
    const n = steps.dataSync();
    const a = tf.tensor2d(Array.from(n, (k) => [Math.sqrt(schedule.alphaBar(k))]));
    const s = tf.tensor2d(Array.from(n, (k) => [Math.sqrt(1 - schedule.alphaBar(k))]));
    expect(maxAbsDiff(tf.sub(tf.mul(a, batch.xt), tf.mul(s, batch.target)), x0)).toBeLessThan(1e-5);
    expect(maxAbsDiff(tf.add(tf.mul(s, batch.xt), tf.mul(a, batch.target)), noise)).toBeLessThan(
      1e-5,
    );
    expect(batch.weight).toBeUndefined();
  });

  it('the objective spec selects it: config round trip, and velocityExpert goes through vToVelocity', () => {
    const objective = new DdpmObjective({ name: 'ddpm', prediction: 'v' });
    expect(objective.config).toEqual({
      name: 'ddpm',
      prediction: 'v',
      schedule: { kind: 'cosine', T: 1000, s: 0.008 },
    });
    expect(new DdpmObjective(JSON.parse(JSON.stringify(objective.config))).config).toEqual(
      objective.config,
    );
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const network = idealV(schedule);
    const { x, t } = fmStates(mixture4d, [0.2, 0.7, 1], 5, 3);
    const viaSpec = velocityExpert({ objective: objective.config, network })(x, t);
    const direct = vToVelocity(network, schedule, { mode: 'snr' })(x, t);
    expect(maxAbsDiff(viaSpec, direct)).toBe(0);
    // The same network read as epsilon would be far off: the spec, not the network, decides.
    const asEps = epsToVelocity(network, schedule)(x, t);
    expect(maxAbsDiff(asEps, direct)).toBeGreaterThan(0.1);
  });

  it('takes no loss weighting (weightings are defined on the epsilon loss)', () => {
    expect(
      () =>
        new DdpmObjective({ name: 'ddpm', prediction: 'v', lossWeighting: { kind: 'min-snr' } }),
    ).toThrow(/applies to epsilon prediction/);
    expect(() => new DdpmObjective({ name: 'ddpm', prediction: 'x0' as never })).toThrow(
      /valid: eps, v/,
    );
  });
});
