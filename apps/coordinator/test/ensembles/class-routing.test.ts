/**
 * Class-conditional routing in log space (src/ensembles/class-routing.ts), on real tensors: it
 * is the product rule where probabilities are representable, it keeps a row whose router is sure
 * of the wrong cluster (the product in probability space loses that row entirely), and a cluster
 * that never saw the class gets exactly nothing.
 */
import { initBackend } from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { classConditionalProbabilities } from '../../src/ensembles/class-routing.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

const rows = (t: tf.Tensor2D) => t.arraySync();

describe('class-conditional routing', () => {
  it('equals p(k | x_t) p(c | k), normalised, where the probabilities are representable', () => {
    const logits = tf.tensor2d([
      [0.3, -1.2, 2.0],
      [1.0, 1.0, 1.0],
    ]);
    const priors = [
      [0.5, 0.3, 0.2],
      [0.1, 0.0, 0.9],
    ];
    const got = rows(classConditionalProbabilities(logits, priors));
    const p = rows(tf.softmax(logits) as tf.Tensor2D);
    for (let r = 0; r < 2; r++) {
      const w = p[r]!.map((v, k) => v * priors[r]![k]!);
      const sum = w.reduce((a, b) => a + b, 0);
      for (let k = 0; k < 3; k++) expect(got[r]![k]!).toBeCloseTo(w[k]! / sum, 6);
    }
    // A cluster that never saw the class: exactly 0.
    expect(got[1]![1]).toBe(0);
  });

  it('keeps a row whose router is sure of a cluster that never saw the class', () => {
    // The router gives cluster 0 all its mass: clusters 1 and 2 are e^-120 and e^-125 behind,
    // below float32's smallest number, so their probabilities are 0.
    const logits = tf.tensor2d([[0, -120, -125]]);
    const prior = [[0, 0.5, 0.5]];
    const inProbabilitySpace = rows(tf.softmax(logits) as tf.Tensor2D)[0]!;
    expect(inProbabilitySpace[1]).toBe(0);
    expect(inProbabilitySpace[2]).toBe(0);
    // The product of probabilities is 0 everywhere: the row has no expert left.
    expect(inProbabilitySpace.map((v, k) => v * prior[0]![k]!).every((v) => v === 0)).toBe(true);
    // In log space: the class's clusters, in the router's ratio e^5 : 1.
    const got = rows(classConditionalProbabilities(logits, prior))[0]!;
    expect(got[0]).toBe(0);
    expect(got[1]! + got[2]!).toBeCloseTo(1, 6);
    expect(got[1]! / got[2]!).toBeCloseTo(Math.exp(5), 1);
  });

  it('leaves unconditional rows as the router says, row r taking prior r mod B (a batch stacked [cond; uncond])', () => {
    const logits = tf.tensor2d([
      [1, 0],
      [1, 0],
      [1, 0],
      [1, 0],
    ]);
    const got = rows(classConditionalProbabilities(logits, [[0, 1], null]));
    const router = rows(tf.softmax(logits) as tf.Tensor2D);
    expect(got[0]).toEqual([0, 1]);
    expect(got[2]).toEqual([0, 1]);
    for (const r of [1, 3])
      for (let k = 0; k < 2; k++) expect(got[r]![k]!).toBeCloseTo(router[r]![k]!, 6);
    expect(rows(classConditionalProbabilities(logits, null))).toEqual(router);
    expect(() => classConditionalProbabilities(logits, [[0.5, 0.25, 0.25]])).toThrow(
      /3 clusters for 2/,
    );
  });
});
