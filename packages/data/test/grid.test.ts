import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, renderGrid, upscaleFor } from '../src/grid.js';
import type { ImageSet } from '../src/image-set.js';

function set(channels: 1 | 3): ImageSet {
  const count = 6;
  const size = 5 * 4 * channels;
  const pixels = new Uint8Array(count * size);
  for (let i = 0; i < count; i++) pixels.fill(40 * i + 10, i * size, (i + 1) * size);
  return {
    height: 5,
    width: 4,
    channels,
    count,
    pixels,
    labels: new Int32Array(count).fill(-1),
    classNames: [],
  };
}

describe('renderGrid', () => {
  it('renders one row per cluster with the documented size', async () => {
    const rows = [[0, 1, 2], [3], [4, 5]];
    const png = await renderGrid(set(1), rows, { scale: 2, padding: 3 });
    const meta = await sharp(png).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBe(3 + 3 * (4 * 2 + 3));
    expect(meta.height).toBe(3 + 3 * (5 * 2 + 3));
    expect(meta.channels).toBe(1);
    // sharp decodes to sRGB unless asked for one channel.
    const { data, info } = await sharp(png)
      .extractChannel(0)
      .raw()
      .toBuffer({ resolveWithObject: true });
    const at = (y: number, x: number): number => data[y * info.width + x]!;
    expect(at(0, 0)).toBe(32); // background
    expect(at(3, 3)).toBe(10); // image 0, top-left
    // Cell (row r, column c) starts at y = 3 + r * 13, x = 3 + c * 11.
    expect(at(3 + 2 * 13 + 9, 3 + 11 + 7)).toBe(40 * 5 + 10); // image 5: row 2, column 1
    expect(at(3 + 13 + 2, 3 + 11 + 2)).toBe(32); // row 1 has only one image
    expect(at(3 + 13 + 2, 3 + 2)).toBe(40 * 3 + 10); // image 3: row 1, column 0
  });

  it('renders RGB sets and coloured backgrounds in colour', async () => {
    const png = await renderGrid(set(3), [[0, 1]], { background: [255, 0, 0] });
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([2 + 2 * 6, 2 + 7, 3]);
    const grayOnRed = await sharp(
      await renderGrid(set(1), [[0]], { background: [255, 0, 0] }),
    ).metadata();
    expect(grayOnRed.channels).toBe(3);
    await expect(renderGrid(set(1), [[6]])).rejects.toThrow(/outside/);
  });
});

describe('upscaleFor', () => {
  it('scales small images up to about the cell size, never below 1 or above the cap', () => {
    expect([8, 16, 28, 32, 64, 200].map((side) => upscaleFor(side, 64, 4))).toEqual([
      4, 4, 2, 2, 1, 1,
    ]);
    expect(upscaleFor(4, 48, 8)).toBe(8);
    expect(upscaleFor(16, 48, 8)).toBe(3);
  });
});

describe('encodePng', () => {
  it('round-trips raw pixels', async () => {
    const pixels = Uint8Array.from({ length: 3 * 2 * 3 }, (_, i) => i * 10);
    const png = await encodePng(pixels, 2, 3, 3);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([3, 2, 3]);
    expect([...data]).toEqual([...pixels]);
  });
});
