/**
 * The random-shard baseline of docs/method.md §8 ("semantic clusters beat random partitions"):
 * images dealt to K shards at random, with exactly the sizes a semantic clustering gave, so that
 * a comparison of the two isolates how images are assigned from how many each shard holds.
 */
import { createRng, shuffleInPlace } from '@archipelago/random';

/**
 * A uniformly random partition of `n = sum(sizes)` items into `sizes.length` groups of exactly
 * those sizes: the items in a seeded random order, the first `sizes[0]` to group 0, the next
 * `sizes[1]` to group 1, and so on. Deterministic for a seed.
 *
 * @param sizes - `[k]` group sizes, non-negative integers.
 * @returns `[n]` the group of each item, in [0, k).
 */
export function randomPartition(sizes: ArrayLike<number>, seed: number): Int32Array {
  let n = 0;
  for (let c = 0; c < sizes.length; c++) {
    const s = sizes[c]!;
    if (!Number.isInteger(s) || s < 0)
      throw new RangeError(`sizes[${c}] must be a non-negative integer, got ${s}`);
    n += s;
  }
  const order = Array.from({ length: n }, (_, i) => i);
  shuffleInPlace(order, createRng(seed));
  const groups = new Int32Array(n);
  let at = 0;
  for (let c = 0; c < sizes.length; c++) {
    for (let j = 0; j < sizes[c]!; j++) groups[order[at++]!] = c;
  }
  return groups;
}
