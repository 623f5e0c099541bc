import { initBackend } from '@archipelago/models';
import { createRng } from '@archipelago/random';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatasetImportError } from '../src/errors.js';
import { computeFeatures } from '../src/features.js';
import type { ImageSet } from '../src/image-set.js';

beforeAll(async () => {
  await initBackend();
});

/** n 8x8 gray images: two families (bright top half / bright left half) plus noise. */
function images(n: number): ImageSet {
  const rng = createRng(3);
  const pixels = new Uint8Array(n * 64);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < 8; y++)
      for (let x = 0; x < 8; x++) {
        const on = i % 2 === 0 ? y < 4 : x < 4;
        pixels[i * 64 + y * 8 + x] = Math.max(
          0,
          Math.min(255, (on ? 200 : 30) + 20 * rng.normal()),
        );
      }
  return {
    height: 8,
    width: 8,
    channels: 1,
    count: n,
    pixels,
    labels: new Int32Array(n).fill(-1),
    classNames: [],
  };
}

describe('computeFeatures', () => {
  it('uses PCA of the pixels when there are no embeddings', async () => {
    const set = images(300);
    const f = await computeFeatures(set, { pcaComponents: 4, seed: 1 });
    expect(f.kind).toBe('pca');
    expect([f.n, f.d, f.features.length]).toEqual([300, 4, 1200]);
    expect(f.explainedVariance).toBeGreaterThan(0.5);
    expect(f.explainedVariance).toBeLessThanOrEqual(1);
    // The two families separate along the first component.
    const first = (i: number): number => f.features[i * 4]!;
    const even = Array.from({ length: 150 }, (_, i) => first(2 * i));
    const odd = Array.from({ length: 150 }, (_, i) => first(2 * i + 1));
    expect(Math.max(...even) < Math.min(...odd) || Math.min(...even) > Math.max(...odd)).toBe(true);
    const again = await computeFeatures(set, { pcaComponents: 4, seed: 1 });
    expect(again.features).toEqual(f.features);
  });

  it('fits PCA on a subsample but projects every image', async () => {
    const f = await computeFeatures(images(500), { pcaComponents: 3, seed: 2, maxSampleRows: 100 });
    expect(f.features.length).toBe(1500);
    expect(f.features.every((v) => Number.isFinite(v))).toBe(true);
  });

  it('L2-normalises embeddings by default, or keeps them as given', async () => {
    const set = images(2);
    const data = Float32Array.from([3, 4, 0, 0]);
    const f = await computeFeatures(set, { embeddings: { data, dim: 2 }, seed: 1 });
    expect(f.kind).toBe('embeddings');
    expect([...f.features]).toEqual([0.6000000238418579, 0.800000011920929, 0, 0]);
    const raw = await computeFeatures(set, {
      embeddings: { data, dim: 2 },
      normalize: false,
      seed: 1,
    });
    expect([...raw.features]).toEqual([3, 4, 0, 0]);
    expect(data[0]).toBe(3);
  });

  it('rejects embeddings of the wrong size or with NaN', async () => {
    const set = images(3);
    const err = await computeFeatures(set, {
      embeddings: { data: new Float32Array(4), dim: 2 },
      seed: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetImportError);
    expect((err as DatasetImportError).code).toBe('embeddings_mismatch');
    const nan = await computeFeatures(set, {
      embeddings: { data: Float32Array.from([1, 2, 3, 4, Number.NaN, 6]), dim: 2 },
      seed: 1,
    }).catch((e: unknown) => e);
    expect((nan as DatasetImportError).code).toBe('embeddings_nonfinite');
  });
});
