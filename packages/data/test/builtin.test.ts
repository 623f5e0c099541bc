import { describe, expect, it } from 'vitest';
import { BUILTIN_DATASETS, loadBuiltinDataset } from '../src/builtin.js';
import { DatasetImportError } from '../src/errors.js';
import { countLabels } from '../src/image-set.js';

describe('loadBuiltinDataset', () => {
  it('loads the 10,000 mnist digits, 28x28 gray, 10 classes of about 1,000', {
    timeout: 30_000,
  }, async () => {
    const set = await loadBuiltinDataset('mnist');
    expect([set.count, set.height, set.width, set.channels]).toEqual([10000, 28, 28, 1]);
    expect(set.pixels.length).toBe(10000 * 784);
    expect(set.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const { counts, unlabeled } = countLabels(set);
    expect(unlabeled).toBe(0);
    expect(counts.reduce((a, b) => a + b)).toBe(10000);
    for (const c of counts) expect(c).toBeGreaterThanOrEqual(850);
    for (const c of counts) expect(c).toBeLessThanOrEqual(1150);
    expect(set.pixels.reduce((a, b) => Math.max(a, b), 0)).toBe(255);
    // Digits are dark background with a bright stroke.
    const mean = set.pixels.reduce((a, b) => a + b, 0) / set.pixels.length;
    expect(mean).toBeGreaterThan(20);
    expect(mean).toBeLessThan(50);
    const again = await loadBuiltinDataset('mnist');
    // Buffer.equals: vitest's deep equality is very slow on 7.8M-element arrays.
    expect(Buffer.from(again.pixels).equals(set.pixels)).toBe(true);
    expect(Buffer.from(again.labels.buffer).equals(Buffer.from(set.labels.buffer))).toBe(true);
  });

  it('resizes and converts channels on request', async () => {
    const set = await loadBuiltinDataset('mnist', { resolution: 16, channels: 3 });
    expect([set.count, set.height, set.width, set.channels]).toEqual([10000, 16, 16, 3]);
    expect(set.pixels.length).toBe(10000 * 16 * 16 * 3);
    // Gray replicated: R = G = B everywhere, and the digit strokes survive the shrink.
    for (let p = 0; p < 16 * 16 * 50; p++) {
      expect(set.pixels[3 * p + 1]).toBe(set.pixels[3 * p]);
      expect(set.pixels[3 * p + 2]).toBe(set.pixels[3 * p]);
    }
    expect(set.pixels.subarray(0, 768).reduce((a, b) => Math.max(a, b), 0)).toBeGreaterThan(200);
  }, 30_000);

  it('lists valid names for an unknown dataset', async () => {
    const err = await loadBuiltinDataset('cifar' as 'mnist').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetImportError);
    expect((err as DatasetImportError).code).toBe('unknown_dataset');
    expect((err as Error).message).toMatch(/valid: mnist/);
  });

  it('describes license and origin', () => {
    const mnist = BUILTIN_DATASETS.find((d) => d.name === 'mnist')!;
    expect(mnist.license).toMatch(/MIT/);
    expect(mnist.origin).toMatch(/LeCun/);
    expect(mnist.count).toBe(10000);
  });
});
