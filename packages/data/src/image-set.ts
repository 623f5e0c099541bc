/**
 * The in-memory dataset every reader produces and every consumer (features, shards, grids)
 * takes: one contiguous byte array of pixels, because that is what tensors, shard files and
 * sharp's raw input all want, without per-image objects.
 */

/** A set of same-sized 8-bit images with optional integer class labels. */
export interface ImageSet {
  /** Image height in pixels (1..65535, the shard format stores it as u16). */
  height: number;
  /** Image width in pixels (1..65535). */
  width: number;
  /** 1 = grayscale, 3 = RGB. Alpha is always flattened away on import. */
  channels: 1 | 3;
  /** Number of images, N. */
  count: number;
  /** `[N, H, W, C]` row-major (NHWC) uint8 pixels, length N*H*W*C. */
  pixels: Uint8Array;
  /** `[N]` class index into {@link ImageSet.classNames}, or -1 for unlabeled. */
  labels: Int32Array;
  /** Class names; label `i` means `classNames[i]`. Empty when the set has no labels. */
  classNames: string[];
  /** `[N]` optional provenance of each image, e.g. its path relative to the imported folder. */
  sources?: string[];
}

/** Bytes of one image: H*W*C. */
export function imageBytes(set: Pick<ImageSet, 'height' | 'width' | 'channels'>): number {
  return set.height * set.width * set.channels;
}

/**
 * Check the invariants of an {@link ImageSet} and throw a `RangeError` that names the first one
 * broken: positive integer sizes, `pixels.length === N*H*W*C`, `labels.length === N`, every label
 * in [-1, classNames.length), and `sources.length === N` when present.
 */
export function validateImageSet(set: ImageSet): void {
  const { height, width, channels, count } = set;
  for (const [name, v] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 65535)
      throw new RangeError(`image set ${name} must be an integer in 1..65535, got ${v}`);
  }
  if (channels !== 1 && channels !== 3)
    throw new RangeError(`image set channels must be 1 or 3, got ${channels}`);
  if (!Number.isInteger(count) || count < 0)
    throw new RangeError(`image set count must be a non-negative integer, got ${count}`);
  if (!(set.pixels instanceof Uint8Array))
    throw new RangeError('image set pixels must be a Uint8Array');
  const expected = count * height * width * channels;
  if (set.pixels.length !== expected)
    throw new RangeError(
      `image set pixels has length ${set.pixels.length}, expected ${count}*${height}*${width}*${channels} = ${expected}`,
    );
  if (!(set.labels instanceof Int32Array) || set.labels.length !== count)
    throw new RangeError(
      `image set labels must be an Int32Array of length ${count}, got length ${set.labels?.length}`,
    );
  const nClasses = set.classNames.length;
  for (let i = 0; i < count; i++) {
    const l = set.labels[i];
    if (l < -1 || l >= nClasses)
      throw new RangeError(
        `image set label ${l} of image ${i} is outside [-1, ${nClasses}) (${nClasses} class names)`,
      );
  }
  if (set.sources !== undefined && set.sources.length !== count)
    throw new RangeError(`image set sources has length ${set.sources.length}, expected ${count}`);
}

/**
 * A new {@link ImageSet} holding copies of the images at `indices`, in that order (duplicates
 * allowed). Class names are kept whole so labels keep their meaning across subsets.
 */
export function subsetImageSet(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const size = imageBytes(set);
  const count = indices.length;
  const pixels = new Uint8Array(count * size);
  const labels = new Int32Array(count);
  const sources = set.sources ? new Array<string>(count) : undefined;
  for (let j = 0; j < count; j++) {
    const i = indices[j];
    if (!Number.isInteger(i) || i < 0 || i >= set.count)
      throw new RangeError(`subset index ${i} is outside [0, ${set.count})`);
    pixels.set(set.pixels.subarray(i * size, (i + 1) * size), j * size);
    labels[j] = set.labels[i];
    if (sources) sources[j] = set.sources![i];
  }
  return {
    height: set.height,
    width: set.width,
    channels: set.channels,
    count,
    pixels,
    labels,
    classNames: [...set.classNames],
    ...(sources ? { sources } : {}),
  };
}

/** Number of images per label: `counts[l]` for l in [0, classNames.length), plus unlabeled. */
export function countLabels(set: Pick<ImageSet, 'labels' | 'classNames'>): {
  counts: number[];
  unlabeled: number;
} {
  const counts = new Array<number>(set.classNames.length).fill(0);
  let unlabeled = 0;
  for (const l of set.labels) {
    if (l < 0) unlabeled++;
    else counts[l]++;
  }
  return { counts, unlabeled };
}
