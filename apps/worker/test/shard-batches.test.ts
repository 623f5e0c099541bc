import { encodeShard, type ImageSet } from '@archipelago/data';
import type { LeaseGrant } from '@archipelago/protocol';
import { describe, expect, it } from 'vitest';
import { ShardBatches } from '../src/shard-batches.js';

const set: ImageSet = {
  height: 2,
  width: 2,
  channels: 1,
  count: 50,
  pixels: Uint8Array.from({ length: 200 }, (_, i) => (i * 37) % 256),
  labels: Int32Array.from({ length: 50 }, (_, i) => (i % 5 === 4 ? -1 : i % 3)),
  classNames: ['a', 'b', 'c'],
};

describe('ShardBatches', () => {
  it('draws the same batch for the same (seed, step), in [-1, 1], with a null class', () => {
    const a = new ShardBatches(set, { batchSize: 16, seed: 7, numClasses: 3 });
    const b = new ShardBatches(set, { batchSize: 16, seed: 7, numClasses: 3 });
    const x = a.batch(12);
    expect(x).toEqual(b.batch(12));
    expect(x.x.shape).toEqual([16, 2, 2, 1]);
    expect(x.x.data.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(a.batch(13).x.data).not.toEqual(x.x.data);
    expect(new ShardBatches(set, { batchSize: 16, seed: 8, numClasses: 3 }).batch(12)).not.toEqual(
      x,
    );
    // Labels in [0, numClasses]; unlabeled images and dropped labels are the null class 3.
    let nulls = 0;
    for (let step = 0; step < 50; step++) {
      for (const l of a.batch(step).labels!) {
        expect(l).toBeGreaterThanOrEqual(0);
        expect(l).toBeLessThanOrEqual(3);
        if (l === 3) nulls++;
      }
    }
    expect(nulls / 800).toBeGreaterThan(0.2); // 20 % unlabeled + 10 % dropout of the rest
    expect(nulls / 800).toBeLessThan(0.4);
  });

  it('has no labels for an unconditional expert and repeats rows when the batch exceeds the shard', () => {
    const big = new ShardBatches(set, { batchSize: 80, seed: 1, numClasses: 0 }).batch(0);
    expect(big.labels).toBeUndefined();
    expect(big.x.shape[0]).toBe(80);
  });

  it('decodes a lease’s shard and refuses one of another image shape than the model', () => {
    const grant = (imageSize: number) =>
      ({
        shard: { train: { sha256: 'e'.repeat(64) } },
        model: { imageSize, channels: 1, numClasses: 3 },
        training: { batchSize: 4, seed: 7 },
      }) as LeaseGrant;
    const shard = encodeShard(set);
    const batches = ShardBatches.forGrant(grant(2), shard);
    expect(batches.set.count).toBe(50);
    expect(batches.batch(3)).toEqual(
      new ShardBatches(set, { batchSize: 4, seed: 7, numClasses: 3 }).batch(3),
    );
    expect(() => ShardBatches.forGrant(grant(8), shard)).toThrow(
      'the shard holds 2x2x1 images, the model expects 8x8x1',
    );
  });
});
