import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { DdpmObjective, ddpmTrainingBatch } from '../../src/objectives/ddpm-objective.js';
import { lossWeight, resolveLossWeighting } from '../../src/objectives/loss-weighting.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmLogSnr, fmTimeForLogSnr } from '../../src/schedules/fm-log-snr.js';
import { useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

describe('loss weighting of epsilon experts (docs/method.md §11)', () => {
  it('fills defaults and refuses unknown kinds and keys, listing the valid ones', () => {
    expect(resolveLossWeighting({ kind: 'min-snr' })).toEqual({ kind: 'min-snr', gamma: 5 });
    expect(resolveLossWeighting({ kind: 'velocity' })).toEqual({ kind: 'velocity', max: 25 });
    expect(resolveLossWeighting({ kind: 'none' })).toEqual({ kind: 'none' });
    expect(() => resolveLossWeighting({ kind: 'p2' } as never)).toThrow(
      /valid: min-snr, none, velocity/,
    );
    expect(() => resolveLossWeighting({ kind: 'min-snr', k: 1 } as never)).toThrow(
      /valid: kind, gamma/,
    );
    expect(() => resolveLossWeighting({ kind: 'velocity', max: 0.5 })).toThrow(/\[1, /);
  });

  it('min-SNR-gamma: min(SNR, gamma) / SNR: 1 at low SNR, gamma / SNR above gamma', () => {
    const w = { kind: 'min-snr', gamma: 5 } as const;
    const abarAt = (snr: number) => snr / (1 + snr);
    expect(lossWeight(w, abarAt(0.5))).toBeCloseTo(1, 12);
    expect(lossWeight(w, abarAt(5))).toBeCloseTo(1, 12);
    expect(lossWeight(w, abarAt(50))).toBeCloseTo(0.1, 12);
  });

  it('velocity: the epsilon loss times the weight is the FM velocity loss at the matched time, truncated at max', () => {
    const w = { kind: 'velocity', max: 1e9 } as const;
    for (const t of [0.1, 0.5, 0.9, 0.99]) {
      const lambda = fmLogSnr(t);
      const abar = 1 / (1 + Math.exp(-lambda));
      // v error = eps error / (1 - t) on the FM path.
      expect(lossWeight(w, abar)).toBeCloseTo(1 / (1 - t) ** 2, 6);
      expect(fmTimeForLogSnr(lambda)).toBeCloseTo(t, 12);
    }
    expect(lossWeight({ kind: 'velocity', max: 25 }, 1e-6)).toBe(25);
  });

  it('the objective draws the weights with its steps and the loss applies them per sample', () => {
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const x0 = tf.randomUniform([6, 4], -1, 1, 'float32', 1);
    const noise = tf.randomNormal([6, 4], 0, 1, 'float32', 2);
    const steps = tf.tensor1d([0, 100, 400, 700, 900, 999], 'int32');
    const weighting = { kind: 'min-snr', gamma: 5 } as const;
    const batch = ddpmTrainingBatch(x0, noise, steps, schedule, 'eps', weighting);
    const expected = [0, 100, 400, 700, 900, 999].map((n) =>
      lossWeight(weighting, schedule.alphaBar(n)),
    );
    const got = Array.from(batch.weight!.dataSync());
    for (const [i, g] of got.entries()) expect(g).toBeCloseTo(expected[i]!, 5);
    const objective = new DdpmObjective({ name: 'ddpm', lossWeighting: weighting });
    expect(objective.config).toEqual({
      name: 'ddpm',
      schedule: { kind: 'cosine', T: 1000, s: 0.008 },
      lossWeighting: { kind: 'min-snr', gamma: 5 },
    });
    const pred = tf.zerosLike(batch.target);
    const weighted = objective.loss(pred, batch.target, batch.weight).dataSync()[0]!;
    const sq = tf.mean(tf.square(batch.target), 1).dataSync();
    const manual = Array.from(sq).reduce((acc, v, i) => acc + v * expected[i]!, 0) / 6;
    expect(weighted).toBeCloseTo(manual, 5);
    // A sampled batch carries weights; the neutral weighting carries none.
    expect(objective.sampleTraining(x0, 3).weight?.shape).toEqual([6]);
    expect(new DdpmObjective({ name: 'ddpm' }).sampleTraining(x0, 3).weight).toBeUndefined();
  });
});
