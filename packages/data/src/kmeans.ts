/**
 * Weighted k-means: k-means++ seeding (Arthur & Vassilvitskii 2007) followed by Lloyd
 * iterations, with the nearest-centroid search done by TensorFlow.js matMul.
 *
 * Squared distances expand as ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the nearest centroid only
 * needs the last two terms, which is a single matMul of the points augmented with a column of
 * ones, `[x, 1]` (`[B, d+1]`), by the centroids stacked as `[-2 c; ||c||^2]` (`[d+1, k]`),
 * followed by an argMin. Points are processed in batches so the `[B, k]` score matrix stays
 * around 16 MB. The exact distance to the chosen centroid is then recomputed in float64 in JS
 * (O(n d)), so inertia does not suffer from the cancellation in the expanded form.
 *
 * Large inputs: with `sampleSize`, centroids are fitted on a seeded uniform subsample and every
 * point is assigned to its nearest fitted centroid in one final pass (subsample k-means, in the
 * spirit of Sculley's mini-batch k-means, 2010). A wasm matMul of 60000x50 by 50x1024 costs
 * ~0.25-2 s here, so a full-data Lloyd loop with 1024 centroids would dominate the import; a
 * 16k-point sample has ~16 points per centroid, enough to place fine centroids well.
 *
 * Requires a TensorFlow.js backend to be active (the caller selects it, e.g. `initBackend()`
 * from `@archipelago/models`).
 */

import { createRng, deriveSeed, type Rng, sampleIndices } from '@archipelago/random';
import * as tf from '@tensorflow/tfjs-core';

/** Per-point weights: the point counts as `w` copies of itself. */
export type Weights = Float32Array | Float64Array;

export interface KMeansPlusPlusOptions {
  k: number;
  seed: number;
  weights?: Weights;
}

export interface KMeansOptions extends KMeansPlusPlusOptions {
  /** Maximum Lloyd iterations (default 100). */
  maxIter?: number;
  /**
   * Convergence tolerance, relative (as in scikit-learn): stop when the summed squared centroid
   * shift falls below `tol` times the mean per-dimension variance of the points (default 1e-4).
   * Iterations also stop as soon as no assignment changes.
   */
  tol?: number;
  /** Fit on a seeded subsample of this many points when n is larger; assign all at the end. */
  sampleSize?: number;
  /** Points per distance batch (default: about 4M scores per batch, at most 65,536 points). */
  batchSize?: number;
  /** Called after every Lloyd iteration. */
  onIteration?: (iteration: number, info: { shift: number; changed: number }) => void;
}

export interface KMeansResult {
  /** `[k, d]` row-major centroids. */
  centroids: Float32Array;
  /** `[n]` cluster of each point. */
  assignments: Int32Array;
  /** `[k]` number of points per cluster (unweighted). */
  sizes: Int32Array;
  /** Sum over points of weight * squared distance to the assigned centroid. */
  inertia: number;
  /** Lloyd iterations run. */
  iterations: number;
  /** True when the tolerance or a fixed point was reached before `maxIter`. */
  converged: boolean;
  /** Number of points the centroids were fitted on (n, or `sampleSize` when subsampled). */
  fittedOn: number;
}

function checkInputs(points: Float32Array, n: number, d: number, k: number, weights?: Weights) {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(d) || d < 1)
    throw new RangeError(`k-means needs n >= 1 points of d >= 1 dimensions, got n=${n}, d=${d}`);
  if (points.length !== n * d)
    throw new RangeError(`points has length ${points.length}, expected n*d = ${n * d}`);
  if (!Number.isInteger(k) || k < 1 || k > n)
    throw new RangeError(`k must be an integer in 1..n (${n}), got ${k}`);
  if (weights) {
    if (weights.length !== n)
      throw new RangeError(`weights has length ${weights.length}, expected ${n}`);
    let total = 0;
    for (const w of weights) {
      if (!(w >= 0) || !Number.isFinite(w))
        throw new RangeError(`weights must be finite and >= 0, got ${w}`);
      total += w;
    }
    if (total <= 0) throw new RangeError('weights sum to 0');
  }
}

