import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { combineExperts } from '../../src/ensemble/combine.js';
import type { CombineStrategy } from '../../src/ensemble/select-experts.js';
import type { Router, VelocityModel } from '../../src/model.js';
import { heun } from '../../src/samplers/heun.js';
import { initialNoise } from '../../src/samplers/sample.js';
import { timeGrid } from '../../src/samplers/time-grid.js';
import { fmStates, mixture2d } from '../fixtures.js';
import { maxAbsDiff, maxOf, moments, rowRelativeErrors, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

const K = mixture2d.K;
const experts = Array.from({ length: K }, (_, k) => mixture2d.componentVelocity(k));
const router = mixture2d.posterior();

describe('combineExperts with the analytic experts and router of a 2-D, 3-component mixture', () => {
  it('full equals the analytic marginal velocity', () => {
    const { x, t } = fmStates(mixture2d, [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 1], 50, 21);
    const { model } = combineExperts(experts, router, { kind: 'full' });
    const errors = rowRelativeErrors(model(x, t), mixture2d.idealVelocity()(x, t));
    expect(maxOf(errors)).toBeLessThan(1e-5);
  });

  it('sampling with the full combination (Heun, 50 steps, 8000 samples) matches the mixture mean and covariance within 4 standard errors', () => {
    const { model, stats } = combineExperts(experts, router, { kind: 'full' });
    const out = heun(model, initialNoise([8000, 2], 3), timeGrid(50));
    const m = moments(out);
    const mean = mixture2d.mean();
    const cov = mixture2d.covariance();
    for (let a = 0; a < 2; a++) {
      expect(Math.abs(m.mean[a]! - mean[a]!)).toBeLessThan(4 * m.meanSe[a]!);
      for (let b = 0; b < 2; b++) {
        expect(Math.abs(m.cov[a]![b]! - cov[a]![b]!)).toBeLessThan(4 * m.covSe[a]![b]!);
      }
    }
    // Heun: 2 calls per step, 1 for the last step to t = 0.
    expect(stats.calls.length).toBe(99);
    expect(stats.calls.every((c) => c.rows.every((r) => r === 8000))).toBe(true);
  });

  it('top-1 evaluates exactly one expert per sample per step; full evaluates all K', () => {
    const top1 = combineExperts(experts, router, { kind: 'top-k', k: 1 });
    const full = combineExperts(experts, router, { kind: 'full' });
    const xT = initialNoise([500, 2], 4);
    const grid = timeGrid(10);
    heun(top1.model, xT, grid).dispose();
    heun(full.model, xT, grid).dispose();
    expect(top1.stats.calls.length).toBe(19);
    for (const call of top1.stats.calls) {
      expect(call.rows.reduce((a, b) => a + b, 0)).toBe(500);
    }
    // Early (t = 1) the posterior is the prior, so top-1 is component 0 everywhere;
    // late, every component gets its own samples.
    expect(top1.stats.calls[0]!.rows).toEqual([500, 0, 0]);
    // (measured rows at the last step: [401, 76, 23]; the prior is [250, 150, 100]: top-1 commits
    // samples to the highest-prior expert while the posterior is still flat.)
    expect(top1.stats.calls.at(-1)!.rows.every((r) => r > 0)).toBe(true);
    for (const call of full.stats.calls) expect(call.rows).toEqual([500, 500, 500]);
    expect(full.stats.rowsPerExpert).toEqual([9500, 9500, 9500]);
    expect(top1.stats.rowsPerExpert.reduce((a, b) => a + b, 0)).toBe(9500);
  });
});

/** Expert k returns the one-hot vector e_k, so the combined output row is the weight vector. */
const oneHotExperts: VelocityModel[] = Array.from(
  { length: 4 },
  (_, k) => (x: Tensor) =>
    tf.tidy(() =>
      tf.mul(tf.onesLike(x), tf.tensor2d([[0, 1, 2, 3].map((j) => (j === k ? 1 : 0))])),
    ),
);

describe('combineExperts weights and evaluated rows', () => {
  const probs = [
    [0.4, 0.3, 0.2, 0.1],
    [0.05, 0.05, 0.6, 0.3],
    [0.25, 0.25, 0.25, 0.25],
    [0.1, 0.45, 0.05, 0.4],
    [0.0, 0.0, 0.0, 1.0],
  ];
  const fixedRouter: Router = () => tf.tensor2d(probs);
  const x = tf.zeros([5, 4]);
  const t = tf.fill([5], 0.5) as Tensor1D;
  const run = (strategy: CombineStrategy) => {
    const { model, stats } = combineExperts(oneHotExperts, fixedRouter, strategy);
    const w = model(x, t).arraySync() as number[][];
    return { w, rows: stats.calls[0]!.rows };
  };

  it('top-k: k experts per sample, weights renormalised to sum 1, rows per expert = samples selecting it', () => {
    const { w, rows } = run({ kind: 'top-k', k: 2 });
    for (const row of w) {
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      expect(row.filter((v) => v > 0).length).toBeLessThanOrEqual(2);
    }
    expect(w[0]![0]).toBeCloseTo(0.4 / 0.7, 6);
    expect(w[0]![1]).toBeCloseTo(0.3 / 0.7, 6);
    expect(w[1]![2]).toBeCloseTo(0.6 / 0.9, 6);
    expect(w[2]!.slice(0, 2)).toEqual([0.5, 0.5]); // ties go to the lower index
    // Selected: {0, 1}, {2, 3}, {0, 1}, {1, 3}, {3, 0}; sample 4 keeps expert 0 on a tie at p = 0,
    // so expert 0 runs on it with weight 0.
    expect(rows).toEqual([3, 3, 1, 3]);
    const weighted = [0, 1, 2, 3].map((k) => probs.filter((_, b) => w[b]![k]! > 0).length);
    expect(weighted).toEqual([2, 3, 1, 3]);
  });

  it('top-1 puts weight 1 on the argmax', () => {
    const { w, rows } = run({ kind: 'top-k', k: 1 });
    expect(w.map((row) => row.indexOf(1))).toEqual([0, 2, 0, 1, 3]);
    expect(rows).toEqual([2, 1, 1, 1]);
  });

  it('threshold keeps p >= tau and always the argmax', () => {
    const { w } = run({ kind: 'threshold', tau: 0.3 });
    expect(w[0]![0]).toBeCloseTo(0.4 / 0.7, 6);
    expect(w[0]![1]).toBeCloseTo(0.3 / 0.7, 6);
    expect(w[3]![1]).toBeCloseTo(0.45 / 0.85, 6);
    expect(w[2]).toEqual([1, 0, 0, 0]); // nothing reaches 0.3: the argmax alone
    const high = run({ kind: 'threshold', tau: 0.99 });
    expect(high.w.map((row) => row.indexOf(1))).toEqual([0, 2, 0, 1, 3]);
  });

  it('full keeps every expert with the router weights', () => {
    const { w, rows } = run({ kind: 'full' });
    w.forEach((row, b) => {
      row.forEach((v, k) => {
        expect(v).toBeCloseTo(probs[b]![k]!, 6);
      });
    });
    expect(rows).toEqual([5, 5, 5, 5]);
  });

  it('gathers labels with their rows', () => {
    const seen: number[][] = [];
    const labelled: VelocityModel[] = [0, 1].map(() => (xx: Tensor, _t: Tensor1D, l?: Tensor1D) => {
      seen.push(Array.from(l!.dataSync()));
      return tf.zerosLike(xx);
    });
    const r: Router = () =>
      tf.tensor2d([
        [0.9, 0.1],
        [0.2, 0.8],
        [0.7, 0.3],
      ]);
    const { model } = combineExperts(labelled, r, { kind: 'top-k', k: 1 });
    model(tf.zeros([3, 2]), tf.fill([3], 0.5) as Tensor1D, tf.tensor1d([10, 11, 12], 'int32'));
    expect(seen).toEqual([[10, 12], [11]]);
  });

  it('does not leak tensors', () => {
    const { model } = combineExperts(oneHotExperts, fixedRouter, { kind: 'top-k', k: 2 });
    model(x, t).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) model(x, t).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('unknown strategies and mis-shaped routers throw', () => {
    expect(() =>
      combineExperts(oneHotExperts, fixedRouter, { kind: 'top-p' } as unknown as CombineStrategy),
    ).toThrow(/valid: full, threshold, top-k/);
    expect(() => combineExperts(oneHotExperts, fixedRouter, { kind: 'top-k', k: 0 })).toThrow(/k/);
    const { model } = combineExperts(oneHotExperts.slice(0, 3), fixedRouter, { kind: 'full' });
    expect(() => model(x, t)).toThrow(/expected \[5, 3\]/);
  });
});

describe('combineExperts agrees with direct weighting', () => {
  it('top-2 on the mixture equals the renormalised two-expert sum computed by hand', () => {
    const { x, t } = fmStates(mixture2d, [0.4], 30, 8);
    const { model } = combineExperts(experts, router, { kind: 'top-k', k: 2 });
    const p = router(x, t).arraySync();
    const v = experts.map((e) => e(x, t).arraySync() as number[][]);
    const expected = p.map((row, b) => {
      const [i, j] = [0, 1, 2].sort((a, c) => row[c]! - row[a]!);
      const z = row[i!]! + row[j!]!;
      return [0, 1].map((d) => (row[i!]! * v[i!]![b]![d]! + row[j!]! * v[j!]![b]![d]!) / z);
    });
    expect(maxAbsDiff(model(x, t), tf.tensor2d(expected))).toBeLessThan(1e-5);
  });
});
