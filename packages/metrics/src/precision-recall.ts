/**
 * Improved precision and recall (Kynkaanniemi et al. 2019, arXiv 1904.06991): each set's
 * manifold is the union of balls around its feature vectors, each with the radius of its k-th
 * nearest neighbour in the same set. Precision: the fraction of generated samples inside the
 * real manifold (fidelity); recall: the fraction of real samples inside the generated manifold
 * (coverage).
 */
import { type Features, squaredDistances } from './features.js';

/** Default k of the k-NN radii (the paper's k = 3). */
export const DEFAULT_K = 3;

/** Squared k-th nearest-neighbour distance of each row within its own set (self excluded). */
export function kthNeighbourRadii(f: Features, k: number): Float32Array {
  if (!(Number.isInteger(k) && k >= 1 && k < f.count))
    throw new RangeError(`k must be an integer in [1, ${f.count - 1}], got ${k}`);
  const d = squaredDistances(f, f);
  const out = new Float32Array(f.count);
  const smallest = new Float64Array(k);
  for (let i = 0; i < f.count; i++) {
    // The k smallest distances to the others, kept sorted by insertion (k is small).
    smallest.fill(Number.POSITIVE_INFINITY);
    for (let j = 0; j < f.count; j++) {
      const v = d[i * f.count + j]!;
      if (j === i || v >= smallest[k - 1]!) continue;
      let p = k - 1;
      while (p > 0 && smallest[p - 1]! > v) {
        smallest[p] = smallest[p - 1]!;
        p--;
      }
      smallest[p] = v;
    }
    out[i] = smallest[k - 1]!;
  }
  return out;
}

/** Fraction of `queries` inside the manifold of `support` (balls of squared radii `radii`). */
function coverage(queries: Features, support: Features, radii: Float32Array): number {
  const d = squaredDistances(queries, support);
  let inside = 0;
  for (let i = 0; i < queries.count; i++) {
    for (let j = 0; j < support.count; j++) {
      if (d[i * support.count + j]! <= radii[j]!) {
        inside++;
        break;
      }
    }
  }
  return inside / queries.count;
}

export function precisionRecall(
  real: Features,
  generated: Features,
  k = DEFAULT_K,
): { precision: number; recall: number } {
  return {
    precision: coverage(generated, real, kthNeighbourRadii(real, k)),
    recall: coverage(real, generated, kthNeighbourRadii(generated, k)),
  };
}
