/**
 * Contact sheets of images, one row per cluster, so people can see what each shard contains.
 */
import sharp from 'sharp';
import type { ImageSet } from './image-set.js';

/**
 * PNG-encode `[h, w, c]` uint8 pixels (c = 1 gray, 3 RGB, 4 RGBA).
 */
export async function encodePng(
  pixels: Uint8Array,
  height: number,
  width: number,
  channels: 1 | 3 | 4,
): Promise<Buffer> {
  if (pixels.length !== height * width * channels)
    throw new RangeError(
      `pixels has length ${pixels.length}, expected ${height}*${width}*${channels}`,
    );
  const img = sharp(pixels, { raw: { width, height, channels } });
  // Without an explicit colourspace sharp writes single-channel input as an RGB PNG.
  return (channels === 1 ? img.toColourspace('b-w') : img).png().toBuffer();
}

/**
 * The nearest-neighbour upscaling that brings images of side `side` px to cells of about `cell`
 * px: `floor(cell / side)`, clamped to [1, max], so small images stay legible in a montage.
 */
export function upscaleFor(side: number, cell: number, max: number): number {
  return Math.max(1, Math.min(max, Math.floor(cell / side)));
}

export interface GridOptions {
  /** Integer upscaling factor per image, nearest neighbour (default 1). */
  scale?: number;
  /** Pixels between images and around the edge (default 2). */
  padding?: number;
  /** Background gray level, or `[r, g, b]` (default 32). */
  background?: number | [number, number, number];
}

/**
 * Render a montage PNG: row r shows the images `indices[r]` left to right.
 *
 * Size: width = P + cols * (W*s + P), height = P + rows * (H*s + P), where cols is the longest
 * row, s = scale and P = padding. Grayscale sets give a grayscale PNG unless the background is
 * a colour; shorter rows are filled with background.
 */
export async function renderGrid(
  images: ImageSet,
  indices: number[][],
  options: GridOptions = {},
): Promise<Buffer> {
  const scale = options.scale ?? 1;
  const pad = options.padding ?? 2;
  if (!Number.isInteger(scale) || scale < 1)
    throw new RangeError(`scale must be >= 1, got ${scale}`);
  if (!Number.isInteger(pad) || pad < 0) throw new RangeError(`padding must be >= 0, got ${pad}`);
  const bg = options.background ?? 32;
  const bgRgb = typeof bg === 'number' ? [bg, bg, bg] : bg;
  const colourBg = bgRgb[0] !== bgRgb[1] || bgRgb[1] !== bgRgb[2];
  const outC = images.channels === 3 || colourBg ? 3 : 1;
  const rows = Math.max(1, indices.length);
  const cols = Math.max(1, ...indices.map((r) => r.length));
  const cellH = images.height * scale;
  const cellW = images.width * scale;
  const H = pad + rows * (cellH + pad);
  const W = pad + cols * (cellW + pad);
  const out = new Uint8Array(H * W * outC);
  for (let p = 0; p < H * W; p++) for (let c = 0; c < outC; c++) out[p * outC + c] = bgRgb[c];
  const inC = images.channels;
  const size = images.height * images.width * inC;
  indices.forEach((row, r) => {
    row.forEach((image, col) => {
      if (!Number.isInteger(image) || image < 0 || image >= images.count)
        throw new RangeError(`grid index ${image} is outside [0, ${images.count})`);
      const src = images.pixels.subarray(image * size, (image + 1) * size);
      const y0 = pad + r * (cellH + pad);
      const x0 = pad + col * (cellW + pad);
      for (let y = 0; y < cellH; y++) {
        const sy = Math.floor(y / scale);
        for (let x = 0; x < cellW; x++) {
          const s = (sy * images.width + Math.floor(x / scale)) * inC;
          const o = ((y0 + y) * W + x0 + x) * outC;
          for (let c = 0; c < outC; c++) out[o + c] = src[s + (inC === 1 ? 0 : c)];
        }
      }
    });
  });
  return encodePng(out, H, W, outC);
}
