import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { velocityToEpsNetwork } from '../../src/conversion/velocity-to-eps.js';
import { GaussianMixture } from '../../src/gaussian-mixture.js';
import { ddim, ddimSteps } from '../../src/samplers/ddim.js';
import { euler } from '../../src/samplers/euler.js';
import { initialNoise } from '../../src/samplers/sample.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmTimeForLogSnr, fmVpScale } from '../../src/schedules/fm-log-snr.js';
import { mixture2d } from '../fixtures.js';
import { maxAbsDiff, moments, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

const MU = [0.5, -0.3];
const S = 0.5;
const gaussian = new GaussianMixture({ weights: [1], means: [MU], stds: [S] });

describe('ddimSteps', () => {
  it('spaces integer steps evenly from T - 1 down to 0', () => {
    expect(ddimSteps(5, 1000)).toEqual([999, 749, 500, 250, 0]);
    expect(ddimSteps(1, 1000)).toEqual([999]);
    const all = ddimSteps(1000, 1000);
    expect(new Set(all).size).toBe(1000);
    expect(() => ddimSteps(1001, 1000)).toThrow(/DDIM step count/);
  });
});

describe('ddim', () => {
  for (const kind of ['cosine', 'linear'] as const) {
    it(`${kind}: on the ideal eps of N(mu, s^2 I), 250 steps reach the right moments (measured max per-sample error vs the exact ODE map: cosine 0.011, linear 0.021)`, () => {
      const schedule = createDdpmSchedule({ kind });
      const xT = initialNoise([2000, 2], 1);
      const out = ddim(gaussian.idealEpsilon(schedule), schedule, xT, ddimSteps(250, 1000));
      const exact = tf.add(tf.mul(xT, S), tf.tensor1d(MU));
      expect(maxAbsDiff(out, exact)).toBeLessThan(0.03);
      const m = moments(out);
      for (let d = 0; d < 2; d++) {
        expect(Math.abs(m.mean[d]! - MU[d]!)).toBeLessThan(4 * m.meanSe[d]!);
        expect(Math.abs(m.cov[d]![d]! - S * S)).toBeLessThan(4 * m.covSe[d]![d]!);
      }
    });
  }

  it('on a velocity expert (velocityToEpsNetwork) equals Euler on the matching FM times', () => {
    const schedule = createDdpmSchedule({ kind: 'linear' });
    const steps = ddimSteps(20, 1000);
    const xT = initialNoise([64, 2], 3);
    const viaDdim = ddim(
      velocityToEpsNetwork(mixture2d.idealVelocity(), schedule),
      schedule,
      xT,
      steps,
    );
    const grid = [...steps.map((n) => fmTimeForLogSnr(schedule.logSnr(n))), 0];
    // DDIM's state is on the VP path: x_t = x_vp sqrt((1 - t)^2 + t^2).
    const viaEuler = euler(mixture2d.idealVelocity(), tf.mul(xT, fmVpScale(grid[0]!)), grid);
    expect(maxAbsDiff(viaDdim, viaEuler)).toBeLessThan(1e-4);
  });

  it('pinned: seed 2024, 4 x 2 samples of the 2-D mixture, cosine, 10 steps', () => {
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const xT = initialNoise([4, 2], 2024);
    const out = ddim(mixture2d.idealEpsilon(schedule), schedule, xT, ddimSteps(10, 1000));
    const expected = [0.48229411, 0.55963039, -0.78049767, -0.24161115];
    Array.from(out.dataSync().slice(0, 4)).forEach((v, i) => {
      expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5);
    });
  });

  it('does not leak over a 50-step loop; rejects bad steps', () => {
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const net = mixture2d.idealEpsilon(schedule);
    const xT = initialNoise([16, 2], 5);
    ddim(net, schedule, xT, [999, 0]).dispose();
    const before = tf.memory().numTensors;
    ddim(net, schedule, xT, ddimSteps(50, 1000)).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => ddim(net, schedule, xT, [500, 600])).toThrow(/decrease/);
    expect(() => ddim(net, schedule, xT, [1000])).toThrow(/DDIM step 0/);
  });
});
