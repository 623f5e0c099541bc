/**
 * Principal component analysis: the fallback image features when the user supplies no
 * embeddings (docs/method.md section 8). Pure: a function of the array and the seed.
 *
 * With X the mean-centred `[m, d]` data, the covariance is C = X^T X / (m - 1) and the
 * components are its leading eigenvectors. Two solvers:
 *
 * - `exact` (d <= 256): form C with one matMul and eigendecompose it with ml-matrix.
 * - `randomized` (larger d, e.g. 784 for MNIST pixels): block subspace iteration
 *   (Halko, Martinsson & Tropp 2011, algorithm 4.4). A random `[d, l]` basis Q,
 *   l = components + oversample, is multiplied by C implicitly as X^T (X Q) and
 *   re-orthonormalised, a few times; then the small `[l, l]` matrix Q^T C Q is
 *   eigendecomposed (Rayleigh-Ritz). A dense eigendecomposition of a 784x784 matrix takes ~3 s
 *   in JS here; this takes a fraction of that and never forms the d x d matrix, so it also works
 *   for 64x64x3 = 12,288-dimensional pixels.
 *
 * The covariance is estimated on a seeded random subsample of at most `maxSampleRows` rows; the
 * mean uses all rows. Components are unit vectors with their largest-magnitude entry positive,
 * so results are reproducible across runs and solvers.
 *
 * Requires an active TensorFlow.js backend.
 */

import { createRng, deriveSeed, type Rng, sampleIndices } from '@archipelago/random';
import * as tf from '@tensorflow/tfjs-core';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

export interface PcaOptions {
  /** Number of components to keep, 1..d. */
  components: number;
  seed: number;
  /**
   * Rows used to estimate the covariance (default: 20,000, lowered for wide data so the sample
   * stays under ~256 MB of float32: `clamp(2^26 / d, 2000, 20000)`).
   */
  maxSampleRows?: number;
  /** Subspace iterations of the randomized solver (default 6). */
  powerIterations?: number;
  /** Extra basis vectors of the randomized solver (default 16). */
  oversample?: number;
  /** Force a solver; default `exact` when d <= 256, else `randomized`. */
  solver?: 'exact' | 'randomized';
}

export interface PcaModel {
  /** Input dimension d. */
  d: number;
  /** Number of components c. */
  k: number;
  /** `[d]` mean of all input rows. */
  mean: Float32Array;
  /** `[c, d]` row-major: row i is the i-th principal axis (unit norm, sign-normalised). */
  components: Float32Array;
  /** `[c]` variance of the data along each axis (covariance eigenvalues), descending. */
  explainedVariance: Float64Array;
  /** `[c]` explainedVariance / total variance. */
  explainedVarianceRatio: Float64Array;
  /** Total variance (trace of the covariance) of the sample. */
  totalVariance: number;
  /** Rows the covariance was estimated on. */
  sampleRows: number;
  solver: 'exact' | 'randomized';
  /**
   * Project `[n, d]` rows: `(x - mean) . components^T`, returning `[n, c]` float32. Runs on the
   * active TensorFlow.js backend in batches of 8,192 rows.
   */
  project(data: Float32Array, n: number): Promise<Float32Array>;
}

/** Default covariance sample size for d-dimensional rows. */
export function defaultPcaSampleRows(d: number): number {
  return Math.max(2000, Math.min(20000, Math.floor(2 ** 26 / d)));
}

/**
 * Orthonormalise the `rows` vectors of length `len` stored row-major in `v` (modified
 * Gram-Schmidt, applied twice for numerical orthogonality). A vector that collapses (rank
 * deficiency) is replaced by a random one and re-orthogonalised.
 */
function orthonormalizeRows(v: Float64Array, rows: number, len: number, rng: Rng): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < rows; i++) {
      const vi = v.subarray(i * len, (i + 1) * len);
      for (let attempt = 0; ; attempt++) {
        const before = Math.sqrt(vi.reduce((s, x) => s + x * x, 0));
        for (let j = 0; j < i; j++) {
          const vj = v.subarray(j * len, (j + 1) * len);
          let dot = 0;
          for (let t = 0; t < len; t++) dot += vi[t] * vj[t];
          for (let t = 0; t < len; t++) vi[t] -= dot * vj[t];
        }
        const norm = Math.sqrt(vi.reduce((s, x) => s + x * x, 0));
        if (norm > 1e-10 * Math.max(before, 1e-30) && norm > 0) {
          for (let t = 0; t < len; t++) vi[t] /= norm;
          break;
        }
        if (attempt > 10) throw new Error('cannot orthonormalise PCA basis');
        for (let t = 0; t < len; t++) vi[t] = rng.normal();
      }
    }
  }
}

