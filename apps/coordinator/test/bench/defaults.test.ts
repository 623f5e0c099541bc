/**
 * A smoke run of the defaults sweep on a tiny budget (issue 14 point 7: the full experiments are
 * commands whose outputs docs cite; CI runs small ones): bench/defaults.mjs as a real process,
 * 2 steps per expert, 1 router step, 10 class-conditional samples (one of each class) against 40
 * held-out images. Its JSON lines hold the floor, the v expert of cluster 0 and both FM variants
 * of the others, a class-reading router, a score per configuration (class accuracy for the
 * class-conditional ones) and a summary against the base configuration; the PNG figure is
 * written; the same seed gives the same numbers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBench } from './run-bench.js';

interface Line {
  kind: string;
  seed?: number;
  config?: string;
  sweep?: string;
  settings?: { routing: { kind: string; k?: number }; conditional: boolean; guidance: number };
  cluster?: number;
  objective?: string;
  classes?: number;
  images?: number;
  seconds?: number;
  fdCls?: number;
  classAccuracy?: number | null;
  expertsPerSample?: number;
  base?: string;
  configs?: Record<string, { overBase: { mean: number }; betterOnSeeds: number }>;
}

async function bench(figure: string): Promise<Line[]> {
  return runBench<Line>(
    'defaults.mjs',
    {
      DEFAULTS_STEPS: '2',
      DEFAULTS_ROUTER_STEPS: '1',
      DEFAULTS_SAMPLES: '10',
      DEFAULTS_HELD: '40',
      DEFAULTS_SEEDS: '3',
      DEFAULTS_FIGURE: figure,
    },
    600_000,
  );
}

describe('bench/defaults.mjs on a tiny budget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'defaults-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('scores every sweep around the base, writes a summary and a figure; the same seed, the same numbers', async () => {
    const [lines, again] = await Promise.all([
      bench(path.join(dir, 'a.png')),
      bench(path.join(dir, 'b.png')),
    ]);
    const experts = lines.filter((l) => l.kind === 'expert');
    expect(experts.map((e) => `${e.cluster} ${e.objective}`)).toEqual([
      '0 v',
      '1 fm-logit-normal',
      '1 fm-uniform',
      '2 fm-logit-normal',
      '2 fm-uniform',
      '3 fm-logit-normal',
      '3 fm-uniform',
    ]);
    expect(lines.find((l) => l.kind === 'router')!.classes).toBe(10);
    const scores = lines.filter((l) => l.kind === 'score');
    expect(scores.map((s) => s.sweep)).toEqual([
      'base',
      ...new Array(5).fill('sampler'),
      ...new Array(3).fill('guidance'),
      'routing',
      'routing',
      'fm time sampling',
      'unconditional',
    ]);
    for (const s of scores) {
      expect(s.fdCls).toBeGreaterThan(0);
      const r = s.settings!.routing;
      expect(s.expertsPerSample).toBe(r.kind === 'full' ? 4 : r.k);
      if (s.settings!.conditional)
        expect(s.classAccuracy! >= 0 && s.classAccuracy! <= 1).toBe(true);
      else expect(s.classAccuracy).toBeNull();
    }
    // Guidance changes the samples; no guidance (scale 1) is not the base's scale 3.
    const fd = (sweep: string, guidance: number) =>
      scores.find((s) => s.sweep === sweep && s.settings!.guidance === guidance)!.fdCls;
    expect(fd('guidance', 1)).not.toBe(fd('base', 3));
    const summary = lines.find((l) => l.kind === 'summary')!;
    expect(summary.base).toBe(scores[0]!.config);
    expect(summary.configs![summary.base!]!.overBase.mean).toBe(1);
    expect(summary.configs![summary.base!]!.betterOnSeeds).toBe(0);
    const meta = await sharp(path.join(dir, 'a.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1000, 70 + 150 * 13]);

    const strip = (ls: Line[]) =>
      ls.filter((l) => l.kind !== 'summary').map(({ seconds: _, ...rest }) => rest);
    expect(strip(again)).toEqual(strip(lines));
  }, 1_200_000);
});
