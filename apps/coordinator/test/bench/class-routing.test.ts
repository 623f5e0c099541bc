/**
 * A smoke run of an experiment on a tiny budget (issue 14: the full experiments are commands whose
 * outputs docs cite; CI runs one small): bench/class-routing.mjs as a real process, 2 router steps
 * on 60 held-out images. Its JSON lines name every way of routing for the seed, each with a
 * cross-entropy and an accuracy per noise bin; the summary and the PNG figure are written; the
 * same seed gives the same numbers; and the figure can be drawn again from the JSON lines alone.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBench } from './run-bench.js';

const METHODS = [
  'product rule',
  'dropout, class',
  'paired, class',
  'unconditional',
  'dropout, null class',
  'paired, null class',
];

interface Line {
  bench: string;
  seed?: number;
  method?: string;
  meanNll?: number;
  nll?: number[];
  accuracy?: number[];
  methods?: Record<string, { meanNll: { mean: number } }>;
}

async function bench(env: Record<string, string>): Promise<Line[]> {
  return runBench<Line>('class-routing.mjs', env, 120_000);
}

describe('bench/class-routing.mjs on a tiny budget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'class-routing-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('writes a record per way of routing, a summary and a figure; the same seed, the same numbers', async () => {
    const env = (figure: string) => ({
      ROUTING_STEPS: '2',
      ROUTING_SEEDS: '3',
      ROUTING_HELD: '60',
      ROUTING_REPEATS: '1',
      ROUTING_FIGURE: path.join(dir, figure),
    });
    const lines = await bench(env('a.png'));
    const records = lines.filter((l) => l.bench === 'class-routing');
    expect(records.map((r) => r.method)).toEqual(METHODS);
    for (const r of records) {
      expect(r.seed).toBe(3);
      expect(r.nll).toHaveLength(10);
      expect(r.accuracy).toHaveLength(10);
      for (const v of r.nll!) expect(v).toBeGreaterThan(0);
      for (const a of r.accuracy!) expect(a >= 0 && a <= 1).toBe(true);
    }
    const summary = lines.find((l) => l.bench === 'class-routing.summary')!;
    expect(Object.keys(summary.methods!)).toEqual(METHODS);
    const meta = await sharp(path.join(dir, 'a.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 760, 420]);

    const again = await bench(env('b.png'));
    const strip = (ls: Line[]) => ls.filter((l) => l.bench === 'class-routing');
    expect(strip(again)).toEqual(strip(lines));

    // The figure again from the JSON lines, without measuring.
    const jsonl = path.join(dir, 'lines.jsonl');
    await writeFile(jsonl, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const redrawn = await bench({
      ROUTING_SUMMARY: jsonl,
      ROUTING_FIGURE: path.join(dir, 'c.png'),
    });
    expect(redrawn).toEqual([]);
    expect((await sharp(path.join(dir, 'c.png')).metadata()).format).toBe('png');
  }, 240_000);
});
