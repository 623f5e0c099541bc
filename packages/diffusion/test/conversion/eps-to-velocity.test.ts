import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type EpsToVelocityOptions,
  epsToVelocity,
  resolveEpsToVelocityOptions,
} from '../../src/conversion/eps-to-velocity.js';
import type { Network } from '../../src/model.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmLogSnr } from '../../src/schedules/fm-log-snr.js';
import { fmStates, mixture4d } from '../fixtures.js';
import { maxAbsDiff, maxOf, median, rowRelativeErrors, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

// 49 times in [0.02, 0.98] x 40 FM-path states each, every sample with its own t ([B] times).
const TIMES = Array.from({ length: 49 }, (_, i) => 0.02 + (0.96 * i) / 48);
const PER_TIME = 40;

describe('epsToVelocity on a 4-D, 3-component Gaussian mixture (closed-form ideal models)', () => {
  const { x, t } = fmStates(mixture4d, TIMES, PER_TIME, 7);
  const ideal = mixture4d.idealVelocity()(x, t); // [1960, 4]
  afterAll(() => tf.dispose([x, t, ideal]));

  const errors = (kind: 'cosine' | 'linear', options: EpsToVelocityOptions) => {
    const schedule = createDdpmSchedule({ kind });
    const converted = epsToVelocity(mixture4d.idealEpsilon(schedule), schedule, options)(x, t);
    const e = rowRelativeErrors(converted, ideal);
    converted.dispose();
    return e;
  };
  const atTime = (e: number[], time: number) => {
    const i = TIMES.findIndex((v) => Math.abs(v - time) < 1e-9);
    return e.slice(i * PER_TIME, (i + 1) * PER_TIME);
  };

  // Measured (CPU backend, float32 tensors, float64 closed forms): max relative error 4.9e-6
  // on both schedules, worst at t = 0.98 where 1 / (1 - t) = 50 amplifies float32 rounding.
  for (const kind of ['cosine', 'linear'] as const) {
    it(`${kind}, SNR mode: the converted ideal eps is the ideal velocity, relative error < 1e-4 for all t in [0.02, 0.98] (measured max 4.9e-6)`, () => {
      const e = errors(kind, { mode: 'snr' });
      expect(e.length).toBe(TIMES.length * PER_TIME);
      expect(maxOf(e)).toBeLessThan(1e-4);
      expect(median(e)).toBeLessThan(1e-6);
    });
  }

  it('linear, naive mode is far off: measured median relative error 0.95 at t = 0.5 and 0.97 over all t, vs max 4.9e-6 in SNR mode', () => {
    const naive = errors('linear', { mode: 'naive' });
    const snr = errors('linear', { mode: 'snr' });
    expect(median(atTime(naive, 0.5))).toBeGreaterThan(0.9);
    expect(median(naive)).toBeGreaterThan(0.9);
    expect(median(naive)).toBeGreaterThan(1e4 * maxOf(snr));
  });

  it('cosine, naive mode: measured median relative error 0.75 at t = 0.5, 0.75 over all t (mostly the missing input rescaling)', () => {
    const naive = errors('cosine', { mode: 'naive' });
    expect(median(atTime(naive, 0.5))).toBeGreaterThan(0.5);
    expect(median(naive)).toBeGreaterThan(0.5);
  });
});

describe('the naive step mapping n = round(999 t)', () => {
  it('is roughly SNR-aligned on cosine but far off on linear (SNR 0.084 instead of 1 at t = 0.5)', () => {
    const cosine = createDdpmSchedule({ kind: 'cosine' });
    const linear = createDdpmSchedule({ kind: 'linear' });
    expect(Math.abs(cosine.logSnr(500) - fmLogSnr(0.5))).toBeLessThan(0.05);
    expect(Math.exp(linear.logSnr(500))).toBeCloseTo(0.084, 2);
    expect(linear.stepForLogSnr(fmLogSnr(0.5))).toBeLessThan(300);
  });
});

describe('epsToVelocity mechanics', () => {
  const schedule = createDdpmSchedule({ kind: 'linear' });
  /** Records what the network was called with and returns a constant epsilon. */
  const recording = (value: number) => {
    const calls: { x: number[]; tau: number[] }[] = [];
    const net: Network = (x: Tensor, tau: Tensor1D) => {
      calls.push({ x: Array.from(x.dataSync()), tau: Array.from(tau.dataSync()) });
      return tf.fill(x.shape, value);
    };
    return { net, calls };
  };

  it('SNR mode feeds x_t / sqrt((1 - t)^2 + t^2) at the fractional n*; naive feeds x_t at round(999 t)', () => {
    const x = tf.tensor2d([[1, 2]]);
    const t = tf.tensor1d([0.3]);
    const snr = recording(0);
    epsToVelocity(snr.net, schedule)(x, t).dispose();
    const scale = Math.hypot(0.7, 0.3);
    expect(snr.calls[0]!.x[0]).toBeCloseTo(1 / scale, 6);
    expect(snr.calls[0]!.tau[0]).toBeCloseTo(schedule.stepForLogSnr(fmLogSnr(0.3)), 3);
    expect(Number.isInteger(snr.calls[0]!.tau[0])).toBe(false);
    const naive = recording(0);
    epsToVelocity(naive.net, schedule, { mode: 'naive' })(x, t).dispose();
    expect(naive.calls[0]).toEqual({ x: [1, 2], tau: [300] });
    tf.dispose([x, t]);
  });

  it('floors 1 - t at alphaMin and clamps x0_hat (v = eps - clamp((x - t eps) / max(1 - t, alphaMin)))', () => {
    const x = tf.tensor2d([
      [3, -3],
      [0.5, 0.25],
    ]);
    const t = tf.tensor1d([1, 0.995]);
    const v = epsToVelocity(recording(1).net, schedule, { mode: 'snr' })(x, t);
    // t = 1: (3 - 1) / 0.01 = 200 -> 20; (-3 - 1) / 0.01 -> -20.
    // t = 0.995: (0.5 - 0.995) / 0.01 = -49.5 -> -20; (0.25 - 0.995) / 0.01 -> -20.
    expect(Array.from(v.dataSync())).toEqual([1 - 20, 1 + 20, 1 + 20, 1 + 20]);
    const custom = epsToVelocity(recording(1).net, schedule, {
      mode: 'snr',
      alphaMin: 0.5,
      x0Clamp: [-100, 100],
    })(x, t);
    expect(custom.dataSync()[0]).toBeCloseTo(1 - 4, 5);
    tf.dispose([x, t, v, custom]);
  });

  it('is finite at t = 0 and t = 1 on the ideal epsilon', () => {
    const eps = mixture4d.idealEpsilon(schedule);
    const x = tf.tensor2d([
      [0.5, 0.1, -0.2, 0.3],
      [2, -1, 0.5, 0],
    ]);
    const t = tf.tensor1d([0, 1]);
    const v = epsToVelocity(eps, schedule)(x, t);
    expect(Array.from(v.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([x, t, v]);
  });

  it('per-sample times equal one call per time', () => {
    const eps = mixture4d.idealEpsilon(schedule);
    const model = epsToVelocity(eps, schedule);
    const { x, t } = fmStates(mixture4d, [0.2, 0.7], 3, 3);
    const together = model(x, t);
    const first = tf.slice(x, [0, 0], [3, 4]);
    const alone = model(first, tf.fill([3], 0.2) as Tensor1D);
    expect(maxAbsDiff(tf.slice(together, [0, 0], [3, 4]), alone)).toBeLessThan(1e-6);
  });

  it('does not leak tensors', () => {
    const model = epsToVelocity(mixture4d.idealEpsilon(schedule), schedule);
    const x = tf.ones([8, 4]);
    const t = tf.fill([8], 0.4) as Tensor1D;
    model(x, t).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) model(x, t).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, t]);
  });

  it('options are serialisable with defaults; an unknown mode throws listing the valid ones', () => {
    expect(resolveEpsToVelocityOptions({ mode: 'snr' })).toEqual({
      mode: 'snr',
      alphaMin: 0.01,
      x0Clamp: [-20, 20],
    });
    expect(() =>
      epsToVelocity(recording(0).net, schedule, {
        mode: 'exact',
      } as unknown as EpsToVelocityOptions),
    ).toThrow(/valid: naive, snr/);
    expect(() => resolveEpsToVelocityOptions({ mode: 'snr', x0Clamp: [1, -1] })).toThrow(/x0Clamp/);
  });
});
