/**
 * Per-image feature vectors for clustering (docs/method.md section 8): the user's embeddings when
 * given (e.g. DINOv2, as DDM and the paper use), otherwise PCA of the pixels.
 */

import { createRng, deriveSeed, sampleIndices } from '@archipelago/random';
import { DatasetImportError } from './errors.js';
import { type ImageSet, imageBytes } from './image-set.js';
import { defaultPcaSampleRows, pca } from './pca.js';

export interface FeatureOptions {
  /** User-supplied `[N, dim]` row-major embeddings, one row per image in dataset order. */
  embeddings?: { data: Float32Array; dim: number };
  /**
   * L2-normalise each embedding row (default true): self-supervised embeddings such as DINOv2
   * are compared by cosine similarity, and k-means on unit vectors approximates that.
   */
  normalize?: boolean;
  /** PCA components when no embeddings are given (default 32, at most H*W*C). */
  pcaComponents?: number;
  /** Rows used to fit the PCA (default {@link defaultPcaSampleRows}). */
  maxSampleRows?: number;
  seed: number;
}

export interface Features {
  /** `[n, d]` row-major features. */
  features: Float32Array;
  n: number;
  d: number;
  kind: 'embeddings' | 'pca';
  /** PCA only: fraction of the pixel variance the components keep. */
  explainedVariance?: number;
  /** PCA only: `[d]` per-component fraction of variance. */
  explainedVarianceRatio?: Float64Array;
}

/**
 * Features of every image in `images`.
 *
 * - Embeddings: checked to be `[count, dim]` and finite, used as given, L2-normalised unless
 *   `normalize: false` (rows of norm 0 stay 0). The result is a copy.
 * - PCA: pixels scaled to [0, 1]; PCA fitted on a seeded subsample of at most `maxSampleRows`
 *   images (converting only those to float, so memory stays bounded for large datasets), then
 *   all images projected in chunks. Requires an active TensorFlow.js backend.
 *
 * @throws {DatasetImportError} `embeddings_mismatch` / `embeddings_nonfinite` for bad
 *   embeddings; `too_small` for fewer than 2 images without embeddings.
 */
export async function computeFeatures(
  images: ImageSet,
  options: FeatureOptions,
): Promise<Features> {
  const n = images.count;
  if (options.embeddings) {
    const { data, dim } = options.embeddings;
    if (!Number.isInteger(dim) || dim < 1 || data.length !== n * dim)
      throw new DatasetImportError(
        'embeddings_mismatch',
        `embeddings have ${data.length} values; expected ${n} images x ${dim} dimensions = ${n * dim}`,
      );
    const features = Float32Array.from(data);
    for (let i = 0; i < n; i++) {
      const row = features.subarray(i * dim, (i + 1) * dim);
      let norm = 0;
      for (let j = 0; j < dim; j++) {
        if (!Number.isFinite(row[j]))
          throw new DatasetImportError(
            'embeddings_nonfinite',
            `embedding row ${i}, column ${j} is ${row[j]}; embeddings must be finite`,
          );
        norm += row[j] * row[j];
      }
      if (options.normalize !== false && norm > 0) {
        const inv = 1 / Math.sqrt(norm);
        for (let j = 0; j < dim; j++) row[j] *= inv;
      }
    }
    return { features, n, d: dim, kind: 'embeddings' };
  }

  if (n < 2)
    throw new DatasetImportError('too_small', `PCA features need at least 2 images, got ${n}`);
  const size = imageBytes(images);
  const components = Math.min(options.pcaComponents ?? 32, size);
  const maxRows = options.maxSampleRows ?? defaultPcaSampleRows(size);
  const rows = sampleIndices(n, maxRows, createRng(deriveSeed(options.seed, 'features-sample')));
  const toFloat = (dst: Float32Array, image: number, at: number): void => {
    const src = images.pixels.subarray(image * size, (image + 1) * size);
    for (let j = 0; j < size; j++) dst[at + j] = src[j] / 255;
  };
  const sample = new Float32Array(rows.length * size);
  rows.forEach((image, r) => {
    toFloat(sample, image, r * size);
  });
  const model = await pca(sample, rows.length, size, {
    components,
    seed: options.seed,
    maxSampleRows: rows.length,
  });

  const features = new Float32Array(n * components);
  const chunk = 8192;
  const buf = new Float32Array(Math.min(chunk, n) * size);
  for (let s = 0; s < n; s += chunk) {
    const r = Math.min(chunk, n - s);
    for (let i = 0; i < r; i++) toFloat(buf, s + i, i * size);
    features.set(await model.project(buf.subarray(0, r * size), r), s * components);
  }
  const explainedVariance = model.explainedVarianceRatio.reduce((a, b) => a + b, 0);
  return {
    features,
    n,
    d: components,
    kind: 'pca',
    explainedVariance,
    explainedVarianceRatio: model.explainedVarianceRatio,
  };
}
