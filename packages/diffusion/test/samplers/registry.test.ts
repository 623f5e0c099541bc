import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { velocityToEpsNetwork } from '../../src/conversion/velocity-to-eps.js';
import { ddim, ddimSteps } from '../../src/samplers/ddim.js';
import { ddimGrid, ddimSampler } from '../../src/samplers/ddim-sampler.js';
import { euler } from '../../src/samplers/euler.js';
import { SAMPLER_NAMES, samplerEntry } from '../../src/samplers/registry.js';
import { initialNoise } from '../../src/samplers/sample.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmTimeForLogSnr, fmVpScale } from '../../src/schedules/fm-log-snr.js';
import { mixture2d } from '../fixtures.js';
import { maxAbsDiff, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

describe('samplers through one registry and one signature', () => {
  it('lists euler, heun, ddim; an unknown name throws listing them', () => {
    expect(SAMPLER_NAMES).toEqual(['euler', 'heun', 'ddim']);
    expect(() => samplerEntry('dpm++')).toThrow(/valid: euler, heun, ddim/);
    expect(samplerEntry('heun').evaluationsPerStep).toBe(2);
  });

  it('every sampler run one grid step at a time gives exactly the pixels of one call (callers stepping to yield rely on it)', () => {
    const model = mixture2d.idealVelocity();
    const xT = initialNoise([16, 2], 3);
    for (const name of SAMPLER_NAMES) {
      const { sampler, grid } = samplerEntry(name);
      const times = grid(7);
      const whole = sampler(model, xT, times, { x0Clamp: [-1, 1] });
      let x = xT;
      for (let i = 0; i + 1 < times.length; i++)
        x = sampler(model, x, [times[i]!, times[i + 1]!], { x0Clamp: [-1, 1] });
      expect(Array.from(x.dataSync()), name).toEqual(Array.from(whole.dataSync()));
    }
  });

  it('DDIM without a clip is Euler on the same grid (DDIM is Euler on the FM path)', () => {
    const model = mixture2d.idealVelocity();
    const xT = initialNoise([64, 2], 5);
    const grid = ddimGrid(12);
    expect(grid[0]).toBe(1);
    expect(grid.at(-1)).toBe(0);
    expect(grid).toHaveLength(13);
    const a = ddimSampler(model, xT, grid);
    const b = euler(model, xT, grid);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
  });

  it('DDIM on the FM path equals native DDIM on the VP path at the SNR-matched steps', () => {
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const model = mixture2d.idealVelocity();
    const steps = ddimSteps(10, schedule.T);
    const grid = ddimGrid(10);
    // Start both at the state of step T - 1 (not pure noise): the FM state is the VP state x scale.
    const t0 = fmTimeForLogSnr(schedule.logSnr(steps[0]!));
    const xVp = initialNoise([64, 2], 8);
    const xFm = tf.mul(xVp, fmVpScale(t0));
    const fmGrid = [t0, ...grid.slice(1)];
    const native = ddim(velocityToEpsNetwork(model, schedule), schedule, xVp, steps, {
      x0Clamp: [-1, 1],
    });
    const onFm = ddimSampler(model, xFm, fmGrid, { x0Clamp: [-1, 1] });
    // float32: the first step divides by sqrt(abar_{T-1}) ~ 5e-5 on the VP side (measured 3e-4).
    expect(maxAbsDiff(native, onFm)).toBeLessThan(2e-3);
  });
});
