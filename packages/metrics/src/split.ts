/**
 * The metric's split of a labelled dataset: a held-out part the classifier never trains on (the
 * "real held-out" images generated samples are compared with) and the rest, its training set.
 */
import { type ImageSet, subsetImageSet } from '@archipelago/data';
import { createRng, deriveSeed, shuffleInPlace } from '@archipelago/random';

export interface MetricSplit {
  train: ImageSet;
  heldOut: ImageSet;
}

/** Default fraction of each class held out. */
export const HELD_OUT_FRACTION = 0.2;

/**
 * Stratified split: each class is shuffled with a seed derived from `seed` and its label, and
 * its first `round(fraction * n)` images are held out. Both parts keep the dataset's order.
 * Deterministic for a seed.
 */
export function metricSplit(
  set: ImageSet,
  seed: number,
  fraction = HELD_OUT_FRACTION,
): MetricSplit {
  if (!(fraction > 0 && fraction < 1))
    throw new RangeError(`held-out fraction must be in (0, 1), got ${fraction}`);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < set.count; i++) {
    const label = set.labels[i]!;
    if (label < 0) throw new RangeError(`metricSplit needs labels; image ${i} has none`);
    const list = byClass.get(label) ?? [];
    list.push(i);
    byClass.set(label, list);
  }
  const heldOut: number[] = [];
  const train: number[] = [];
  for (const [label, list] of [...byClass].sort((a, b) => a[0] - b[0])) {
    shuffleInPlace(list, createRng(deriveSeed(seed, 'metric-split', label)));
    const n = Math.round(fraction * list.length);
    heldOut.push(...list.slice(0, n));
    train.push(...list.slice(n));
  }
  const sorted = (a: number[]) => Int32Array.from(a).sort();
  return {
    train: subsetImageSet(set, sorted(train)),
    heldOut: subsetImageSet(set, sorted(heldOut)),
  };
}
