import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { VelocityModel } from '../../src/model.js';
import { heun } from '../../src/samplers/heun.js';
import { initialNoise } from '../../src/samplers/sample.js';
import { timeGrid } from '../../src/samplers/time-grid.js';
import { mixture2d } from '../fixtures.js';
import { useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

describe('heun', () => {
  it('pinned: seed 2024, 4 x 2 samples of the 2-D mixture, 10 steps, shift 2', () => {
    const xT = initialNoise([4, 2], 2024);
    const out = heun(mixture2d.idealVelocity(), xT, timeGrid(10, { shift: 2 }));
    const expected = [0.49185503, 0.55235147, -0.80300343, -0.23877648];
    Array.from(out.dataSync().slice(0, 4)).forEach((v, i) => {
      expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5);
    });
  });

  it('averages both slopes, and the step to t = 0 is Euler (2 N - 1 model calls)', () => {
    const times: number[] = [];
    // v(x, t) = t: exact for the trapezoid rule, x(0) = x(1) - 1/2.
    const model: VelocityModel = (x: Tensor, t: Tensor1D) => {
      times.push(t.dataSync()[0]!);
      return tf.mul(tf.onesLike(x), tf.reshape(t, [-1, 1]));
    };
    const out = heun(model, tf.zeros([1, 1]), [1, 0.5, 0.25, 0]);
    expect(times).toEqual([1, 0.5, 0.5, 0.25, 0.25]);
    // Trapezoid on [1, 0.5] and [0.5, 0.25] (exact: -0.375, -0.09375), Euler on [0.25, 0]: -0.0625.
    expect(out.dataSync()[0]).toBeCloseTo(-0.375 - 0.09375 - 0.0625, 6);
  });

  it('does not leak over a 50-step loop and leaves xT alone', () => {
    const xT = initialNoise([16, 2], 5);
    const model = mixture2d.idealVelocity();
    heun(model, xT, timeGrid(2)).dispose();
    const before = tf.memory().numTensors;
    heun(model, xT, timeGrid(50)).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(xT.isDisposed).toBe(false);
  });
});
