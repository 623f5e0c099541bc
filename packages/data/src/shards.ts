/**
 * Cut a clustered dataset into per-cluster train/val shards (bytes + JSON index). Pure: the
 * coordinator decides where they go (`datasets/{id}/.../{k}.bin`, `{k}.json`, `{k}.val.bin`,
 * `{k}.val.json`).
 */
import { createHash } from 'node:crypto';
import { createRng, deriveSeed, shuffleInPlace } from '@archipelago/random';
import { type ImageSet, subsetImageSet, validateImageSet } from './image-set.js';
import { encodeShard, type ShardIndex, shardLayout } from './shard-format.js';

export interface ShardFile {
  /** The `.bin` file contents. */
  bytes: Buffer;
  /** Its JSON index. */
  index: ShardIndex;
}

export interface ClusterShards {
  cluster: number;
  train: ShardFile;
  val: ShardFile;
}

export interface BuildShardsOptions {
  /** Fraction of each cluster held out for validation (default 0.02), in [0, 1). */
  valFraction?: number;
  seed: number;
}

/**
 * Validation images for a cluster of `count`: `round(count * valFraction)`, but at least 1 when
 * the cluster has >= 2 images and valFraction > 0, and never all of them (at least one training
 * image stays). Clusters of 0 or 1 images get no validation images.
 */
export function valCount(count: number, valFraction: number): number {
  if (count < 2 || valFraction <= 0) return 0;
  return Math.min(count - 1, Math.max(1, Math.round(count * valFraction)));
}

function makeShard(
  set: ImageSet,
  indices: number[],
  cluster: number,
  split: 'train' | 'val',
): ShardFile {
  const subset = subsetImageSet(set, indices);
  const bytes = encodeShard(subset);
  const layout = shardLayout(subset.count, set.height * set.width * set.channels);
  const classCounts: Record<string, number> = {};
  for (const l of subset.labels) {
    if (l < 0) continue;
    const name = set.classNames[l];
    classCounts[name] = (classCounts[name] ?? 0) + 1;
  }
  return {
    bytes,
    index: {
      format: 'archipelago.shard',
      version: 1,
      cluster,
      split,
      count: subset.count,
      height: set.height,
      width: set.width,
      channels: set.channels,
      layout: 'NHWC',
      pixelOffset: layout.pixelOffset,
      labelOffset: layout.labelOffset,
      labelDtype: 'int16',
      bytes: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      classNames: [...set.classNames],
      classCounts,
      sourceIndices: indices,
    },
  };
}

/**
 * Split each cluster's images into a train and a val shard.
 *
 * Within a cluster the images are shuffled with a stream derived from (seed, cluster), so a
 * cluster's shards do not depend on the other clusters; the first {@link valCount} shuffled
 * images are the val split, the rest train, both in shuffled order. Clusters with no images get
 * empty shards, so there are always k entries.
 *
 * @param assignments - `[N]` cluster of each image, in [0, k).
 */
export function buildShards(
  set: ImageSet,
  assignments: Int32Array,
  k: number,
  options: BuildShardsOptions,
): ClusterShards[] {
  validateImageSet(set);
  if (assignments.length !== set.count)
    throw new RangeError(`assignments has length ${assignments.length}, dataset has ${set.count}`);
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be an integer >= 1, got ${k}`);
  const valFraction = options.valFraction ?? 0.02;
  if (!(valFraction >= 0 && valFraction < 1))
    throw new RangeError(`valFraction must be in [0, 1), got ${valFraction}`);
  const members: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < assignments.length; i++) {
    const c = assignments[i];
    if (!(c >= 0 && c < k))
      throw new RangeError(`assignment ${c} of image ${i} is outside [0, ${k})`);
    members[c].push(i);
  }
  return members.map((indices, cluster) => {
    shuffleInPlace(indices, createRng(deriveSeed(options.seed, 'shards', cluster)));
    const nVal = valCount(indices.length, valFraction);
    return {
      cluster,
      train: makeShard(set, indices.slice(nVal), cluster, 'train'),
      val: makeShard(set, indices.slice(0, nVal), cluster, 'val'),
    };
  });
}
