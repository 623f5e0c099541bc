import { decodeShard } from '@archipelago/data';
import type { Dataset } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shards } from '../../src/db/schema/index.js';
import { type RunFixture, runFixture } from './fixtures.js';

describe('expert example strips', () => {
  let f: RunFixture;
  beforeAll(async () => {
    f = await runFixture();
  });
  afterAll(async () => f.t.close());

  const strip = (cluster: number | string, runId = f.run.id) =>
    f.t.app.inject({ method: 'GET', url: `/api/v1/runs/${runId}/experts/${cluster}/examples.png` });

  it("shows 8 images spread through the expert's training shard", async () => {
    const dataset = (
      await f.t.app.inject({ method: 'GET', url: `/api/v1/datasets/${f.run.datasetId}` })
    ).json() as Dataset;
    expect(dataset.height).toBe(16);
    for (const cluster of [0, 1]) {
      const res = await strip(cluster);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['content-type']).toBe('image/png');
      expect(res.headers['cache-control']).toMatch(/max-age=\d+/);
      const shard = f.t.coordinator.db
        .select()
        .from(shards)
        .where(eq(shards.id, (await shardIdOf(cluster))!))
        .get()!;
      const images = decodeShard(await f.t.coordinator.store.getBytes(shard.key));
      const n = Math.min(8, images.count);
      expect(n).toBeGreaterThan(0);
      // 16 px images drawn at 3x with 2 px padding, in one row.
      const { data, info } = await sharp(res.rawPayload)
        .raw()
        .toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([2 + n * 50, 52]);
      // Tile i is image floor(i * count / n) of the shard (top-left pixel of each cell).
      for (let i = 0; i < n; i++) {
        const src = Math.floor((i * images.count) / n);
        const size = 16 * 16 * 3;
        for (const [y, x] of [
          [0, 0],
          [7, 11],
          [15, 15],
        ] as const) {
          const expected = images.pixels[src * size + (y * 16 + x) * 3]!;
          const px = (2 + y * 3) * info.width + 2 + i * 50 + x * 3;
          expect(data[px * info.channels], `tile ${i} (${y}, ${x})`).toBe(expected);
        }
      }
    }
  });

  it('caches strips by shard: a second request does not read the store', async () => {
    const first = await strip(0);
    const shard = f.t.coordinator.db
      .select()
      .from(shards)
      .where(eq(shards.id, (await shardIdOf(0))!))
      .get()!;
    const bytes = await f.t.coordinator.store.getBytes(shard.key);
    await f.t.coordinator.store.delete(shard.key);
    try {
      const again = await strip(0);
      expect(again.statusCode).toBe(200);
      expect(again.rawPayload.equals(first.rawPayload)).toBe(true);
    } finally {
      await f.t.coordinator.store.put(shard.key, bytes);
    }
  });

  it('404s an unknown run or cluster, 400s a bad cluster', async () => {
    expect((await strip(2)).statusCode).toBe(404);
    expect((await strip(0, 'run_doesnotexist')).statusCode).toBe(404);
    expect((await strip('x')).statusCode).toBe(400);
    expect((await strip(-1)).statusCode).toBe(400);
  });

  async function shardIdOf(cluster: number): Promise<string | null> {
    const run = (await f.t.app.inject({ method: 'GET', url: `/api/v1/runs/${f.run.id}` })).json();
    const expert = run.experts.find((e: { cluster: number }) => e.cluster === cluster);
    const row = f.t.coordinator.db.query.experts
      .findFirst({ where: (t, { eq: e }) => e(t.id, expert.id) })
      .sync();
    return row?.trainShardId ?? null;
  }
});
