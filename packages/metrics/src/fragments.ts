/**
 * Fragment index for digits: the connected components (8-connectivity) of each image
 * thresholded at `threshold`. A handwritten digit is one stroke (sometimes two); samples that
 * draw fragments have many.
 */
import { grayFloats, type Images } from './images.js';

/** Default threshold on gray values in [0, 1]. */
export const DEFAULT_FRAGMENT_THRESHOLD = 0.5;

/** Components of one binary image `[H * W]` (8-connectivity), by an iterative flood fill. */
export function countComponents(mask: Uint8Array, height: number, width: number): number {
  const seen = new Uint8Array(mask.length);
  const stack: number[] = [];
  let components = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || seen[start]) continue;
    components++;
    seen[start] = 1;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      const y = Math.floor(p / width);
      const x = p - y * width;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const ny = y + dy;
          const nx = x + dx;
          if (ny < 0 || ny >= height || nx < 0 || nx >= width) continue;
          const q = ny * width + nx;
          if (mask[q] && !seen[q]) {
            seen[q] = 1;
            stack.push(q);
          }
        }
    }
  }
  return components;
}

export interface FragmentIndex {
  /** Mean number of components per image. */
  meanComponents: number;
  /** Fraction of images with more than one component. */
  fragmented: number;
  /** Fraction of images with no pixel above the threshold. */
  empty: number;
  threshold: number;
}

export function fragmentIndex(
  images: Images,
  threshold = DEFAULT_FRAGMENT_THRESHOLD,
): FragmentIndex {
  const gray = grayFloats(images);
  const size = images.height * images.width;
  const mask = new Uint8Array(size);
  let total = 0;
  let fragmented = 0;
  let empty = 0;
  for (let i = 0; i < images.count; i++) {
    for (let p = 0; p < size; p++) mask[p] = gray[i * size + p]! > threshold ? 1 : 0;
    const n = countComponents(mask, images.height, images.width);
    total += n;
    if (n > 1) fragmented++;
    if (n === 0) empty++;
  }
  return {
    meanComponents: total / images.count,
    fragmented: fragmented / images.count,
    empty: empty / images.count,
    threshold,
  };
}
