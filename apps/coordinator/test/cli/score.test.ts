/**
 * The `score` command as a real process (dist/score-bin.js) on a manifest read from a file: an
 * untrained two-expert 16x16 ensemble over the ten digit classes, scored against the built-in
 * MNIST held-out split with the shipped 16x16 classifier. Untrained experts draw noise, so the
 * scores must be far from the real-train reference; the same seed gives the same scores.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { initBackend } from '@archipelago/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricDataset } from '../../src/ensembles/score-ensemble.js';
import { loadOrCreateSigningKey, type SigningKey } from '../../src/ensembles/signing-key.js';
import { buildTestEnsemble } from '../ensembles/test-ensemble.js';

const BIN = path.resolve(import.meta.dirname, '../../dist/score-bin.js');
const execFileP = promisify(execFile);
const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

let dir: string;
let key: SigningKey;
let manifestFile: string;

async function score(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [BIN, ...args], { timeout: 120_000 });
    return { code: 0, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? '' };
  }
}

beforeAll(async () => {
  await initBackend();
  dir = await mkdtemp(path.join(tmpdir(), 'score-cli-'));
  key = loadOrCreateSigningKey(path.join(dir, 'key'));
  const ens = await buildTestEnsemble(key, undefined, {
    imageSize: 16,
    datasetName: 'MNIST digits',
    classNames: DIGITS,
  });
  await mkdir(path.join(dir, 'ensemble', 'checkpoints'), { recursive: true });
  manifestFile = path.join(dir, 'ensemble', 'manifest.json');
  await writeFile(manifestFile, ens.text);
  for (const [uri, bytes] of ens.files) await writeFile(path.join(dir, 'ensemble', uri), bytes);
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('score --manifest', () => {
  it('writes score.json and score.png, deterministic for a seed', async () => {
    const run = async (out: string) => {
      const r = await score([
        '--manifest',
        manifestFile,
        '--public-key',
        key.publicKeyRaw,
        '--samples',
        '100',
        '--seed',
        '3',
        '--steps',
        '2',
        '--out',
        out,
      ]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(await readFile(path.join(out, 'score.json'), 'utf8'));
    };
    const first = await run(path.join(dir, 'a'));
    expect(first.metric).toBe('FD-cls');
    expect(first.dataset).toEqual({ name: 'mnist', resolution: 16, heldOut: 2000 });
    expect(first.settings).toMatchObject({ samples: 100, seed: 3, steps: 2, classes: 'balanced' });
    expect(first.scores.counts).toEqual({ real: 2000, generated: 100 });
    // Noise from untrained experts against digits: far worse than real training images.
    expect(first.scores.fdCls).toBeGreaterThan(10 * first.reference.fdCls);
    expect(first.scores.precision).toBeLessThan(first.reference.precision / 2);
    expect(first.reference.precision).toBeGreaterThan(0.8);
    const png = await readFile(path.join(dir, 'a', 'score.png'));
    expect(png.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex'))).toBe(true);
    const again = await run(path.join(dir, 'b'));
    expect(again.scores).toEqual(first.scores);
  }, 120_000);

  it('refuses a manifest whose dataset has no shipped classifier (exit 2)', async () => {
    const r = await score([
      '--manifest',
      manifestFile,
      '--public-key',
      key.publicKeyRaw,
      '--dataset',
      'cifar',
    ]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^score: bad_request: no metric for dataset "cifar"/m);
  });
});

describe('metricDataset', () => {
  const dataset = (name: string, height = 16, width = 16) =>
    ({ dataset: { name, height, width } }) as Parameters<typeof metricDataset>[0];
  it("finds the built-in dataset by the manifest's dataset name, or as told", () => {
    expect(metricDataset(dataset('mnist'))).toEqual({ dataset: 'mnist', resolution: 16 });
    expect(metricDataset(dataset('MNIST digits', 28, 28))).toEqual({
      dataset: 'mnist',
      resolution: 28,
    });
    expect(metricDataset(dataset('my digits'), 'mnist')).toEqual({
      dataset: 'mnist',
      resolution: 16,
    });
    expect(() => metricDataset(dataset('faces'))).toThrow(/no metric for dataset "faces"/);
    expect(() => metricDataset(dataset('mnist', 16, 20))).toThrow(/square/);
  });
});
