/**
 * A smoke run of the heterogeneous-ensembles experiment on a tiny budget (issue 14: the full
 * experiments are commands whose outputs docs cite; CI runs small ones): bench/hetero.mjs as a
 * real process, 2 steps per expert, 1 router step, 8 samples against 32 held-out images. Its JSON
 * lines hold the floor, an FM, an epsilon and a v expert per cluster (the same images each), one
 * router, a score per mix and routing, and a summary with each mix over 8 FM; the PNG figure is
 * written; the same seed gives the same numbers.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBench } from './run-bench.js';

const MIXES = ['8 FM', '2 eps : 6 FM', '8 eps', '2 v : 6 FM', '8 v'];
const CONFIGS = MIXES.flatMap((m) => [`${m}, top-1`, `${m}, full`]);

interface Line {
  kind: string;
  seed?: number;
  config?: string;
  mix?: string;
  cluster?: number;
  objective?: string;
  images?: number;
  steps?: number;
  seconds?: number;
  fdCls?: number;
  precision?: number;
  recall?: number;
  expertsPerSample?: number;
  ddpmClusters?: number[];
  configs?: Record<string, { fdCls: { mean: number } }>;
  overFm?: Record<string, { mean: number }>;
}

async function bench(figure: string, more: Record<string, string> = {}): Promise<Line[]> {
  return runBench<Line>(
    'hetero.mjs',
    {
      HETERO_STEPS: '2',
      HETERO_ROUTER_STEPS: '1',
      HETERO_SAMPLES: '8',
      HETERO_HELD: '32',
      HETERO_SEEDS: '3',
      HETERO_FIGURE: figure,
      ...more,
    },
    600_000,
  );
}

describe('bench/hetero.mjs on a tiny budget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'hetero-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('scores every mix and routing, writes a summary and a figure; the same seed, the same numbers', async () => {
    const [lines, again] = await Promise.all([
      bench(path.join(dir, 'a.png')),
      bench(path.join(dir, 'b.png')),
    ]);
    expect(lines.filter((l) => l.kind === 'reference')).toHaveLength(1);
    // Every cluster gets one expert of each objective, with the same steps and the same images.
    const experts = lines.filter((l) => l.kind === 'expert');
    expect(experts).toHaveLength(24);
    for (let c = 0; c < 8; c++) {
      const of = experts.filter((e) => e.cluster === c);
      expect(of.map((e) => e.objective)).toEqual(['fm', 'eps', 'v']);
      expect(new Set(of.map((e) => e.images)).size).toBe(1);
      expect(of.every((e) => e.steps === 2)).toBe(true);
    }
    expect(experts.reduce((n, e) => n + (e.objective === 'fm' ? e.images! : 0), 0)).toBe(
      10_000 - 32,
    );
    expect(lines.filter((l) => l.kind === 'router')).toHaveLength(1);
    const scores = lines.filter((l) => l.kind === 'score');
    expect(scores.map((s) => s.config)).toEqual(CONFIGS);
    for (const s of scores) {
      expect(s.seed).toBe(3);
      // Seed s's DDPM experts sit on clusters 2s and 2s + 1 (mod 8).
      expect(s.ddpmClusters).toEqual([6, 7]);
      expect(s.fdCls).toBeGreaterThan(0);
      expect(s.precision! >= 0 && s.precision! <= 1).toBe(true);
      expect(s.recall! >= 0 && s.recall! <= 1).toBe(true);
      expect(s.expertsPerSample).toBe(s.config!.endsWith('top-1') ? 1 : 8);
    }
    // A mix's experts are not 8 FM's: its samples differ.
    const fd = (name: string) => scores.find((s) => s.config === name)!.fdCls;
    expect(fd('2 eps : 6 FM, full')).not.toBe(fd('8 FM, full'));
    const summary = lines.find((l) => l.kind === 'summary')!;
    expect(Object.keys(summary.configs!)).toEqual(CONFIGS);
    expect(summary.overFm!['8 FM, top-1']!.mean).toBe(1);
    expect(summary.overFm!['8 eps, full']!.mean).toBeCloseTo(
      fd('8 eps, full')! / fd('8 FM, full')!,
      3,
    );
    const meta = await sharp(path.join(dir, 'a.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1000, 70 + 150 * 10]);

    const strip = (ls: Line[]) =>
      ls.filter((l) => l.kind !== 'summary').map(({ seconds: _, ...rest }) => rest);
    expect(strip(again)).toEqual(strip(lines));

    // Seeds measured in another process join the summary: seed 4 here, seed 3 from the lines above.
    const from = path.join(dir, 'seed3.jsonl');
    await writeFile(from, lines.map((l) => JSON.stringify(l)).join('\n'));
    const merged = await bench(path.join(dir, 'c.png'), { HETERO_SEEDS: '4', HETERO_FROM: from });
    const both = merged.find((l) => l.kind === 'summary')! as Line & {
      seeds: number[];
      configs: Record<string, { fdCls: { mean: number; min: number; max: number } }>;
    };
    expect(both.seeds).toEqual([3, 4]);
    const fd4 = merged.find((l) => l.kind === 'score' && l.config === '8 FM, full')!.fdCls!;
    const fd3 = fd('8 FM, full')!;
    expect(both.configs['8 FM, full']!.fdCls.min).toBeCloseTo(Math.min(fd3, fd4), 3);
    expect(both.configs['8 FM, full']!.fdCls.max).toBeCloseTo(Math.max(fd3, fd4), 3);
    // A seed measured in both is refused.
    await expect(bench(path.join(dir, 'd.png'), { HETERO_FROM: from })).rejects.toThrow(
      /seed 3 was measured here too/,
    );
  }, 1_500_000);
});
