import { subsetImageSet } from '@archipelago/data';
import { initBackend } from '@archipelago/models';
import { createRng, sampleIndices } from '@archipelago/random';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  loadMetricSplit,
  loadShippedClassifier,
  MlpClassifier,
  readWeightsManifest,
  trainClassifier,
} from '../src/index.js';

beforeAll(async () => {
  await initBackend();
});

describe('shipped classifiers', () => {
  it('ship 28x28, the demo 16x16 and the tests 8x8 for mnist', async () => {
    const { classifiers } = await readWeightsManifest();
    expect(classifiers.map((c) => `${c.dataset}-${c.resolution}`).sort()).toEqual([
      'mnist-16',
      'mnist-28',
      'mnist-8',
    ]);
  }, 60_000);

  it.each([28, 16, 8])(
    'load at %i and reach the recorded held-out accuracy, over 95 percent',
    async (res) => {
      const { classifier, entry } = await loadShippedClassifier('mnist', res);
      const { train, heldOut } = await loadMetricSplit('mnist', res);
      expect([train.count, heldOut.count]).toEqual([entry.split.train, entry.split.heldOut]);
      const accuracy = classifier.accuracy(heldOut);
      expect(accuracy).toBeGreaterThan(0.95);
      expect(Math.abs(accuracy - entry.heldOutAccuracy)).toBeLessThanOrEqual(0.001);
      classifier.dispose();
    },
    60_000,
  );

  it('round-trips through bytes', async () => {
    const { classifier } = await loadShippedClassifier('mnist', 16);
    const copy = MlpClassifier.fromBytes(classifier.config, classifier.toBytes());
    expect(copy.toBytes()).toEqual(classifier.toBytes());
    expect(() => MlpClassifier.fromBytes(classifier.config, new Uint8Array(8))).toThrow(/bytes/);
    classifier.dispose();
    copy.dispose();
  }, 60_000);
});

describe('trainClassifier', () => {
  it('is deterministic for a seed and differs across seeds', async () => {
    const { train } = await loadMetricSplit('mnist', 16);
    const small = subsetImageSet(train, sampleIndices(train.count, 640, createRng(5)));
    const run = (seed: number) => {
      const net = trainClassifier(small, { seed, epochs: 1, maxSteps: 10 });
      const bytes = net.toBytes();
      net.dispose();
      return bytes;
    };
    const a = run(7);
    expect(run(7)).toEqual(a);
    expect(run(8)).not.toEqual(a);
  }, 60_000);
});
