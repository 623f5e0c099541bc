import { initBackend } from '@archipelago/models';
import { createRng } from '@archipelago/random';
import { Matrix } from 'ml-matrix';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  countComponents,
  type Features,
  fdCls,
  fragmentIndex,
  frechetDistance,
  intraClassDiversity,
  precisionRecall,
  sqrtPsd,
} from '../src/index.js';

beforeAll(async () => {
  await initBackend();
});

function gaussian(count: number, dim: number, seed: number, scale: number[], shift = 0): Features {
  const rng = createRng(seed);
  const data = new Float32Array(count * dim);
  for (let i = 0; i < count; i++)
    for (let d = 0; d < dim; d++) data[i * dim + d] = rng.normal() * scale[d]! + shift;
  return { data, count, dim };
}

describe('frechetDistance', () => {
  it('matches the closed form for diagonal covariances: |dmu|^2 + sum (sqrt a - sqrt b)^2', () => {
    const a = { mean: Float64Array.from([0, 0, 0]), cov: Matrix.diag([1, 4, 9]) };
    const b = { mean: Float64Array.from([1, 2, 0]), cov: Matrix.diag([4, 1, 9]) };
    expect(frechetDistance(a, b)).toBeCloseTo(5 + 1 + 1 + 0, 10);
    expect(frechetDistance(a, a)).toBeCloseTo(0, 10);
  });

  it('is rotation invariant and symmetric for full covariances', () => {
    const q = new Matrix([
      [Math.cos(0.7), -Math.sin(0.7)],
      [Math.sin(0.7), Math.cos(0.7)],
    ]);
    const c1 = Matrix.diag([2, 0.5]);
    const c2 = Matrix.diag([1, 3]);
    const rotated = (c: Matrix) => q.mmul(c).mmul(q.transpose());
    const mean = Float64Array.from([0, 0]);
    const plain = frechetDistance({ mean, cov: c1 }, { mean, cov: c2 });
    expect(frechetDistance({ mean, cov: rotated(c1) }, { mean, cov: rotated(c2) })).toBeCloseTo(
      plain,
      10,
    );
    const mixed = frechetDistance({ mean, cov: c1 }, { mean, cov: rotated(c2) });
    expect(frechetDistance({ mean, cov: rotated(c2) }, { mean, cov: c1 })).toBeCloseTo(mixed, 10);
  });

  it('takes square roots of singular PSD matrices without NaN', () => {
    const singular = new Matrix([
      [1, 1],
      [1, 1],
    ]);
    const root = sqrtPsd(singular);
    expect(root.mmul(root).to2DArray().flat()).toEqual(
      [1, 1, 1, 1].map((v) => expect.closeTo(v, 10)),
    );
  });

  it('fdCls of two samples of one Gaussian is small, of shifted ones about |shift|^2', () => {
    const scale = [1, 2, 0.5, 1];
    const a = gaussian(4000, 4, 1, scale);
    const b = gaussian(4000, 4, 2, scale);
    const shifted = gaussian(4000, 4, 3, scale, 1);
    expect(fdCls(a, b)).toBeLessThan(0.02);
    expect(fdCls(a, shifted)).toBeCloseTo(4, 0);
  });
});

describe('precisionRecall', () => {
  it('is 1 / 1 for the same set and drops recall for a collapsed one', () => {
    const real = gaussian(500, 2, 4, [1, 1]);
    expect(precisionRecall(real, real)).toEqual({ precision: 1, recall: 1 });
    const collapsed = gaussian(500, 2, 5, [0.1, 0.1]);
    const pr = precisionRecall(real, collapsed);
    expect(pr.precision).toBeGreaterThan(0.95);
    expect(pr.recall).toBeLessThan(0.2);
  });
});

describe('intraClassDiversity', () => {
  it('is 1 for the same features and the spread ratio for a scaled copy', () => {
    const real = gaussian(200, 3, 6, [1, 1, 1]);
    const classes = Int32Array.from({ length: 200 }, (_, i) => i % 2);
    const half = { ...real, data: real.data.map((v) => v / 2) };
    expect(intraClassDiversity(real, classes, real, classes, 3).mean).toBeCloseTo(1, 10);
    const d = intraClassDiversity(real, classes, half, classes, 3);
    expect(d.mean).toBeCloseTo(0.5, 6);
    expect(d.perClass[2]).toBeNull();
  });
});

describe('fragmentIndex', () => {
  it('counts 8-connected components', () => {
    // 1 1 0 0      diagonal neighbours join: two components
    // 0 1 0 1
    // 0 0 1 0
    // 1 0 0 0
    const mask = Uint8Array.from([1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0]);
    expect(countComponents(mask, 4, 4)).toBe(2);
    expect(countComponents(new Uint8Array(16), 4, 4)).toBe(0);
  });

  it('reports the mean, the fraction fragmented and the fraction empty', () => {
    const one = [0, 255, 0, 0, 255, 0, 0, 0, 0];
    const two = [255, 0, 255, 0, 0, 0, 0, 0, 0];
    const none = new Array(9).fill(0);
    const images = {
      count: 3,
      height: 3,
      width: 3,
      channels: 1 as const,
      pixels: Uint8Array.from([...one, ...two, ...none]),
    };
    expect(fragmentIndex(images)).toEqual({
      meanComponents: 1,
      fragmented: 1 / 3,
      empty: 1 / 3,
      threshold: 0.5,
    });
  });
});
