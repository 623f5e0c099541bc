import type { Tensor } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { epsToVelocity } from '../conversion/eps-to-velocity.js';
import type { DdpmPrediction } from './ddpm-prediction.js';

/**
 * Epsilon prediction (Ho et al. 2020, eq. 14; docs/method.md §3): target `e`; converted to
 * velocity by {@link epsToVelocity} (docs/method.md §4).
 */
export const epsPrediction: DdpmPrediction = {
  weighted: true,
  target: (_x0: Tensor, noise: Tensor) => tf.clone(noise),
  toVelocity: (network, schedule, conversion) => epsToVelocity(network, schedule, conversion),
};
