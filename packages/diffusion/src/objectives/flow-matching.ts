import { deriveSeed } from '@archipelago/random';
import type { Scalar, Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { assertInRange, assertKnownKeys, assertOneOf } from '../config-error.js';
import { perSample } from '../per-sample.js';
import { meanSquaredError } from './mean-squared-error.js';
import type { FmObjectiveConfig, Objective, TrainingBatch } from './objective.js';

/**
 * How FM training times are drawn (docs/method.md §3): uniform on [0, 1), or logit-normal,
 * `t = sigmoid(mean + std z)` with z ~ N(0, 1) (defaults mean 0, std 1).
 */
export type FmTimeSampling =
  | { kind: 'uniform' }
  | { kind: 'logit-normal'; mean?: number; std?: number };

/** The valid `kind`s of {@link FmTimeSampling}. */
export const FM_TIME_SAMPLING_KINDS = ['logit-normal', 'uniform'] as const;

/** Checks a time-sampling config and fills its defaults. */
export function resolveFmTimeSampling(config: FmTimeSampling): FmTimeSampling {
  const kind: unknown = (config as { kind?: unknown }).kind;
  assertOneOf(kind, FM_TIME_SAMPLING_KINDS, 'FM time sampling kind');
  if (config.kind === 'uniform') {
    assertKnownKeys(config, ['kind'], 'uniform time sampling');
    return { kind: 'uniform' };
  }
  assertKnownKeys(config, ['kind', 'mean', 'std'], 'logit-normal time sampling');
  const mean = assertInRange(config.mean ?? 0, -10, 10, 'logit-normal mean');
  const std = assertInRange(config.std ?? 1, 0, 10, 'logit-normal std');
  return { kind: 'logit-normal', mean, std };
}

/** `[batch]` FM training times in [0, 1] drawn from `timeSampling`, deterministic in `seed`. */
export function sampleFmTimes(batch: number, timeSampling: FmTimeSampling, seed: number): Tensor1D {
  const c = resolveFmTimeSampling(timeSampling);
  if (c.kind === 'uniform') return tf.randomUniform([batch], 0, 1, 'float32', deriveSeed(seed));
  return tf.tidy(() =>
    tf.sigmoid(tf.randomNormal([batch], c.mean, c.std, 'float32', deriveSeed(seed))),
  );
}

/**
 * The rectified-flow training pair (docs/method.md §3): `x_t = (1 - t) x0 + t e`, target
 * `v = e - x0`, network timestep `tau = 999 t`.
 *
 * @param x0 - `[B, ...]` data; @param noise - `[B, ...]` e ~ N(0, I); @param t - `[B]` in [0, 1].
 */
export function fmTrainingBatch(x0: Tensor, noise: Tensor, t: Tensor1D): TrainingBatch {
  return tf.tidy(() => {
    const tb = perSample(t, x0.rank);
    const xt = tf.add(tf.mul(tf.sub(1, tb), x0), tf.mul(tb, noise));
    return { xt, tau: tf.mul(t, 999) as Tensor1D, target: tf.sub(noise, x0) };
  });
}

/** Checks an FM objective config and fills its defaults (uniform times when absent). */
export function resolveFmObjective(config: FmObjectiveConfig): Required<FmObjectiveConfig> {
  assertKnownKeys(config, ['name', 'timeSampling'], 'fm objective');
  return {
    name: 'fm',
    timeSampling: resolveFmTimeSampling(config.timeSampling ?? { kind: 'uniform' }),
  };
}

/** The flow-matching objective: velocity regression on the rectified path (docs/method.md §3). */
export class FlowMatchingObjective implements Objective {
  readonly name = 'fm';
  readonly config: Required<FmObjectiveConfig>;

  constructor(config: FmObjectiveConfig) {
    this.config = resolveFmObjective(config);
  }

  sampleTraining(x0: Tensor, seed: number): TrainingBatch {
    return tf.tidy(() => {
      const noise = tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 1));
      const t = sampleFmTimes(x0.shape[0]!, this.config.timeSampling, deriveSeed(seed, 2));
      return fmTrainingBatch(x0, noise, t);
    });
  }

  loss(pred: Tensor, target: Tensor, weight?: Tensor1D): Scalar {
    return meanSquaredError(pred, target, weight);
  }
}
