import {
  type ImageSet,
  imageBytes,
  renderGrid,
  SHARD_HEADER_BYTES,
  SHARD_MAGIC,
  upscaleFor,
} from '@archipelago/data';
import type { ObjectStore } from '@archipelago/storage';
import { and, eq } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { clusterings, datasets, experts, shards } from '../db/schema/index.js';
import { DomainError, notFound } from '../errors.js';

/** Images in an expert's example strip. */
export const EXAMPLES_PER_STRIP = 8;
/** Strips kept in memory (shards are immutable, so a strip never changes). */
const CACHE_SIZE = 256;

/**
 * A PNG strip of example images from one expert's training shard, evenly spaced through the
 * shard. Only the header and the chosen images are read (byte ranges), never the whole shard;
 * strips are cached by shard id.
 */
export class ExpertExamples {
  private readonly cache = new Map<string, Promise<Buffer>>();

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
  ) {}

  async strip(runId: string, cluster: number): Promise<Buffer> {
    const expert = this.db
      .select({ trainShardId: experts.trainShardId })
      .from(experts)
      .where(and(eq(experts.runId, runId), eq(experts.cluster, cluster)))
      .get();
    if (!expert) throw notFound(`expert of run ${runId} for cluster`, String(cluster));
    if (!expert.trainShardId)
      throw new DomainError(
        'no_shard',
        `the expert for cluster ${cluster} of run ${runId} has no shard yet (the run is still clustering)`,
      );
    const shardId = expert.trainShardId;
    const cached = this.cache.get(shardId);
    if (cached) {
      // Most recently used last.
      this.cache.delete(shardId);
      this.cache.set(shardId, cached);
      return cached;
    }
    const pending = this.render(shardId);
    this.cache.set(shardId, pending);
    pending.catch(() => this.cache.delete(shardId));
    if (this.cache.size > CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    return pending;
  }

  private async render(shardId: string): Promise<Buffer> {
    const row = this.db
      .select({ shard: shards, dataset: datasets })
      .from(shards)
      .innerJoin(clusterings, eq(clusterings.id, shards.clusteringId))
      .innerJoin(datasets, eq(datasets.id, clusterings.datasetId))
      .where(eq(shards.id, shardId))
      .get();
    if (!row) throw notFound('shard', shardId);
    const { shard, dataset } = row;
    const header = await this.store.getBytes(shard.key, { start: 0, end: SHARD_HEADER_BYTES - 1 });
    const magic = header.toString('latin1', 0, 8);
    const count = header.readUInt32LE(12);
    const [height, width, channels] = [
      header.readUInt16LE(16),
      header.readUInt16LE(18),
      header[20],
    ];
    if (
      magic !== SHARD_MAGIC ||
      count !== shard.count ||
      height !== dataset.height ||
      width !== dataset.width ||
      channels !== dataset.channels
    ) {
      throw new Error(
        `shard ${shard.key} does not match its record (${magic}, ${count} images of ${height}x${width}x${channels})`,
      );
    }
    const set: ImageSet = {
      height,
      width,
      channels: channels as 1 | 3,
      count: Math.min(EXAMPLES_PER_STRIP, count),
      pixels: new Uint8Array(0),
      labels: new Int32Array(0),
      classNames: [],
    };
    const size = imageBytes(set);
    const pixelOffset = Number(header.readBigUInt64LE(24));
    const picks = Array.from({ length: set.count }, (_, i) => Math.floor((i * count) / set.count));
    set.pixels = new Uint8Array(set.count * size);
    set.labels = new Int32Array(set.count).fill(-1);
    await Promise.all(
      picks.map(async (image, i) => {
        const start = pixelOffset + image * size;
        set.pixels.set(
          await this.store.getBytes(shard.key, { start, end: start + size - 1 }),
          i * size,
        );
      }),
    );
    return renderGrid(set, [picks.map((_, i) => i)], { scale: upscaleFor(height, 48, 8) });
  }
}
