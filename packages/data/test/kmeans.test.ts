import { initBackend } from '@archipelago/models';
import { createRng } from '@archipelago/random';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { kmeans, kmeansPlusPlus } from '../src/kmeans.js';

beforeAll(async () => {
  await initBackend();
});

/** Gaussian blobs (std 1) around centres 20 apart, with the given sizes. */
function blobs(sizes: number[], d: number, seed: number) {
  const rng = createRng(seed);
  const n = sizes.reduce((a, b) => a + b, 0);
  const points = new Float32Array(n * d);
  const truth = new Int32Array(n);
  let i = 0;
  sizes.forEach((size, b) => {
    const centre = Float64Array.from(
      { length: d },
      (_, j) => (j === b % d ? 20 : 0) * (b < d ? 1 : -1),
    );
    for (let s = 0; s < size; s++, i++) {
      truth[i] = b;
      for (let j = 0; j < d; j++) points[i * d + j] = centre[j]! + rng.normal();
    }
  });
  return { points, truth, n };
}

/** Adjusted Rand index of two labelings (Hubert & Arabie 1985). */
function adjustedRandIndex(a: Int32Array, b: Int32Array): number {
  const n = a.length;
  const table = new Map<string, number>();
  const rows = new Map<number, number>();
  const cols = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const key = `${a[i]},${b[i]}`;
    table.set(key, (table.get(key) ?? 0) + 1);
    rows.set(a[i]!, (rows.get(a[i]!) ?? 0) + 1);
    cols.set(b[i]!, (cols.get(b[i]!) ?? 0) + 1);
  }
  const c2 = (x: number): number => (x * (x - 1)) / 2;
  const sum = (m: Map<unknown, number>): number => [...m.values()].reduce((s, x) => s + c2(x), 0);
  const index = sum(table);
  const expected = (sum(rows) * sum(cols)) / c2(n);
  const max = (sum(rows) + sum(cols)) / 2;
  return (index - expected) / (max - expected);
}

describe('kmeans', () => {
  it('recovers well-separated blobs exactly', async () => {
    const { points, truth, n } = blobs([120, 80, 200, 50, 150], 6, 3);
    const tensorsBefore = tf.memory().numTensors;
    const result = await kmeans(points, n, 6, { k: 5, seed: 1 });
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(adjustedRandIndex(result.assignments, truth)).toBe(1);
    expect([...result.sizes].sort((x, y) => x - y)).toEqual([50, 80, 120, 150, 200]);
    expect(result.converged).toBe(true);
    // Inertia is the sum of squared distances to the returned centroids.
    let inertia = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < 6; j++)
        inertia += (points[i * 6 + j]! - result.centroids[result.assignments[i]! * 6 + j]!) ** 2;
    expect(result.inertia).toBeCloseTo(inertia, 0);
    // ~ n * d * variance 1 for the true partition.
    expect(result.inertia / (n * 6)).toBeGreaterThan(0.8);
    expect(result.inertia / (n * 6)).toBeLessThan(1.2);
  });

  it('recovers blobs when fitted on a subsample', async () => {
    const { points, truth, n } = blobs([300, 300, 300, 300], 4, 8);
    const result = await kmeans(points, n, 4, { k: 4, seed: 2, sampleSize: 100 });
    expect(result.fittedOn).toBe(100);
    expect(result.assignments.length).toBe(n);
    expect(adjustedRandIndex(result.assignments, truth)).toBe(1);
  });

  it('is deterministic for a seed and seed-dependent on ambiguous data', async () => {
    const rng = createRng(4);
    const n = 600;
    const points = Float32Array.from({ length: n * 2 }, () => rng.next());
    const a = await kmeans(points, n, 2, { k: 7, seed: 10 });
    const b = await kmeans(points, n, 2, { k: 7, seed: 10 });
    expect(b.assignments).toEqual(a.assignments);
    expect(b.centroids).toEqual(a.centroids);
    const others = await Promise.all(
      [11, 12, 13].map((seed) => kmeans(points, n, 2, { k: 7, seed })),
    );
    expect(others.some((o) => adjustedRandIndex(o.assignments, a.assignments) < 0.99)).toBe(true);
  });

  it('uses weights: k = 1 gives the weighted mean', async () => {
    const points = Float32Array.from([0, 0, 10, 0, 0, 10]);
    const weights = Float64Array.from([2, 1, 1]);
    const result = await kmeans(points, 3, 2, { k: 1, seed: 1, weights });
    expect(result.centroids[0]).toBeCloseTo(2.5, 5);
    expect(result.centroids[1]).toBeCloseTo(2.5, 5);
    expect(result.inertia).toBeCloseTo(2 * 12.5 + (7.5 ** 2 + 2.5 ** 2) * 2, 3);
    // Integer weights act like repeated points.
    const { points: pts, n } = blobs([40, 60, 30], 2, 6);
    const rng = createRng(2);
    const w = Float64Array.from({ length: n }, () => 1 + rng.int(3));
    const expanded: number[] = [];
    for (let i = 0; i < n; i++)
      for (let r = 0; r < w[i]!; r++) expanded.push(pts[i * 2]!, pts[i * 2 + 1]!);
    const weighted = await kmeans(pts, n, 2, { k: 3, seed: 1, weights: w });
    const repeated = await kmeans(Float32Array.from(expanded), expanded.length / 2, 2, {
      k: 3,
      seed: 1,
    });
    const sorted = (c: Float32Array): number[][] =>
      [0, 1, 2]
        .map((r) => [c[r * 2]!, c[r * 2 + 1]!])
        .sort((x, y) => x[0]! - y[0]! || x[1]! - y[1]!);
    const [sa, sb] = [sorted(weighted.centroids), sorted(repeated.centroids)];
    for (let r = 0; r < 3; r++)
      for (let j = 0; j < 2; j++) expect(sa[r]![j]).toBeCloseTo(sb[r]![j]!, 4);
    expect(weighted.inertia).toBeCloseTo(repeated.inertia, 1);
  });

  it('never leaves a cluster empty when n >= k, even with duplicates', async () => {
    const points = Float32Array.from([5, 5, 5, 5, 5, 5, 5, 5, 1, 9]);
    const result = await kmeans(points, 10, 1, { k: 4, seed: 3 });
    expect([...result.sizes].every((s) => s > 0)).toBe(true);
    expect([...result.sizes].reduce((a, b) => a + b)).toBe(10);
  });

  it('validates arguments', async () => {
    await expect(kmeans(new Float32Array(4), 2, 2, { k: 3, seed: 1 })).rejects.toThrow(/k must/);
    await expect(
      kmeans(new Float32Array(4), 2, 2, { k: 1, seed: 1, weights: Float64Array.of(1, -1) }),
    ).rejects.toThrow(/weights/);
  });
});

describe('kmeansPlusPlus', () => {
  it('picks k distinct data points, one per blob for separated blobs', () => {
    const { points, truth, n } = blobs([100, 100, 100], 3, 1);
    const c = kmeansPlusPlus(points, n, 3, { k: 3, seed: 5 });
    const picked = new Set<number>();
    for (let r = 0; r < 3; r++) {
      let found = -1;
      for (let i = 0; i < n; i++) {
        if ([0, 1, 2].every((j) => points[i * 3 + j] === c[r * 3 + j])) found = i;
      }
      expect(found).toBeGreaterThanOrEqual(0);
      picked.add(truth[found]!);
    }
    expect(picked.size).toBe(3);
  });
});
