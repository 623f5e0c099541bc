import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { epsToVelocity } from '../src/conversion/eps-to-velocity.js';
import { type ExpertSpec, velocityExpert } from '../src/expert-adapter.js';
import type { Network } from '../src/model.js';
import { createDdpmSchedule } from '../src/schedules/ddpm-schedule.js';
import { fmStates, mixture4d } from './fixtures.js';
import { maxAbsDiff, useCpuBackend } from './helpers.js';

beforeAll(useCpuBackend);

describe('velocityExpert', () => {
  it('an FM expert is its network at tau = 999 t, labels passed through', () => {
    const seen: { tau: number[]; labels: number[] | undefined }[] = [];
    const network: Network = (x: Tensor, tau: Tensor1D, labels?: Tensor1D) => {
      seen.push({
        tau: Array.from(tau.dataSync()),
        labels: labels && Array.from(labels.dataSync()),
      });
      return tf.mul(x, 2);
    };
    const model = velocityExpert({ objective: 'fm', network });
    const v = model(tf.ones([2, 3]), tf.tensor1d([0.5, 1]), tf.tensor1d([3, 7], 'int32'));
    expect(Array.from(v.dataSync())).toEqual([2, 2, 2, 2, 2, 2]);
    expect(seen[0]!.tau[0]).toBeCloseTo(499.5, 4);
    expect(seen[0]!.tau[1]).toBe(999);
    expect(seen[0]!.labels).toEqual([3, 7]);
  });

  it('a DDPM expert goes through epsToVelocity (schedule instance or config)', () => {
    const schedule = createDdpmSchedule({ kind: 'linear' });
    const network = mixture4d.idealEpsilon(schedule);
    const { x, t } = fmStates(mixture4d, [0.3, 0.6], 5, 1);
    const direct = epsToVelocity(network, schedule)(x, t);
    const fromConfig = velocityExpert({ objective: 'ddpm', network, schedule: { kind: 'linear' } });
    const fromInstance = velocityExpert({
      objective: 'ddpm',
      network,
      schedule,
      conversion: { mode: 'snr' },
    });
    expect(maxAbsDiff(fromConfig(x, t), direct)).toBe(0);
    expect(maxAbsDiff(fromInstance(x, t), mixture4d.idealVelocity()(x, t))).toBeLessThan(1e-4);
    const naive = velocityExpert({
      objective: 'ddpm',
      network,
      schedule,
      conversion: { mode: 'naive' },
    });
    expect(maxAbsDiff(naive(x, t), direct)).toBeGreaterThan(0.1);
  });

  it('a DDPM expert without a schedule or an unknown objective throws', () => {
    const network: Network = (x) => tf.clone(x);
    expect(() => velocityExpert({ objective: 'ddpm', network })).toThrow(/schedule/);
    expect(() => velocityExpert({ objective: 'edm', network } as unknown as ExpertSpec)).toThrow(
      /valid: ddpm, fm/,
    );
    expect(() => velocityExpert({ objective: 'fm', network, conversion: { mode: 'snr' } })).toThrow(
      /neither/,
    );
  });
});
