/**
 * The loss a replica differentiates, by task: regression onto the objective's target (DDPM
 * epsilon or FM velocity, docs/method.md section 3) for experts, cross-entropy over clusters for
 * routers (docs/method.md section 5). A task is a serialisable spec so worker threads can rebuild it.
 */
import { createObjective, type ObjectiveConfig } from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';
import './gradients.js';
import type { TrainableNetwork } from './networks.js';

/** What the loss is: `regression` under an objective, or `classification` over clusters. */
export type TaskSpec =
  | { kind: 'regression'; objective: ObjectiveConfig }
  | { kind: 'classification' };

/**
 * One batch as the network sees it. Regression: `x` = x_t `[B, ...]`, `tau` `[B]` float32,
 * `target` `[B, ...]`, optional `labels` `[B]` int32 (class conditioning). Classification: `x`,
 * `tau`, `classes` `[B]` int32 cluster ids, optional `labels` `[B]` int32 (a class-conditional
 * router's input classes).
 */
export interface StepBatch {
  x: tf.Tensor;
  tau: tf.Tensor;
  target?: tf.Tensor;
  /** Regression: `[B]` per-sample loss weights (the objective's loss weighting), if any. */
  weight?: tf.Tensor;
  labels?: tf.Tensor;
  classes?: tf.Tensor;
}

/** The batch's mean loss as a function of the network's current parameters. */
export type LossFn = (batch: StepBatch) => tf.Scalar;

/**
 * The loss of a task for a network: the objective's loss (mean squared error) between the
 * network's prediction and the target, or the mean cross-entropy of the logits against the
 * cluster ids. Differentiable with respect to the network's parameters.
 */
export function createLoss(task: TaskSpec, network: TrainableNetwork): LossFn {
  if (task.kind === 'regression') {
    const objective = createObjective(task.objective);
    return (batch) => {
      if (!batch.target) throw new Error('regression loss: the batch has no target');
      const target = batch.target;
      return tf.tidy(() =>
        objective.loss(
          network.apply(batch.x, batch.tau, batch.labels),
          target,
          batch.weight as tf.Tensor1D | undefined,
        ),
      );
    };
  }
  return (batch) => {
    if (!batch.classes) throw new Error('classification loss: the batch has no classes');
    const classes = batch.classes;
    return tf.tidy(() => {
      // A class-conditional router also gets each row's class (or the null class).
      const logits = network.apply(batch.x, batch.tau, batch.labels); //            [B, K]
      const K = logits.shape[1] as number;
      // Compared with a range rather than tf.oneHot, which refuses K = 1 (a monolith's router).
      const oneHot = tf.cast(
        tf.equal(tf.reshape(tf.cast(classes, 'int32'), [-1, 1]), tf.range(0, K, 1, 'int32')),
        'float32',
      ); //                                                                         [B, K]
      const logp = tf.logSoftmax(logits); //                                        [B, K]
      return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), 1))) as tf.Scalar; //     []
    });
  };
}
