import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertKnownKeys } from '../config-error.js';
import { perSample } from '../per-sample.js';
import { DdpmSchedule, type DdpmScheduleConfig } from '../schedules/ddpm-schedule.js';
import { deriveSeed } from '../seed.js';
import { meanSquaredError } from './mean-squared-error.js';
import type { Objective, TrainingBatch } from './objective.js';

/** `[batch]` int32 DDPM steps uniform on {0, ..., T - 1}, deterministic in `seed`. */
export function sampleDdpmSteps(batch: number, T: number, seed: number): Tensor1D {
  // tf.randomUniformInt rounds (both ends get half weight), so floor a float draw instead.
  const u = tf.randomUniform([batch], 0, 1, 'float32', deriveSeed(seed));
  const values = u.dataSync();
  u.dispose();
  const steps = new Int32Array(batch);
  for (let i = 0; i < batch; i++) steps[i] = Math.min(Math.floor(values[i]! * T), T - 1);
  return tf.tensor1d(steps, 'int32');
}

/**
 * The DDPM epsilon-prediction training pair (Ho et al. 2020, eq. 14; method.md §3):
 * `x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) e`, target `e`, network timestep `tau = n`.
 *
 * @param x0 - `[B, ...]` data; @param noise - `[B, ...]` e; @param steps - `[B]` integer steps.
 */
export function ddpmTrainingBatch(
  x0: Tensor,
  noise: Tensor,
  steps: Tensor1D,
  schedule: DdpmSchedule,
): TrainingBatch {
  const n = steps.dataSync();
  const signal = new Float64Array(n.length);
  const noiseScale = new Float64Array(n.length);
  for (let i = 0; i < n.length; i++) {
    const abar = schedule.alphaBar(n[i]!);
    signal[i] = Math.sqrt(abar);
    noiseScale[i] = Math.sqrt(1 - abar);
  }
  return tf.tidy(() => {
    const xt = tf.add(
      tf.mul(perSample(signal, x0.rank), x0),
      tf.mul(perSample(noiseScale, x0.rank), noise),
    );
    return { xt, tau: tf.cast(steps, 'float32') as Tensor1D, target: tf.clone(noise) };
  });
}

/** The DDPM epsilon-prediction objective over a {@link DdpmSchedule} (method.md §3). */
export class DdpmEpsObjective implements Objective {
  readonly name = 'ddpm';
  readonly config: { name: 'ddpm'; schedule: DdpmScheduleConfig };
  readonly schedule: DdpmSchedule;

  constructor(config: { name: 'ddpm'; schedule: DdpmScheduleConfig }) {
    assertKnownKeys(config, ['name', 'schedule'], 'ddpm objective');
    this.schedule = new DdpmSchedule(config.schedule);
    this.config = { name: 'ddpm', schedule: this.schedule.config };
  }

  sampleTraining(x0: Tensor, seed: number): TrainingBatch {
    return tf.tidy(() => {
      const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 1));
      const steps = sampleDdpmSteps(x0.shape[0]!, this.schedule.T, deriveSeed(seed, 2));
      return ddpmTrainingBatch(x0, noise, steps, this.schedule);
    });
  }

  loss(pred: Tensor, target: Tensor): Scalar {
    return meanSquaredError(pred, target);
  }
}
