/** Perturbations of real images for the metric's validation tests. */
import { createRng } from '@archipelago/random';
import type { Images } from '../src/index.js';

/** Adds N(0, sigma^2) noise (sigma in gray units of [0, 1]) and clips. */
export function gaussianNoise(images: Images, sigma: number, seed: number): Images {
  const rng = createRng(seed);
  const pixels = images.pixels.map((v) =>
    Math.min(255, Math.max(0, Math.round(v + rng.normal() * sigma * 255))),
  );
  return { ...images, pixels };
}

/** Box blur of radius r (a (2r + 1)^2 mean, edges clamped), per channel. */
export function boxBlur(images: Images, radius: number): Images {
  const { count, height, width, channels } = images;
  const pixels = new Uint8Array(images.pixels.length);
  for (let n = 0; n < count; n++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++)
        for (let c = 0; c < channels; c++) {
          let s = 0;
          let m = 0;
          for (let dy = -radius; dy <= radius; dy++)
            for (let dx = -radius; dx <= radius; dx++) {
              const yy = y + dy;
              const xx = x + dx;
              if (yy < 0 || yy >= height || xx < 0 || xx >= width) continue;
              s += images.pixels[((n * height + yy) * width + xx) * channels + c]!;
              m++;
            }
          pixels[((n * height + y) * width + x) * channels + c] = Math.round(s / m);
        }
  return { ...images, pixels };
}

/** Images of isolated bright pixels: each pixel is white with probability `p`. */
export function saltNoise(count: number, side: number, p: number, seed: number): Images {
  const rng = createRng(seed);
  const pixels = new Uint8Array(count * side * side);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.next() < p ? 255 : 0;
  return { count, height: side, width: side, channels: 1, pixels };
}
