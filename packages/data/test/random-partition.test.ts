import { describe, expect, it } from 'vitest';
import { randomPartition } from '../src/random-partition.js';

const counts = (groups: Int32Array, k: number) => {
  const c = new Array<number>(k).fill(0);
  for (const g of groups) c[g]! += 1;
  return c;
};

describe('randomPartition', () => {
  it('gives every group exactly its size, deterministically for a seed', () => {
    const sizes = [500, 3, 0, 1200, 97];
    const a = randomPartition(sizes, 7);
    expect(a.length).toBe(1800);
    expect(counts(a, 5)).toEqual(sizes);
    expect(Array.from(randomPartition(sizes, 7))).toEqual(Array.from(a));
    const b = randomPartition(sizes, 8);
    expect(counts(b, 5)).toEqual(sizes);
    expect(Array.from(b)).not.toEqual(Array.from(a));
  });

  it('is uniform: each item lands in a group in proportion to its size', () => {
    // Item 0 over 2,000 seeds: in group 1 (of 3 in 4 places) about 3/4 of the time.
    let inLarge = 0;
    for (let seed = 0; seed < 2000; seed++) if (randomPartition([1, 3], seed)[0] === 1) inLarge++;
    // 4 binomial standard deviations: sqrt(2000 * 0.75 * 0.25) = 19.4.
    expect(Math.abs(inLarge - 1500)).toBeLessThan(4 * 19.4);
  });

  it('refuses sizes that are not non-negative integers', () => {
    expect(() => randomPartition([2, -1], 0)).toThrow(/sizes\[1\] must be a non-negative integer/);
    expect(() => randomPartition([2.5], 0)).toThrow(/sizes\[0\]/);
  });
});