/** Eigenpairs of a symmetric `[l, l]` matrix, sorted by eigenvalue descending. */
function symmetricEigen(a: number[][]): { values: number[]; vectors: Matrix } {
  const evd = new EigenvalueDecomposition(new Matrix(a), { assumeSymmetric: true });
  const values = evd.realEigenvalues;
  const order = values.map((_, i) => i).sort((x, y) => values[y] - values[x] || x - y);
  const vecs = evd.eigenvectorMatrix;
  const sorted = new Matrix(vecs.rows, order.length);
  order.forEach((src, dst) => {
    for (let r = 0; r < vecs.rows; r++) sorted.set(r, dst, vecs.get(r, src));
  });
  return { values: order.map((i) => values[i]), vectors: sorted };
}

/** `[rows, cols]` float32 matrix as a nested array of numbers. */
function toRows(data: Float32Array | Float64Array, rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, (_, r) =>
    Array.from(data.subarray(r * cols, (r + 1) * cols)),
  );
}

/**
 * Fit PCA to `[n, d]` row-major data.
 *
 * Pixels should be scaled to [0, 1] first (see `computeFeatures`), so variances are comparable
 * across datasets.
 *
 * @returns the fitted model; deterministic for a seed on a given backend.
 */
export async function pca(
  data: Float32Array,
  n: number,
  d: number,
  options: PcaOptions,
): Promise<PcaModel> {
  if (!Number.isInteger(n) || n < 2 || !Number.isInteger(d) || d < 1)
    throw new RangeError(`PCA needs n >= 2 rows of d >= 1 columns, got n=${n}, d=${d}`);
  if (data.length !== n * d)
    throw new RangeError(`data has length ${data.length}, expected n*d = ${n * d}`);
  const c = options.components;
  if (!Number.isInteger(c) || c < 1 || c > d)
    throw new RangeError(`components must be an integer in 1..d (${d}), got ${c}`);
  const rng = createRng(deriveSeed(options.seed, 'pca'));

  // Mean over all rows (float64 accumulation).
  const meanAcc = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) meanAcc[j] += data[i * d + j];
  const mean = Float32Array.from(meanAcc, (s) => s / n);

  // Centred covariance sample `[m, d]`.
  const maxRows = options.maxSampleRows ?? defaultPcaSampleRows(d);
  if (!Number.isInteger(maxRows) || maxRows < 2)
    throw new RangeError(`maxSampleRows must be an integer >= 2, got ${maxRows}`);
  const rows = n > maxRows ? sampleIndices(n, maxRows, rng) : null;
  const m = rows ? rows.length : n;
  const xc = new Float32Array(m * d);
  let totalVariance = 0;
  for (let r = 0; r < m; r++) {
    const src = (rows ? rows[r] : r) * d;
    for (let j = 0; j < d; j++) {
      const v = data[src + j] - mean[j];
      xc[r * d + j] = v;
      totalVariance += v * v;
    }
  }
  totalVariance /= m - 1;

  const solver = options.solver ?? (d <= 256 ? 'exact' : 'randomized');
  let values: number[];
  let axes: Float64Array; // [c, d]
  const x = tf.tensor2d(xc, [m, d]);
  try {
    if (solver === 'exact') {
      const cov = tf.tidy(() => tf.div(tf.matMul(tf.transpose(x), x), m - 1));
      const covData = await cov.data();
      cov.dispose();
      const eig = symmetricEigen(toRows(covData as Float32Array, d, d));
      values = eig.values.slice(0, c);
      axes = new Float64Array(c * d);
      for (let i = 0; i < c; i++)
        for (let j = 0; j < d; j++) axes[i * d + j] = eig.vectors.get(j, i);
    } else {
      const l = Math.min(d, c + (options.oversample ?? 16));
      const iterations = options.powerIterations ?? 6;
      // Basis stored as rows: q is `[l, d]`, i.e. Q^T.
      const q = new Float64Array(l * d);
      for (let t = 0; t < q.length; t++) q[t] = rng.normal();
      orthonormalizeRows(q, l, d, rng);
      for (let it = 0; it < iterations; it++) {
        // (C Q)^T (m - 1) = (X^T (X Q))^T = (X Q)^T X: `[l, d]`.
        const qt = tf.tensor2d(Float32Array.from(q), [l, d]);
        const next = tf.tidy(() => {
          const z = tf.matMul(x, tf.transpose(qt)); // [m, l]
          return tf.matMul(tf.transpose(z), x); // [l, d]
        });
        q.set(await next.data());
        tf.dispose([qt, next]);
        orthonormalizeRows(q, l, d, rng);
      }
      // Rayleigh-Ritz: B = Q^T C Q = (X Q)^T (X Q) / (m - 1), `[l, l]`.
      const qt = tf.tensor2d(Float32Array.from(q), [l, d]);
      const b = tf.tidy(() => {
        const z = tf.matMul(x, tf.transpose(qt));
        return tf.div(tf.matMul(tf.transpose(z), z), m - 1);
      });
      const bData = (await b.data()) as Float32Array;
      tf.dispose([qt, b]);
      const eig = symmetricEigen(toRows(bData, l, l));
      values = eig.values.slice(0, c);
      // Axis i = Q v_i = sum_r v_i[r] * q_r.
      axes = new Float64Array(c * d);
      for (let i = 0; i < c; i++) {
        for (let r = 0; r < l; r++) {
          const coef = eig.vectors.get(r, i);
          for (let j = 0; j < d; j++) axes[i * d + j] += coef * q[r * d + j];
        }
      }
    }
  } finally {
    x.dispose();
  }

  // Unit norm, largest-magnitude entry positive (ties: first index).
  const components = new Float32Array(c * d);
  for (let i = 0; i < c; i++) {
    const axis = axes.subarray(i * d, (i + 1) * d);
    let norm = 0;
    let arg = 0;
    for (let j = 0; j < d; j++) {
      norm += axis[j] * axis[j];
      if (Math.abs(axis[j]) > Math.abs(axis[arg])) arg = j;
    }
    const scale = (axis[arg] < 0 ? -1 : 1) / Math.sqrt(norm);
    for (let j = 0; j < d; j++) components[i * d + j] = axis[j] * scale;
  }
  const explainedVariance = Float64Array.from(values, (v) => Math.max(0, v));
  const explainedVarianceRatio = explainedVariance.map((v) =>
    totalVariance > 0 ? v / totalVariance : 0,
  );

  const project = async (input: Float32Array, rowsIn: number): Promise<Float32Array> => {
    if (input.length !== rowsIn * d)
      throw new RangeError(`project: data has length ${input.length}, expected ${rowsIn}*${d}`);
    // `[d, c]` components transposed, and the projected mean `[1, c]` to subtract.
    const wt = new Float32Array(d * c);
    const offset = new Float32Array(c);
    for (let i = 0; i < c; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) {
        wt[j * c + i] = components[i * d + j];
        s += mean[j] * components[i * d + j];
      }
      offset[i] = s;
    }
    const w = tf.tensor2d(wt, [d, c]);
    const off = tf.tensor2d(offset, [1, c]);
    const out = new Float32Array(rowsIn * c);
    try {
      const batch = 8192;
      for (let s = 0; s < rowsIn; s += batch) {
        const r = Math.min(batch, rowsIn - s);
        const y = tf.tidy(() =>
          tf.sub(tf.matMul(tf.tensor2d(input.subarray(s * d, (s + r) * d), [r, d]), w), off),
        );
        out.set(await y.data(), s * c);
        y.dispose();
      }
    } finally {
      tf.dispose([w, off]);
    }
    return out;
  };

  return {
    d,
    k: c,
    mean,
    components,
    explainedVariance,
    explainedVarianceRatio,
    totalVariance,
    sampleRows: m,
    solver,
    project,
  };
}
