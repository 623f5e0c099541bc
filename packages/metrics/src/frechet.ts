/**
 * FD-cls: the Frechet distance between Gaussians fitted to two sets of classifier features,
 * `|mu_r - mu_g|^2 + tr(S_r) + tr(S_g) - 2 tr((S_r S_g)^(1/2))` (Dowson & Landau 1982; the
 * formula of FID, Heusel et al. 2017, in the features of a classifier trained on the dataset
 * itself instead of Inception's). Not comparable with published FID values.
 *
 * The trace of the matrix square root is computed without ever forming a non-symmetric
 * product: `tr((S_r S_g)^(1/2)) = tr((A S_g A)^(1/2))` with `A = S_r^(1/2)`, both square roots of
 * symmetric positive semi-definite matrices by eigendecomposition, with eigenvalues that
 * rounding pushed below zero clamped to zero. Accumulation is in float64.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import type { Features } from './features.js';

/** Mean `[dim]` and unbiased covariance `[dim, dim]` of the rows. */
export function meanAndCovariance(f: Features): { mean: Float64Array; cov: Matrix } {
  const { count, dim, data } = f;
  if (count < 2) throw new RangeError(`a covariance needs >= 2 samples, got ${count}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < count; i++) for (let d = 0; d < dim; d++) mean[d]! += data[i * dim + d]!;
  for (let d = 0; d < dim; d++) mean[d]! /= count;
  const cov = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let i = 0; i < count; i++) {
    for (let d = 0; d < dim; d++) centred[d] = data[i * dim + d]! - mean[d]!;
    for (let a = 0; a < dim; a++) {
      const ca = centred[a]!;
      if (ca === 0) continue;
      for (let b = a; b < dim; b++) cov[a * dim + b]! += ca * centred[b]!;
    }
  }
  const m = new Matrix(dim, dim);
  for (let a = 0; a < dim; a++)
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b]! / (count - 1);
      m.set(a, b, v);
      m.set(b, a, v);
    }
  return { mean, cov: m };
}

/** Square root of a symmetric PSD matrix: `V diag(sqrt(max(l, 0))) V^T`. */
export function sqrtPsd(m: Matrix): Matrix {
  const eig = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  const v = eig.eigenvectorMatrix;
  const roots = eig.realEigenvalues.map((l) => Math.sqrt(Math.max(l, 0)));
  return v.mmul(Matrix.diag(roots)).mmul(v.transpose());
}

/** `tr(M^(1/2))` of a symmetric PSD matrix (the sum of the roots of its clamped eigenvalues). */
export function traceSqrtPsd(m: Matrix): number {
  const eig = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  return eig.realEigenvalues.reduce((s, l) => s + Math.sqrt(Math.max(l, 0)), 0);
}

/** Frechet distance between N(mu1, S1) and N(mu2, S2). */
export function frechetDistance(
  a: { mean: Float64Array; cov: Matrix },
  b: { mean: Float64Array; cov: Matrix },
): number {
  let meanTerm = 0;
  for (let d = 0; d < a.mean.length; d++) meanTerm += (a.mean[d]! - b.mean[d]!) ** 2;
  const root = sqrtPsd(a.cov);
  const middle = root.mmul(b.cov).mmul(root);
  // Symmetrise: the product is symmetric in exact arithmetic only.
  const sym = middle.add(middle.transpose()).div(2);
  const value = meanTerm + a.cov.trace() + b.cov.trace() - 2 * traceSqrtPsd(sym);
  return Math.max(0, value);
}

/** FD-cls of two feature sets (real first). */
export function fdCls(real: Features, generated: Features): number {
  return frechetDistance(meanAndCovariance(real), meanAndCovariance(generated));
}
