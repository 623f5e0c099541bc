/**
 * The classifiers shipped in `weights/`: one per dataset and resolution, named in
 * `weights/manifest.json` with the seed, split and held-out accuracy they were trained with and
 * the sha256 of their weights. `scripts/train-classifier.mjs` writes them.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type BuiltinDatasetName, type ImageSet, loadBuiltinDataset } from '@archipelago/data';
import { type ClassifierConfig, MlpClassifier } from './classifier.js';
import { metricSplit } from './split.js';

/** One shipped classifier. */
export interface ShippedClassifier {
  dataset: BuiltinDatasetName;
  /** Side length of the square images it classifies. */
  resolution: number;
  config: ClassifierConfig;
  /** File under `weights/`. */
  file: string;
  sha256: string;
  /** Training seed. */
  seed: number;
  epochs: number;
  /** Seed and held-out fraction of {@link metricSplit}; sizes of both parts. */
  split: { seed: number; fraction: number; train: number; heldOut: number };
  /** Accuracy on the held-out part, measured after training. */
  heldOutAccuracy: number;
  /** The TensorFlow.js backend it was trained on. */
  backend: string;
}

export interface WeightsManifest {
  classifiers: ShippedClassifier[];
}

/** The folder of the shipped weights (the same from `src/` and from `dist/`). */
export const WEIGHTS_DIR = new URL('../weights/', import.meta.url);

/** The seed of the metric's held-out split, for every shipped classifier. */
export const METRIC_SPLIT_SEED = 14;

export async function readWeightsManifest(): Promise<WeightsManifest> {
  return JSON.parse(await readFile(new URL('manifest.json', WEIGHTS_DIR), 'utf8'));
}

/** The manifest entry for `dataset` at `resolution`; throws listing those that exist. */
export async function shippedEntry(
  dataset: string,
  resolution: number,
): Promise<ShippedClassifier> {
  const { classifiers } = await readWeightsManifest();
  const entry = classifiers.find((c) => c.dataset === dataset && c.resolution === resolution);
  if (!entry)
    throw new RangeError(
      `no shipped classifier for ${dataset} at ${resolution}x${resolution}; shipped: ${classifiers
        .map((c) => `${c.dataset} ${c.resolution}x${c.resolution}`)
        .join(', ')}`,
    );
  return entry;
}

/** Load a shipped classifier after checking its weights' sha256 against the manifest. */
export async function loadShippedClassifier(
  dataset: string,
  resolution: number,
): Promise<{ classifier: MlpClassifier; entry: ShippedClassifier }> {
  const entry = await shippedEntry(dataset, resolution);
  const bytes = new Uint8Array(await readFile(new URL(entry.file, WEIGHTS_DIR)));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== entry.sha256)
    throw new Error(`${entry.file}: sha256 ${sha256}, the manifest says ${entry.sha256}`);
  return { classifier: MlpClassifier.fromBytes(entry.config, bytes), entry };
}

/** The built-in dataset at `resolution`, split as the shipped classifiers were. */
export async function loadMetricSplit(
  dataset: BuiltinDatasetName,
  resolution: number,
): Promise<{ train: ImageSet; heldOut: ImageSet }> {
  const set = await loadBuiltinDataset(dataset, { resolution });
  return metricSplit(set, METRIC_SPLIT_SEED);
}