function squaredDistance(a: Float32Array, ai: number, b: Float32Array, bi: number, d: number) {
  let s = 0;
  for (let j = 0; j < d; j++) {
    const t = a[ai + j] - b[bi + j];
    s += t * t;
  }
  return s;
}

/**
 * k-means++ seeding: the first centroid is a point drawn with probability proportional to its
 * weight, each next one a point drawn with probability proportional to weight x squared distance
 * to the nearest centroid chosen so far.
 *
 * Distances are updated in JS with a triangle-inequality skip: a point whose nearest centroid
 * c_a is at distance D satisfies ||x - c_new|| >= ||c_new - c_a|| - D, so when
 * ||c_new - c_a||^2 >= 4 D^2 the new centroid cannot be closer and the point is skipped. Late in
 * the seeding almost all points are skipped, which makes k = 1024 affordable.
 *
 * @param points - `[n, d]` row-major.
 * @returns `[k, d]` initial centroids (copies of points).
 */
export function kmeansPlusPlus(
  points: Float32Array,
  n: number,
  d: number,
  options: KMeansPlusPlusOptions,
): Float32Array {
  const { k, weights } = options;
  checkInputs(points, n, d, k, weights);
  const rng = createRng(deriveSeed(options.seed, 'kmeans++'));
  const centroids = new Float32Array(k * d);
  const minD2 = new Float64Array(n);
  const nearest = new Int32Array(n);
  const cc = new Float64Array(k);
  // score[i]: the unnormalised probability of drawing point i next.
  const score = weights ? Float64Array.from(weights) : new Float64Array(n).fill(1);

  const draw = (): number => {
    let total = 0;
    for (let i = 0; i < n; i++) total += score[i];
    if (!(total > 0)) return rng.int(n); // every point coincides with a centroid already
    let r = rng.next() * total;
    for (let i = 0; i < n; i++) {
      r -= score[i];
      if (r < 0) return i;
    }
    // Rounding left r >= 0: take the last point with a positive score.
    for (let i = n - 1; i >= 0; i--) if (score[i] > 0) return i;
    return n - 1;
  };
  const w = (i: number): number => (weights ? weights[i] : 1);

  const first = draw();
  centroids.set(points.subarray(first * d, (first + 1) * d), 0);
  for (let i = 0; i < n; i++) {
    minD2[i] = squaredDistance(points, i * d, centroids, 0, d);
    score[i] = w(i) * minD2[i];
  }

  for (let c = 1; c < k; c++) {
    const idx = draw();
    const co = c * d;
    centroids.set(points.subarray(idx * d, (idx + 1) * d), co);
    for (let j = 0; j < c; j++) cc[j] = squaredDistance(centroids, co, centroids, j * d, d);
    for (let i = 0; i < n; i++) {
      if (cc[nearest[i]] >= 4 * minD2[i]) continue;
      const d2 = squaredDistance(points, i * d, centroids, co, d);
      if (d2 < minD2[i]) {
        minD2[i] = d2;
        nearest[i] = c;
        score[i] = w(i) * d2;
      }
    }
  }
  return centroids;
}

/** Points uploaded once as `[B, d+1]` batches `[x, 1]` for the nearest-centroid matMul. */
class PointBatches {
  readonly tensors: tf.Tensor2D[] = [];
  readonly starts: number[] = [];

  constructor(points: Float32Array, n: number, d: number, batchSize: number) {
    for (let s = 0; s < n; s += batchSize) {
      const rows = Math.min(batchSize, n - s);
      const buf = new Float32Array(rows * (d + 1));
      for (let r = 0; r < rows; r++) {
        buf.set(points.subarray((s + r) * d, (s + r + 1) * d), r * (d + 1));
        buf[r * (d + 1) + d] = 1;
      }
      this.tensors.push(tf.tensor2d(buf, [rows, d + 1]));
      this.starts.push(s);
    }
  }

  dispose(): void {
    for (const t of this.tensors) t.dispose();
  }
}

/**
 * Nearest centroid of every point (argMin over the expanded distance, on the backend), and the
 * exact squared distance to it (float64, in JS).
 */
