import { describe, expect, it } from 'vitest';
import type { ImageSet } from '../src/image-set.js';
import { resizeImageSet, resolveResolution } from '../src/resize.js';

function gray(height: number, width: number, f: (y: number, x: number) => number): ImageSet {
  const pixels = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) pixels[y * width + x] = f(y, x);
  return {
    height,
    width,
    channels: 1,
    count: 1,
    pixels,
    labels: Int32Array.of(-1),
    classNames: [],
  };
}

describe('resizeImageSet', () => {
  it('returns the same set when nothing changes', async () => {
    const set = gray(4, 4, () => 7);
    expect(await resizeImageSet(set, { resolution: 4 })).toBe(set);
  });

  it('keeps constant images constant and averages when shrinking', async () => {
    expect([
      ...(
        await resizeImageSet(
          gray(9, 7, () => 90),
          { resolution: 3 },
        )
      ).pixels,
    ]).toEqual(new Array(9).fill(90));
    // Fine 0/200 checkerboard shrinks to its mean rather than aliasing.
    const checker = await resizeImageSet(
      gray(16, 16, (y, x) => ((x + y) % 2) * 200),
      { resolution: 4 },
    );
    for (const v of checker.pixels) expect(Math.abs(v - 100)).toBeLessThan(8);
  });

  it('cover crops the centre; contain pads with black', async () => {
    // 4 rows x 8 columns: left quarter 255, rest 0. Cover to 4x4 keeps columns 2..5 (all 0).
    const wide = gray(4, 8, (_, x) => (x < 2 ? 255 : 0));
    expect(Math.max(...(await resizeImageSet(wide, { resolution: 4 })).pixels)).toBe(0);
    const contain = await resizeImageSet(
      gray(4, 8, () => 200),
      {
        resolution: 4,
        fit: 'contain',
      },
    );
    // Fitted to 2 rows x 4 columns in the middle; rows 0 and 3 are padding.
    expect([...contain.pixels]).toEqual([
      ...[0, 0, 0, 0],
      ...[200, 200, 200, 200],
      ...[200, 200, 200, 200],
      ...[0, 0, 0, 0],
    ]);
  });

  it('converts channels: gray replicates, RGB uses Rec. 601 luma', async () => {
    const rgb = await resizeImageSet(
      gray(2, 2, () => 50),
      { channels: 3 },
    );
    expect([...rgb.pixels]).toEqual(new Array(12).fill(50));
    const red: ImageSet = {
      ...rgb,
      pixels: Uint8Array.from([255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0]),
    };
    expect([...(await resizeImageSet(red, { channels: 1 })).pixels]).toEqual([76, 76, 76, 76]);
  });

  it('validates resolutions', () => {
    expect(resolveResolution(5)).toEqual({ height: 5, width: 5 });
    expect(() => resolveResolution(0)).toThrow(RangeError);
    expect(() => resolveResolution({ height: 2.5, width: 3 })).toThrow(RangeError);
  });
});
