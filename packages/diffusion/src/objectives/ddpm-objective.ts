import { deriveSeed } from '@archipelago/random';
import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertKnownKeys, ConfigError } from '../config-error.js';
import { perSample } from '../per-sample.js';
import { DdpmSchedule, resolveDdpmScheduleConfig } from '../schedules/ddpm-schedule.js';
import { type DdpmPredictionName, predictionTarget } from './ddpm-prediction.js';
import { type LossWeighting, lossWeight, resolveLossWeighting } from './loss-weighting.js';
import { meanSquaredError } from './mean-squared-error.js';
import type { DdpmObjectiveConfig, Objective, TrainingBatch } from './objective.js';

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
 * Checks a DDPM objective config and puts it in canonical form: the schedule's defaults filled
 * in (cosine when absent); `prediction` and `lossWeighting` kept only where they differ from the
 * neutral `eps` and `none`, so configs written before those options existed are canonical.
 */
export function resolveDdpmObjective(config: DdpmObjectiveConfig): DdpmObjectiveConfig {
  assertKnownKeys(config, ['name', 'schedule', 'prediction', 'lossWeighting'], 'ddpm objective');
  const schedule = resolveDdpmScheduleConfig(config.schedule ?? { kind: 'cosine' });
  const prediction: DdpmPredictionName = config.prediction ?? 'eps';
  const target = predictionTarget(prediction);
  const weighting = resolveLossWeighting(config.lossWeighting ?? { kind: 'none' });
  if (weighting.kind !== 'none' && !target.weighted) {
    throw new ConfigError(
      `loss weighting ${weighting.kind} applies to epsilon prediction; ${prediction} prediction takes none`,
    );
  }
  return {
    name: 'ddpm',
    schedule,
    ...(prediction === 'eps' ? {} : { prediction }),
    ...(weighting.kind === 'none' ? {} : { lossWeighting: weighting }),
  };
}

/**
 * A DDPM-schedule training pair (Ho et al. 2020, eq. 14; docs/method.md §3, §10):
 * `x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) e`, the prediction's target (epsilon by default),
 * network timestep `tau = n`, and the per-sample loss weights unless the weighting is none.
 *
 * @param x0 - `[B, ...]` data; @param noise - `[B, ...]` e; @param steps - `[B]` integer steps.
 */
export function ddpmTrainingBatch(
  x0: Tensor,
  noise: Tensor,
  steps: Tensor1D,
  schedule: DdpmSchedule,
  prediction: DdpmPredictionName = 'eps',
  weighting: LossWeighting = { kind: 'none' },
): TrainingBatch {
  const n = steps.dataSync();
  const signal = new Float64Array(n.length);
  const noiseScale = new Float64Array(n.length);
  const weight = new Float64Array(n.length);
  for (let i = 0; i < n.length; i++) {
    const abar = schedule.alphaBar(n[i]!);
    signal[i] = Math.sqrt(abar);
    noiseScale[i] = Math.sqrt(1 - abar);
    weight[i] = lossWeight(weighting, abar);
  }
  return tf.tidy(() => {
    const a = perSample(signal, x0.rank);
    const s = perSample(noiseScale, x0.rank);
    const xt = tf.add(tf.mul(a, x0), tf.mul(s, noise));
    return {
      xt,
      tau: tf.cast(steps, 'float32') as Tensor1D,
      target: predictionTarget(prediction).target(x0, noise, a, s),
      ...(weighting.kind === 'none' ? {} : { weight: tf.tensor1d(Float32Array.from(weight)) }),
    };
  });
}

/** A DDPM-schedule objective over a {@link DdpmSchedule} (docs/method.md §3, §10, §11). */
export class DdpmObjective implements Objective {
  readonly name = 'ddpm';
  readonly config: DdpmObjectiveConfig;
  readonly schedule: DdpmSchedule;
  private readonly prediction: DdpmPredictionName;
  private readonly weighting: LossWeighting;

  constructor(config: DdpmObjectiveConfig) {
    this.config = resolveDdpmObjective(config);
    this.schedule = new DdpmSchedule(this.config.schedule!);
    this.prediction = this.config.prediction ?? 'eps';
    this.weighting = this.config.lossWeighting ?? { kind: 'none' };
  }

  sampleTraining(x0: Tensor, seed: number): TrainingBatch {
    return tf.tidy(() => {
      const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 1));
      const steps = sampleDdpmSteps(x0.shape[0]!, this.schedule.T, deriveSeed(seed, 2));
      return ddpmTrainingBatch(x0, noise, steps, this.schedule, this.prediction, this.weighting);
    });
  }

  loss(pred: Tensor, target: Tensor, weight?: Tensor1D): Scalar {
    return meanSquaredError(pred, target, weight);
  }
}
