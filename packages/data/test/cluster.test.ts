import { initBackend } from '@archipelago/models';
import { createRng } from '@archipelago/random';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBuiltinDataset } from '../src/builtin.js';
import { clusterDataset } from '../src/cluster.js';
import { DatasetImportError } from '../src/errors.js';
import { computeFeatures } from '../src/features.js';

beforeAll(async () => {
  await initBackend();
});

/** Sum of squared distances of points to the means of their groups. */
function withinGroupSS(x: Float32Array, n: number, d: number, labels: Int32Array, k: number) {
  const sums = new Float64Array(k * d);
  const counts = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    counts[labels[i]!]!++;
    for (let j = 0; j < d; j++) sums[labels[i]! * d + j]! += x[i * d + j]!;
  }
  let ss = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++)
      ss += (x[i * d + j]! - sums[labels[i]! * d + j]! / counts[labels[i]!]!) ** 2;
  return ss;
}

describe('clusterDataset', () => {
  it('partitions the 10k mnist digits into K non-empty clusters, deterministically', {
    timeout: 60_000,
  }, async () => {
    const set = await loadBuiltinDataset('mnist');
    const { features, n, d } = await computeFeatures(set, { pcaComponents: 32, seed: 1 });
    const stages = new Set<string>();
    const result = await clusterDataset(features, n, d, {
      k: 8,
      seed: 42,
      onProgress: (p) => stages.add(p.stage),
    });
    expect(result.fineK).toBe(1000);
    expect(result.assignments.length).toBe(n);
    expect([...result.sizes].reduce((a, b) => a + b)).toBe(n);
    expect([...result.sizes].every((s) => s > 0)).toBe(true);
    expect([...stages]).toEqual(['fine', 'coarse', 'done']);
    for (let i = 0; i < n; i++) {
      expect(result.assignments[i]).toBe(result.fineToCoarse[result.fineAssignments[i]!]);
    }
    // Inertia is the within-cluster sum of squares on the points, and far below a random split.
    expect(result.inertia).toBeCloseTo(withinGroupSS(features, n, d, result.assignments, 8), -1);
    const rng = createRng(0);
    const random = Int32Array.from({ length: n }, () => rng.int(8));
    expect(result.inertia).toBeLessThan(0.85 * withinGroupSS(features, n, d, random, 8));
    expect(result.fineInertia).toBeLessThan(result.inertia);
    // Clusters follow the digits: the majority label covers well over chance (10%).
    let agree = 0;
    for (let c = 0; c < 8; c++) {
      const counts = new Array(10).fill(0);
      for (let i = 0; i < n; i++) if (result.assignments[i] === c) counts[set.labels[i]!]++;
      agree += Math.max(...counts);
    }
    expect(agree / n).toBeGreaterThan(0.4);

    const again = await clusterDataset(features, n, d, { k: 8, seed: 42 });
    expect(
      Buffer.from(again.assignments.buffer).equals(Buffer.from(result.assignments.buffer)),
    ).toBe(true);
    expect(again.inertia).toBe(result.inertia);
  });

  it('merges fine clusters of separated blobs into the blobs', async () => {
    const rng = createRng(1);
    const d = 3;
    const n = 900;
    const x = new Float32Array(n * d);
    const truth = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      truth[i] = i % 3;
      for (let j = 0; j < d; j++) x[i * d + j] = (j === truth[i] ? 30 : 0) + rng.normal();
    }
    const result = await clusterDataset(x, n, d, { k: 3, fineK: 45, seed: 7 });
    // Each coarse cluster is exactly one blob.
    const map = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const seen = map.get(result.assignments[i]!);
      if (seen === undefined) map.set(result.assignments[i]!, truth[i]!);
      else expect(seen).toBe(truth[i]);
    }
    expect(new Set(map.values()).size).toBe(3);
    expect([...result.sizes]).toEqual([300, 300, 300]);
  });

  it('random assignment: the semantic sizes, a seeded partition, and the class mix of the whole', {
    timeout: 60_000,
  }, async () => {
    const set = await loadBuiltinDataset('mnist', { resolution: 8 });
    const { features, n, d } = await computeFeatures(set, { pcaComponents: 16, seed: 1 });
    const k = 4;
    const semantic = await clusterDataset(features, n, d, { k, seed: 3 });
    const random = await clusterDataset(features, n, d, { k, seed: 3, assignment: 'random' });
    expect(semantic.assignment).toBe('semantic');
    expect(random.assignment).toBe('random');
    expect([...random.sizes]).toEqual([...semantic.sizes]);
    const again = await clusterDataset(features, n, d, { k, seed: 3, assignment: 'random' });
    expect(Array.from(again.assignments)).toEqual(Array.from(random.assignments));
    // The class mix: total variation distance of each shard's class histogram from the dataset's,
    // weighted by shard size.
    const mix = (assignments: Int32Array) => {
      const classes = set.classNames.length;
      const whole = new Array<number>(classes).fill(0);
      const per = Array.from({ length: k }, () => new Array<number>(classes).fill(0));
      for (let i = 0; i < n; i++) {
        whole[set.labels[i]!]! += 1;
        per[assignments[i]!]![set.labels[i]!]! += 1;
      }
      let tv = 0;
      for (const h of per) {
        const size = h.reduce((a, b) => a + b, 0);
        let dist = 0;
        for (let c = 0; c < classes; c++) dist += Math.abs(h[c]! / size - whole[c]! / n) / 2;
        tv += (size / n) * dist;
      }
      return tv;
    };
    const tvSemantic = mix(semantic.assignments);
    const tvRandom = mix(random.assignments);
    console.info(JSON.stringify({ sizes: [...semantic.sizes], tvSemantic, tvRandom }));
    // Shards of ~2,500 images at random: sampling noise alone, a few hundredths.
    expect(tvRandom).toBeLessThan(0.05);
    expect(tvSemantic).toBeGreaterThan(0.3);
    // Random shards are spread over the whole feature space: far higher inertia.
    expect(random.inertia).toBeGreaterThan(1.2 * semantic.inertia);
  });

  it('K = 1 (a monolith): one cluster of every point, its centroid the mean', async () => {
    const x = Float32Array.of(0, 0, 2, 0, 4, 6);
    for (const assignment of ['semantic', 'random'] as const) {
      const result = await clusterDataset(x, 3, 2, { k: 1, seed: 1, assignment });
      expect(Array.from(result.assignments)).toEqual([0, 0, 0]);
      expect(Array.from(result.sizes)).toEqual([3]);
      expect(Array.from(result.coarseCentroids)).toEqual([2, 2]);
      // (4 + 4) + (0 + 4) + (4 + 16)
      expect(result.inertia).toBe(32);
      expect(result.assignment).toBe(assignment);
    }
  });

  it('refuses an unknown assignment, listing the valid ones', async () => {
    await expect(
      clusterDataset(new Float32Array(8), 8, 1, {
        k: 2,
        seed: 1,
        assignment: 'shuffled' as 'random',
      }),
    ).rejects.toThrow(/unknown assignment "shuffled"; valid: semantic, random/);
  });

  it('rejects fewer points than clusters', async () => {
    const err = await clusterDataset(new Float32Array(4), 4, 1, { k: 8, seed: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DatasetImportError);
    expect((err as DatasetImportError).code).toBe('too_small');
  });
});
