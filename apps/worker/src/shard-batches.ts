/**
 * Training batches from a decoded shard, a pure function of (seed, step): a resumed or re-leased
 * expert sees exactly the batches it would have seen, whichever worker trains it.
 *
 * Pixels (uint8 NHWC) are scaled to [-1, 1] per batch, so a shard costs its own size in memory,
 * not four times that. Class-conditional experts get labels; unlabeled images and a fraction
 * {@link LABEL_DROPOUT} of the others get the null class (= numClasses), which is what
 * classifier-free guidance samples with.
 */
import {
  createRng,
  decodeShard,
  deriveSeed,
  type ImageSet,
  sampleIndices,
} from '@archipelago/data';
import type { LeaseGrant } from '@archipelago/protocol';

/** Fraction of labels replaced by the null class for classifier-free guidance (DiT's 0.1). */
export const LABEL_DROPOUT = 0.1;

export interface Batch {
  x: { data: Float32Array; shape: [number, number, number, number] };
  /** `[B]` labels in [0, numClasses]; absent for an unconditional expert. */
  labels?: Int32Array;
}

export interface ShardBatchesOptions {
  batchSize: number;
  seed: number;
  /** 0: unconditional. */
  numClasses: number;
  labelDropout?: number;
}

export class ShardBatches {
  private readonly imageSize: number;

  constructor(
    readonly set: ImageSet,
    private readonly options: ShardBatchesOptions,
  ) {
    if (set.count === 0) throw new RangeError('the shard holds no images');
    this.imageSize = set.height * set.width * set.channels;
  }

  /** The batches of a lease: its shard's bytes decoded and checked against the grant's model. */
  static forGrant(grant: LeaseGrant, shard: Uint8Array): ShardBatches {
    const set = decodeShard(shard, { file: `shard ${grant.shard.train.sha256.slice(0, 12)}` });
    const { imageSize, channels, numClasses } = grant.model;
    if (set.height !== imageSize || set.width !== imageSize || set.channels !== channels) {
      throw new Error(
        `the shard holds ${set.height}x${set.width}x${set.channels} images, the model expects ${imageSize}x${imageSize}x${channels}`,
      );
    }
    return new ShardBatches(set, {
      batchSize: grant.training.batchSize,
      seed: grant.training.seed,
      numClasses,
    });
  }

  /** The batch of training step `step` (0-based: the step about to be taken). */
  batch(step: number): Batch {
    const { batchSize, numClasses } = this.options;
    const rng = createRng(deriveSeed(this.options.seed, 'batch', step));
    const n = this.set.count;
    const rows =
      batchSize <= n
        ? sampleIndices(n, batchSize, rng)
        : Int32Array.from({ length: batchSize }, () => rng.int(n));
    const data = new Float32Array(batchSize * this.imageSize);
    const { pixels } = this.set;
    for (let b = 0; b < batchSize; b++) {
      const from = (rows[b] as number) * this.imageSize;
      const to = b * this.imageSize;
      for (let i = 0; i < this.imageSize; i++)
        data[to + i] = (pixels[from + i] as number) / 127.5 - 1;
    }
    const batch: Batch = {
      x: { data, shape: [batchSize, this.set.height, this.set.width, this.set.channels] },
    };
    if (numClasses > 0) {
      const dropout = this.options.labelDropout ?? LABEL_DROPOUT;
      const labels = new Int32Array(batchSize);
      for (let b = 0; b < batchSize; b++) {
        const label = this.set.labels[rows[b] as number] as number;
        const valid = label >= 0 && label < numClasses;
        labels[b] = valid && rng.next() >= dropout ? label : numClasses;
      }
      batch.labels = labels;
    }
    return batch;
  }
}
