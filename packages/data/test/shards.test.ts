import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ImageSet } from '../src/image-set.js';
import { decodeShard } from '../src/shard-format.js';
import { buildShards, valCount } from '../src/shards.js';

function numbered(count: number): ImageSet {
  // Image i is 2x2 gray filled with i % 256 and i >> 8, so shards can be traced back.
  const pixels = new Uint8Array(count * 4);
  for (let i = 0; i < count; i++) pixels.set([i % 256, i >> 8, i % 256, i >> 8], i * 4);
  return {
    height: 2,
    width: 2,
    channels: 1,
    count,
    pixels,
    labels: Int32Array.from({ length: count }, (_, i) => (i % 7 === 0 ? -1 : i % 3)),
    classNames: ['zero', 'one', 'two'],
  };
}

describe('valCount', () => {
  it('rounds, keeps at least one val image from 2 images on, never takes all', () => {
    expect(valCount(0, 0.02)).toBe(0);
    expect(valCount(1, 0.02)).toBe(0);
    expect(valCount(2, 0.02)).toBe(1);
    expect(valCount(100, 0.02)).toBe(2);
    expect(valCount(125, 0.02)).toBe(3); // 2.5 rounds half up
    expect(valCount(3, 0.9)).toBe(2);
    expect(valCount(50, 0)).toBe(0);
  });
});

describe('buildShards', () => {
  const set = numbered(1201);
  // Cluster 0: 600 images, 1: 600, 2: one image, 3: empty.
  const assignments = Int32Array.from({ length: set.count }, (_, i) => (i === 1200 ? 2 : i % 2));
  const shards = buildShards(set, assignments, 4, { valFraction: 0.05, seed: 3 });

  it('puts every image in exactly one split of its cluster', () => {
    expect(shards.map((s) => s.cluster)).toEqual([0, 1, 2, 3]);
    const seen = new Int32Array(set.count);
    for (const s of shards)
      for (const split of [s.train, s.val])
        for (const i of split.index.sourceIndices) {
          seen[i]++;
          expect(assignments[i]).toBe(s.cluster);
        }
    expect(seen.every((c) => c === 1)).toBe(true);
  });

  it('respects the val fraction and its rounding', () => {
    expect(shards.map((s) => s.val.index.count)).toEqual([30, 30, 0, 0]);
    expect(shards.map((s) => s.train.index.count)).toEqual([570, 570, 1, 0]);
    expect(shards[0]!.val.index.split).toBe('val');
    expect(shards[0]!.train.index.split).toBe('train');
  });

  it('writes shards that match their index: bytes, sha256, pixels, labels, class counts', () => {
    for (const s of shards) {
      for (const { bytes, index } of [s.train, s.val]) {
        expect(index.bytes).toBe(bytes.length);
        expect(index.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
        expect(index).toMatchObject({
          format: 'archipelago.shard',
          version: 1,
          cluster: s.cluster,
          height: 2,
          width: 2,
          channels: 1,
          layout: 'NHWC',
          labelDtype: 'int16',
          pixelOffset: 64,
          classNames: ['zero', 'one', 'two'],
        });
        const back = decodeShard(bytes, { classNames: index.classNames });
        expect(back.count).toBe(index.count);
        const counts: Record<string, number> = {};
        index.sourceIndices.forEach((src, j) => {
          expect([...back.pixels.subarray(j * 4, j * 4 + 4)]).toEqual([
            ...set.pixels.subarray(src * 4, src * 4 + 4),
          ]);
          expect(back.labels[j]).toBe(set.labels[src]);
          if (set.labels[src]! >= 0) {
            const name = set.classNames[set.labels[src]!]!;
            counts[name] = (counts[name] ?? 0) + 1;
          }
        });
        expect(index.classCounts).toEqual(counts);
      }
    }
  });

  it('is deterministic for a seed, shuffled, and different for another seed', () => {
    const again = buildShards(set, assignments, 4, { valFraction: 0.05, seed: 3 });
    expect(again.map((s) => s.train.index.sha256)).toEqual(shards.map((s) => s.train.index.sha256));
    const other = buildShards(set, assignments, 4, { valFraction: 0.05, seed: 4 });
    expect(other[0]!.val.index.sourceIndices).not.toEqual(shards[0]!.val.index.sourceIndices);
    const train = shards[0]!.train.index.sourceIndices;
    expect(train).not.toEqual([...train].sort((a, b) => a - b));
  });

  it('validates its inputs', () => {
    expect(() => buildShards(set, new Int32Array(3), 4, { seed: 1 })).toThrow(/length 3/);
    expect(() => buildShards(set, new Int32Array(set.count).fill(4), 4, { seed: 1 })).toThrow(
      /outside/,
    );
    expect(() => buildShards(set, assignments, 4, { seed: 1, valFraction: 1 })).toThrow(
      /valFraction/,
    );
  });
});
