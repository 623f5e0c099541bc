/**
 * A smoke run of the ensembles experiment on a tiny budget (issue 14: the full experiments are
 * commands whose outputs docs cite; CI runs small ones): bench/ensembles.mjs as a real process,
 * 8 expert steps per ensemble (1 per expert at K = 8), 1 router step, 8 samples against 32
 * held-out images. Its JSON lines hold the floor, every expert and router, a score per
 * configuration with its experts per sample, and a summary; the PNG figure is written; the same
 * seed gives the same numbers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBench } from './run-bench.js';

const CONFIGS: [string, number][] = [
  ['monolith (K=1)', 1],
  ['K=4 semantic, top-1', 1],
  ['K=4 semantic, top-2', 2],
  ['K=4 semantic, full', 4],
  ['K=4 semantic, threshold 0.1', -1],
  ['K=8 semantic, top-1', 1],
  ['K=4 random, top-1', 1],
];

interface Line {
  kind: string;
  seed?: number;
  config?: string;
  ensemble?: string;
  cluster?: number;
  images?: number;
  steps?: number;
  seconds?: number;
  fdCls?: number;
  precision?: number;
  recall?: number;
  expertsPerSample?: number;
  configs?: Record<string, { fdCls: { mean: number; min: number; max: number } }>;
}

async function bench(figure: string): Promise<Line[]> {
  return runBench<Line>(
    'ensembles.mjs',
    {
      ENS_TOTAL_STEPS: '8',
      ENS_ROUTER_STEPS: '1',
      ENS_SAMPLES: '8',
      ENS_HELD: '32',
      ENS_SEEDS: '3',
      ENS_FIGURE: figure,
    },
    120_000,
  );
}

describe('bench/ensembles.mjs on a tiny budget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ensembles-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('scores every configuration, writes a summary and a figure; the same seed, the same numbers', async () => {
    // Two processes at once (a core each): the second checks the numbers repeat for the seed.
    const [lines, again] = await Promise.all([
      bench(path.join(dir, 'a.png')),
      bench(path.join(dir, 'b.png')),
    ]);
    expect(lines.filter((l) => l.kind === 'reference')).toHaveLength(1);
    // Equal total compute: 8 steps for the monolith, 2 per expert at K = 4, 1 at K = 8.
    const experts = lines.filter((l) => l.kind === 'expert');
    const stepsOf = (ensemble: string) =>
      experts.filter((e) => e.ensemble === ensemble).map((e) => e.steps);
    expect(stepsOf('K=1 monolith')).toEqual([8]);
    expect(stepsOf('K=4 semantic')).toEqual([2, 2, 2, 2]);
    expect(stepsOf('K=8 semantic')).toEqual(new Array(8).fill(1));
    // Random shards have the semantic shards' sizes; the monolith trains on every training image.
    const imagesOf = (ensemble: string) =>
      experts.filter((e) => e.ensemble === ensemble).map((e) => e.images);
    expect(imagesOf('K=4 random')).toEqual(imagesOf('K=4 semantic'));
    expect(imagesOf('K=1 monolith')).toEqual([10_000 - 32]);
    expect(lines.filter((l) => l.kind === 'router').map((l) => l.ensemble)).toEqual([
      'K=4 semantic',
      'K=8 semantic',
      'K=4 random',
    ]);
    const scores = lines.filter((l) => l.kind === 'score');
    expect(scores.map((s) => s.config)).toEqual(CONFIGS.map(([name]) => name));
    for (const [name, perSample] of CONFIGS) {
      const s = scores.find((l) => l.config === name)!;
      expect(s.seed).toBe(3);
      expect(s.fdCls).toBeGreaterThan(0);
      expect(s.precision! >= 0 && s.precision! <= 1).toBe(true);
      expect(s.recall! >= 0 && s.recall! <= 1).toBe(true);
      if (perSample > 0) expect(s.expertsPerSample).toBe(perSample);
      else expect(s.expertsPerSample! >= 1 && s.expertsPerSample! <= 4).toBe(true);
    }
    const summary = lines.find((l) => l.kind === 'summary')!;
    expect(Object.keys(summary.configs!).sort()).toEqual(CONFIGS.map(([name]) => name).sort());
    const meta = await sharp(path.join(dir, 'a.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1000, 70 + 150 * 7]);

    // Everything but wall-clock seconds is the same for the same seed.
    const strip = (ls: Line[]) =>
      ls.filter((l) => l.kind !== 'summary').map(({ seconds: _, ...rest }) => rest);
    expect(strip(again)).toEqual(strip(lines));
  }, 240_000);
});
