/**
 * The images every metric takes: the pixels of an `ImageSet` (`[N, H, W, C]` bytes), so that
 * dataset images and an ensemble's samples (`SampleOutput.pixels`) need no conversion.
 */
import type { ImageSet } from '@archipelago/data';

/** `[N, H, W, C]` uint8 pixels of N same-sized images. */
export type Images = Pick<ImageSet, 'count' | 'height' | 'width' | 'channels' | 'pixels'>;

/** Checks that `images` holds `count` images of `height x width x channels` bytes. */
export function checkImages(images: Images, what = 'images'): void {
  const { count, height, width, channels, pixels } = images;
  if (pixels.length !== count * height * width * channels)
    throw new RangeError(
      `${what}: ${pixels.length} bytes for ${count} images of ${height}x${width}x${channels}`,
    );
}

/**
 * Gray values in [0, 1], `[N, H * W]` row-major: grayscale as is, RGB as the mean of its
 * channels (the metric's classifiers see one channel).
 */
export function grayFloats(images: Images): Float32Array {
  checkImages(images);
  const { count, height, width, channels, pixels } = images;
  const size = height * width;
  const out = new Float32Array(count * size);
  if (channels === 1) {
    for (let i = 0; i < out.length; i++) out[i] = pixels[i]! / 255;
    return out;
  }
  for (let i = 0; i < out.length; i++) {
    const j = i * channels;
    let s = 0;
    for (let c = 0; c < channels; c++) s += pixels[j + c]!;
    out[i] = s / (255 * channels);
  }
  return out;
}

/** The images at `indices`, in that order. */
export function selectImages(images: Images, indices: ArrayLike<number>): Images {
  const bytes = images.height * images.width * images.channels;
  const pixels = new Uint8Array(indices.length * bytes);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]!;
    pixels.set(images.pixels.subarray(j * bytes, (j + 1) * bytes), i * bytes);
  }
  return { ...pick(images), count: indices.length, pixels };
}

function pick(images: Images): Omit<Images, 'pixels' | 'count'> {
  return { height: images.height, width: images.width, channels: images.channels };
}
