/**
 * Partition a dataset into K shards the way DDM does (docs/method.md section 8): k-means to many
 * fine centroids, then merge the fine centroids into K coarse clusters, and give each image the
 * coarse cluster of its fine centroid. No size balancing: clusters are as large as the data
 * makes them.
 *
 * Why two levels: fine centroids summarise the data's geometry cheaply (1024 points instead of
 * N), and clustering them weighted by their sizes is equivalent to clustering the N points with
 * each one moved to its fine centroid. The coarse step is cheap, so it is restarted several
 * times and the lowest-inertia solution kept.
 */

import { deriveSeed } from '@archipelago/random';
import { DatasetImportError } from './errors.js';
import { kmeans } from './kmeans.js';
import { randomPartition } from './random-partition.js';

/**
 * How images are assigned to the K shards: by the two-level k-means (`semantic`), or at random
 * with exactly the sizes the semantic clustering of the same data, K and seed gives (`random`,
 * the baseline of docs/method.md §8).
 */
export const CLUSTER_ASSIGNMENTS = ['semantic', 'random'] as const;
export type ClusterAssignment = (typeof CLUSTER_ASSIGNMENTS)[number];

export interface ClusterOptions {
  /** Number of coarse clusters (shards), K. */
  k: number;
  /** Default `semantic`. */
  assignment?: ClusterAssignment;
  /** Fine centroids (default `min(1024, floor(n / 10))`, at least k, at most n). */
  fineK?: number;
  seed: number;
  /** Maximum Lloyd iterations of the fine k-means (default 50). */
  maxIter?: number;
  /**
   * Points the fine centroids are fitted on (default 16,384): a seeded subsample; every point
   * is then assigned to its nearest fine centroid in one pass. See `kmeans`.
   */
  fineSampleSize?: number;
  /** Restarts of the coarse k-means, best inertia kept (default 10). */
  coarseRestarts?: number;
  onProgress?: (progress: {
    stage: 'fine' | 'coarse' | 'done';
    iteration: number;
    maxIter: number;
  }) => void;
}

export interface ClusterResult {
  k: number;
  assignment: ClusterAssignment;
  fineK: number;
  /** `[n]` coarse cluster (shard) of each point, in [0, k). */
  assignments: Int32Array;
  /**
   * `[n]` fine centroid of each point, in [0, fineK), and `[fineK]` the coarse cluster of each
   * fine centroid: those of the semantic clustering (with `random`, the one that set the sizes).
   */
  fineAssignments: Int32Array;
  fineToCoarse: Int32Array;
  /** `[k]` points per coarse cluster; all > 0 when n >= fineK. */
  sizes: Int32Array;
  /** Sum over points of the squared distance to their shard's centroid (of `assignments`). */
  inertia: number;
  /** Sum over points of the squared distance to their fine centroid. */
  fineInertia: number;
  /** `[k, d]` mean of each shard's points (of `assignments`). */
  coarseCentroids: Float32Array;
  /** `[fineK, d]` fine centroids. */
  fineCentroids: Float32Array;
  /** Wall-clock milliseconds of each stage. */
  timings: { fineMs: number; coarseMs: number; totalMs: number };
}

/**
 * Two-level k-means partition of `[n, d]` features into k clusters.
 *
 * Deterministic for a seed (on a given TensorFlow.js backend). Requires an active backend. With
 * `assignment: 'random'` the semantic clustering still runs, for its sizes; the points are then
 * dealt to shards of those sizes by {@link randomPartition} with a seed derived from `seed`.
 *
 * @throws {DatasetImportError} `too_small` when n < k.
 */
