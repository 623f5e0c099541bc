import type { Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  DdpmObjective as DdpmEpsObjective,
  ddpmTrainingBatch,
  sampleDdpmSteps,
} from '../../src/objectives/ddpm-objective.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { maxAbsDiff, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

describe('ddpmTrainingBatch', () => {
  it('x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) e, target e, tau = n', () => {
    const schedule = createDdpmSchedule({ kind: 'linear' });
    const x0 = tf.tensor2d([[1, -1]]);
    const e = tf.tensor2d([[0.5, 2]]);
    const { xt, tau, target } = ddpmTrainingBatch(
      x0,
      e,
      tf.tensor1d([499], 'int32') as Tensor1D,
      schedule,
    );
    const a = schedule.alphasCumprod[499]!;
    const [x1, x2] = xt.dataSync();
    expect(x1).toBeCloseTo(Math.sqrt(a) + Math.sqrt(1 - a) * 0.5, 6);
    expect(x2).toBeCloseTo(-Math.sqrt(a) + Math.sqrt(1 - a) * 2, 6);
    expect(Array.from(target.dataSync())).toEqual([0.5, 2]);
    expect(tau.dtype).toBe('float32');
    expect(Array.from(tau.dataSync())).toEqual([499]);
  });
});

describe('sampleDdpmSteps', () => {
  it('uniform integers on {0, ..., T - 1}, both ends included, deterministic in the seed', () => {
    const steps = sampleDdpmSteps(50000, 10, 9);
    const counts = new Array<number>(10).fill(0);
    for (const n of steps.dataSync()) counts[n]!++;
    // Each count ~ Binomial(50000, 0.1): sd 67.
    for (const c of counts) expect(Math.abs(c - 5000)).toBeLessThan(4 * 67);
    expect(steps.dtype).toBe('int32');
    expect(maxAbsDiff(sampleDdpmSteps(32, 1000, 0), sampleDdpmSteps(32, 1000, 0))).toBe(0);
  });
});

describe('DdpmEpsObjective', () => {
  const objective = new DdpmEpsObjective({ name: 'ddpm', schedule: { kind: 'cosine' } });

  it('stores the resolved schedule config', () => {
    expect(objective.config).toEqual({
      name: 'ddpm',
      schedule: { kind: 'cosine', T: 1000, s: 0.008 },
    });
  });

  it('sampleTraining is deterministic and self-consistent: x0 = (x_n - sqrt(1 - abar) e) / sqrt(abar)', () => {
    const x0 = tf.randomUniform([64, 6], -1, 1, 'float32', 4);
    const a = objective.sampleTraining(x0, 5);
    const b = objective.sampleTraining(x0, 5);
    expect(maxAbsDiff(a.xt, b.xt)).toBe(0);
    const n = a.tau.dataSync();
    // Keep steps where sqrt(abar) is not tiny so float32 recovery is meaningful.
    const rows = Array.from(n.keys()).filter((i) => n[i]! < 900);
    const abar = rows.map((i) => objective.schedule.alphasCumprod[n[i]!]!);
    const idx = tf.tensor1d(rows, 'int32');
    const recovered = tf.div(
      tf.sub(
        tf.gather(a.xt, idx),
        tf.mul(tf.tensor2d(abar.map((v) => [Math.sqrt(1 - v)])), tf.gather(a.target, idx)),
      ),
      tf.tensor2d(abar.map((v) => [Math.sqrt(v)])),
    );
    expect(maxAbsDiff(recovered, tf.gather(x0, idx))).toBeLessThan(1e-4);
    expect(Array.from(n).every((v) => Number.isInteger(v) && v >= 0 && v < 1000)).toBe(true);
  });
});
