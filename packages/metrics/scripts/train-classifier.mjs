#!/usr/bin/env node
/**
 * Retrain the shipped classifiers of the metric (weights/*.bin and weights/manifest.json):
 * the built-in MNIST at each resolution, split with METRIC_SPLIT_SEED, trained with --seed.
 * Run after `npm run build -w @archipelago/metrics`:
 *   node packages/metrics/scripts/train-classifier.mjs [--seed 1] [--epochs 10] [--resolutions 28,16]
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  HELD_OUT_FRACTION,
  loadMetricSplit,
  METRIC_SPLIT_SEED,
  readWeightsManifest,
  trainClassifier,
  WEIGHTS_DIR,
} from '@archipelago/metrics';
import { initBackend } from '@archipelago/models';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    epochs: { type: 'string', default: '10' },
    resolutions: { type: 'string', default: '28,16' },
  },
});
const seed = Number(values.seed);
const epochs = Number(values.epochs);
const backend = await initBackend();
let previous = [];
try {
  previous = (await readWeightsManifest()).classifiers;
} catch {
  // first run: no manifest yet
}
const classifiers = [];
for (const resolution of values.resolutions.split(',').map(Number)) {
  const started = Date.now();
  const { train, heldOut } = await loadMetricSplit('mnist', resolution);
  const net = trainClassifier(train, { seed, epochs });
  const heldOutAccuracy = net.accuracy(heldOut);
  const trainAccuracy = net.accuracy(train);
  const bytes = net.toBytes();
  const file = `mnist-${resolution}.bin`;
  await writeFile(new URL(file, WEIGHTS_DIR), bytes);
  classifiers.push({
    dataset: 'mnist',
    resolution,
    config: net.config,
    file,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    seed,
    epochs,
    split: {
      seed: METRIC_SPLIT_SEED,
      fraction: HELD_OUT_FRACTION,
      train: train.count,
      heldOut: heldOut.count,
    },
    heldOutAccuracy,
    backend: backend.name,
  });
  process.stderr.write(
    `mnist ${resolution}x${resolution}: held-out accuracy ${(100 * heldOutAccuracy).toFixed(2)} % (train ${(100 * trainAccuracy).toFixed(2)} %), ${((Date.now() - started) / 1000).toFixed(1)} s on ${backend.name}\n`,
  );
  net.dispose();
}
const kept = previous.filter((p) => !classifiers.some((c) => c.resolution === p.resolution));
const all = [...classifiers, ...kept].sort((a, b) => b.resolution - a.resolution);
await writeFile(
  new URL('manifest.json', WEIGHTS_DIR),
  `${JSON.stringify({ classifiers: all }, null, 2)}\n`,
);