export async function clusterDataset(
  features: Float32Array,
  n: number,
  d: number,
  options: ClusterOptions,
): Promise<ClusterResult> {
  const start = performance.now();
  const { k } = options;
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be an integer >= 1, got ${k}`);
  const assignment = options.assignment ?? 'semantic';
  if (!CLUSTER_ASSIGNMENTS.includes(assignment))
    throw new RangeError(
      `unknown assignment ${JSON.stringify(assignment)}; valid: ${CLUSTER_ASSIGNMENTS.join(', ')}`,
    );
  if (n < k)
    throw new DatasetImportError(
      'too_small',
      `the dataset has ${n} images; ${k} clusters need at least ${k}`,
    );
  // One cluster (a monolith): every point in it, whichever the assignment; no k-means to run.
  if (k === 1) return oneCluster(features, n, d, assignment, options, start);
  const fineK = Math.min(n, Math.max(k, options.fineK ?? Math.min(1024, Math.floor(n / 10))));
  const maxIter = options.maxIter ?? 50;

  // Fine level.
  const fine = await kmeans(features, n, d, {
    k: fineK,
    seed: deriveSeed(options.seed, 'fine'),
    maxIter,
    sampleSize: Math.min(n, Math.max(fineK, options.fineSampleSize ?? 16384)),
    onIteration: (iteration) => options.onProgress?.({ stage: 'fine', iteration, maxIter }),
  });
  const fineMs = performance.now() - start;

  // Coarse level: weighted k-means of the non-empty fine centroids.
  const used: number[] = [];
  for (let f = 0; f < fineK; f++) if (fine.sizes[f] > 0) used.push(f);
  const centroids = new Float32Array(used.length * d);
  used.forEach((f, r) => {
    centroids.set(fine.centroids.subarray(f * d, (f + 1) * d), r * d);
  });
  const weights = Float64Array.from(used, (f) => fine.sizes[f]);
  const restarts = options.coarseRestarts ?? 10;
  let best: Awaited<ReturnType<typeof kmeans>> | null = null;
  for (let r = 0; r < restarts; r++) {
    const result = await kmeans(centroids, used.length, d, {
      k: Math.min(k, used.length),
      seed: deriveSeed(options.seed, 'coarse', r),
      weights,
      maxIter: 300,
    });
    if (!best || result.inertia < best.inertia) best = result;
    options.onProgress?.({ stage: 'coarse', iteration: r + 1, maxIter: restarts });
  }
  const fineToCoarse = new Int32Array(fineK).fill(-1);
  used.forEach((f, r) => {
    fineToCoarse[f] = best!.assignments[r];
  });
  const coarseMs = performance.now() - start - fineMs;

  const semantic = Int32Array.from(fine.assignments, (f) => fineToCoarse[f]);
  let assignments: Int32Array = semantic;
  if (assignment === 'random') {
    const semanticSizes = new Int32Array(k);
    for (const c of semantic) semanticSizes[c]++;
    assignments = randomPartition(semanticSizes, deriveSeed(options.seed, 'random-assignment'));
  }
  const sizes = new Int32Array(k);
  const sums = new Float64Array(k * d);
  for (let i = 0; i < n; i++) {
    const c = assignments[i];
    sizes[c]++;
    for (let j = 0; j < d; j++) sums[c * d + j] += features[i * d + j];
  }
  const coarseCentroids = new Float32Array(k * d);
  for (let c = 0; c < k; c++)
    for (let j = 0; j < d; j++)
      coarseCentroids[c * d + j] = sizes[c] ? sums[c * d + j] / sizes[c] : 0;
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    const c = assignments[i];
    for (let j = 0; j < d; j++) {
      const t = features[i * d + j] - coarseCentroids[c * d + j];
      inertia += t * t;
    }
  }
  options.onProgress?.({ stage: 'done', iteration: 1, maxIter: 1 });
  return {
    k,
    assignment,
    fineK,
    assignments,
    fineAssignments: fine.assignments,
    fineToCoarse,
    sizes,
    inertia,
    fineInertia: fine.inertia,
    coarseCentroids,
    fineCentroids: fine.centroids,
    timings: { fineMs, coarseMs, totalMs: performance.now() - start },
  };
}

/** K = 1: one cluster of every point, its centroid the mean (also the one "fine" centroid). */
function oneCluster(
  features: Float32Array,
  n: number,
  d: number,
  assignment: ClusterAssignment,
  options: ClusterOptions,
  start: number,
): ClusterResult {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += features[i * d + j];
  const centroid = Float32Array.from(mean, (v) => v / n);
  let inertia = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) inertia += (features[i * d + j] - centroid[j]) ** 2;
  options.onProgress?.({ stage: 'done', iteration: 1, maxIter: 1 });
  const totalMs = performance.now() - start;
  return {
    k: 1,
    assignment,
    fineK: 1,
    assignments: new Int32Array(n),
    fineAssignments: new Int32Array(n),
    fineToCoarse: new Int32Array(1),
    sizes: Int32Array.of(n),
    inertia,
    fineInertia: inertia,
    coarseCentroids: centroid,
    fineCentroids: Float32Array.from(centroid),
    timings: { fineMs: 0, coarseMs: 0, totalMs },
  };
}