async function assignNearest(
  batches: PointBatches,
  points: Float32Array,
  d: number,
  centroids: Float32Array,
  k: number,
  labels: Int32Array,
  dist: Float64Array,
): Promise<void> {
  // `[d+1, k]`: column j is [-2 c_j; ||c_j||^2].
  const aug = new Float32Array((d + 1) * k);
  for (let j = 0; j < k; j++) {
    let norm = 0;
    for (let t = 0; t < d; t++) {
      const v = centroids[j * d + t];
      aug[t * k + j] = -2 * v;
      norm += v * v;
    }
    aug[d * k + j] = norm;
  }
  const c = tf.tensor2d(aug, [d + 1, k]);
  try {
    for (let b = 0; b < batches.tensors.length; b++) {
      const idx = tf.tidy(() => tf.argMin(tf.matMul(batches.tensors[b], c), 1));
      const out = (await idx.data()) as Int32Array;
      idx.dispose();
      labels.set(out, batches.starts[b]);
    }
  } finally {
    c.dispose();
  }
  const n = labels.length;
  for (let i = 0; i < n; i++) dist[i] = squaredDistance(points, i * d, centroids, labels[i] * d, d);
}

/**
 * Give every empty cluster a point: the farthest points from their centroids (ties by index),
 * taken only from clusters with more than one point, each becomes its own cluster's centroid.
 * Mutates labels, dist, counts and centroids; returns the number of clusters re-seeded.
 */
function relocateEmpty(
  points: Float32Array,
  d: number,
  centroids: Float32Array,
  labels: Int32Array,
  dist: Float64Array,
  counts: Int32Array,
): number {
  const empty: number[] = [];
  for (let j = 0; j < counts.length; j++) if (counts[j] === 0) empty.push(j);
  if (empty.length === 0) return 0;
  const order = Array.from({ length: labels.length }, (_, i) => i).sort(
    (a, b) => dist[b] - dist[a] || a - b,
  );
  let o = 0;
  for (const j of empty) {
    while (o < order.length && counts[labels[order[o]]] <= 1) o++;
    if (o === order.length) break; // fewer distinct donors than empty clusters
    const i = order[o++];
    counts[labels[i]]--;
    labels[i] = j;
    counts[j] = 1;
    dist[i] = 0;
    centroids.set(points.subarray(i * d, (i + 1) * d), j * d);
  }
  return empty.length;
}

/**
 * Weighted Lloyd k-means with k-means++ initialisation.
 *
 * Empty clusters are re-seeded deterministically from the farthest points (see the module
 * comment); after the final assignment every cluster is non-empty whenever n >= k. With
 * `sampleSize < n`, the centroids are fitted on a seeded subsample and all n points are then
 * assigned to them in one pass; `sizes` and `inertia` always refer to all n points.
 *
 * @param points - `[n, d]` row-major float32.
 * @returns centroids `[k, d]`, assignments `[n]`, sizes `[k]`, inertia and iteration count.
 *   Deterministic for a seed (on a given backend).
 */
