/**
 * The closed-form reference an expert is judged against (docs/method.md §12): the linear MMSE
 * denoiser of its shard, from the shard's mean and covariance. Fitted by the coordinator from the
 * shard's images (the training shard: it is the expert's distribution), once per shard content
 * (keyed by the shard's sha256) and cached.
 */
import { type ImageSet, pca } from '@archipelago/data';
import type { SecondMoments } from '@archipelago/diffusion';

/**
 * Above this many elements per image the covariance is taken as diagonal (a per-pixel Wiener
 * filter): a dense eigendecomposition costs O(D^3), ~3 s at D = 784 and minutes at 64x64x3.
 */
export const FULL_COVARIANCE_MAX_DIM = 1024;

/** Fitted references kept in memory (a 784-dimensional one holds 2.5 MB). */
const CACHE_SIZE = 32;

/** Which form of the reference images of `dim` elements get (see {@link FULL_COVARIANCE_MAX_DIM}). */
export function referenceKind(dim: number): 'full' | 'diagonal' {
  return dim <= FULL_COVARIANCE_MAX_DIM ? 'full' : 'diagonal';
}

export interface ReferenceFit {
  moments: SecondMoments;
  /** `full`: mean and covariance eigenbasis; `diagonal`: per-pixel mean and variance. */
  kind: 'full' | 'diagonal';
  /** Images the moments were estimated from. */
  images: number;
}

/** Pixels of an image set as `[n, D]` floats in [-1, 1] (how experts see them). */
export function toUnitRange(set: ImageSet): Float32Array {
  return Float32Array.from(set.pixels, (p) => p / 127.5 - 1);
}

/**
 * The second moments of `set` in [-1, 1]: the full covariance's eigendecomposition (through
 * packages/data's PCA, every component kept) up to {@link FULL_COVARIANCE_MAX_DIM} elements per
 * image, else the per-element variances.
 */
export async function fitReference(set: ImageSet): Promise<ReferenceFit> {
  const d = set.height * set.width * set.channels;
  const n = set.count;
  const data = toUnitRange(set);
  if (referenceKind(d) === 'full' && n >= 2) {
    const model = await pca(data, n, d, { components: d, solver: 'exact', seed: 0 });
    return {
      kind: 'full',
      images: n,
      moments: {
        mean: model.mean,
        basis: model.components,
        variances: model.explainedVariance,
      },
    };
  }
  const mean = new Float64Array(d);
  const sq = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) mean[j] += data[i * d + j]!;
  }
  for (let j = 0; j < d; j++) mean[j] /= Math.max(n, 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) sq[j] += (data[i * d + j]! - mean[j]!) ** 2;
  }
  return {
    kind: 'diagonal',
    images: n,
    moments: {
      mean: Float32Array.from(mean),
      basis: null,
      variances: sq.map((s) => (n > 1 ? s / (n - 1) : 0)),
    },
  };
}

const cache = new Map<string, Promise<ReferenceFit>>();

/** {@link fitReference} of a shard, cached by its sha256 (shards never change). */
export function shardReference(
  sha256: string,
  load: () => Promise<ImageSet>,
): Promise<ReferenceFit> {
  const hit = cache.get(sha256);
  if (hit) {
    // Most recently used last.
    cache.delete(sha256);
    cache.set(sha256, hit);
    return hit;
  }
  const pending = load().then(fitReference);
  cache.set(sha256, pending);
  pending.catch(() => cache.delete(sha256));
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return pending;
}

const means = new Map<string, Promise<Float64Array>>();

/** The mean image of a shard in [-1, 1], cached by its sha256 (to find a shard's neighbours). */
export function shardMean(sha256: string, load: () => Promise<ImageSet>): Promise<Float64Array> {
  const hit = means.get(sha256);
  if (hit) return hit;
  const pending = load().then((set) => {
    const d = set.height * set.width * set.channels;
    const sum = new Float64Array(d);
    for (let i = 0; i < set.pixels.length; i++) sum[i % d] += set.pixels[i]! / 127.5 - 1;
    return sum.map((v) => v / Math.max(set.count, 1));
  });
  means.set(sha256, pending);
  pending.catch(() => means.delete(sha256));
  // Means are small (D floats); a bound all the same.
  if (means.size > 4096) means.delete(means.keys().next().value!);
  return pending;
}