export async function kmeans(
  points: Float32Array,
  n: number,
  d: number,
  options: KMeansOptions,
): Promise<KMeansResult> {
  const { k, weights } = options;
  checkInputs(points, n, d, k, weights);
  const maxIter = options.maxIter ?? 100;
  const tol = options.tol ?? 1e-4;
  if (!Number.isInteger(maxIter) || maxIter < 1)
    throw new RangeError(`maxIter must be an integer >= 1, got ${maxIter}`);
  const batchSize = options.batchSize ?? Math.max(256, Math.min(65536, Math.floor(4_194_304 / k)));

  // Fit set: all points, or a seeded subsample.
  const sampleSize = options.sampleSize ?? n;
  if (!Number.isInteger(sampleSize) || sampleSize < k)
    throw new RangeError(`sampleSize must be an integer >= k (${k}), got ${sampleSize}`);
  const rng: Rng = createRng(deriveSeed(options.seed, 'kmeans-sample'));
  const rows = sampleSize < n ? sampleIndices(n, sampleSize, rng) : null;
  const m = rows ? rows.length : n;
  let fit = points;
  let fitWeights = weights;
  if (rows) {
    fit = new Float32Array(m * d);
    for (let r = 0; r < m; r++) fit.set(points.subarray(rows[r] * d, (rows[r] + 1) * d), r * d);
    if (weights) fitWeights = Float64Array.from(rows, (i) => weights[i]);
  }
  const w = (i: number): number => (fitWeights ? fitWeights[i] : 1);

  // Absolute tolerance: tol x mean per-dimension (weighted) variance of the fit set.
  let wTotal = 0;
  const mean = new Float64Array(d);
  for (let i = 0; i < m; i++) {
    const wi = w(i);
    wTotal += wi;
    for (let j = 0; j < d; j++) mean[j] += wi * fit[i * d + j];
  }
  for (let j = 0; j < d; j++) mean[j] /= wTotal;
  let variance = 0;
  for (let i = 0; i < m; i++) {
    const wi = w(i);
    for (let j = 0; j < d; j++) {
      const t = fit[i * d + j] - mean[j];
      variance += wi * t * t;
    }
  }
  const tolAbs = (tol * variance) / wTotal / d;

  let centroids = kmeansPlusPlus(fit, m, d, {
    k,
    seed: options.seed,
    ...(fitWeights ? { weights: fitWeights } : {}),
  });
  let labels = new Int32Array(m).fill(-1);
  const dist = new Float64Array(m);
  const counts = new Int32Array(k);
  const sums = new Float64Array(k * d);
  const wsum = new Float64Array(k);
  let iterations = 0;
  let converged = false;
  let labelsCurrent = false; // labels are the nearest-centroid labels of `centroids`

  const batches = new PointBatches(fit, m, d, batchSize);
  try {
    for (let it = 1; it <= maxIter; it++) {
      const prev = labels;
      labels = new Int32Array(m);
      await assignNearest(batches, fit, d, centroids, k, labels, dist);
      let changed = 0;
      for (let i = 0; i < m; i++) if (labels[i] !== prev[i]) changed++;

      counts.fill(0);
      for (let i = 0; i < m; i++) counts[labels[i]]++;
      const relocated = relocateEmpty(fit, d, centroids, labels, dist, counts);

      sums.fill(0);
      wsum.fill(0);
      for (let i = 0; i < m; i++) {
        const c = labels[i];
        const wi = w(i);
        wsum[c] += wi;
        for (let j = 0; j < d; j++) sums[c * d + j] += wi * fit[i * d + j];
      }
      const next = new Float32Array(k * d);
      let shift = 0;
      for (let c = 0; c < k; c++) {
        for (let j = 0; j < d; j++) {
          // A cluster whose members all have weight 0 keeps its centroid.
          const v = wsum[c] > 0 ? sums[c * d + j] / wsum[c] : centroids[c * d + j];
          const t = v - centroids[c * d + j];
          shift += t * t;
          next[c * d + j] = v;
        }
      }
      centroids = next;
      iterations = it;
      options.onIteration?.(it, { shift, changed });
      if ((changed === 0 && relocated === 0) || shift <= tolAbs) {
        converged = true;
        labelsCurrent = changed === 0 && relocated === 0;
        break;
      }
      // Let other work on the event loop run between iterations.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    batches.dispose();
  }

  // Final assignment: of the fit set if its labels are stale, and of all points if subsampled.
  let assignments: Int32Array;
  let finalDist: Float64Array;
  if (!rows && labelsCurrent) {
    assignments = labels;
    finalDist = dist;
  } else {
    assignments = new Int32Array(n);
    finalDist = new Float64Array(n);
    const all = new PointBatches(points, n, d, batchSize);
    try {
      await assignNearest(all, points, d, centroids, k, assignments, finalDist);
    } finally {
      all.dispose();
    }
  }
  const sizes = new Int32Array(k);
  for (const c of assignments) sizes[c]++;
  relocateEmpty(points, d, centroids, assignments, finalDist, sizes);
  let inertia = 0;
  for (let i = 0; i < n; i++) inertia += (weights ? weights[i] : 1) * finalDist[i];
  return { centroids, assignments, sizes, inertia, iterations, converged, fittedOn: m };
}
