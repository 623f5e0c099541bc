/**
 * `worker gpu-check` as a real process, here on the software adapter (llvmpipe through Dawn's
 * OpenGL ES backend) and wasm, with a small budget and small images: every stdout line is a JSON
 * record, each backend and each (backend, preset) has its record, the summary adds up, and the
 * budget holds.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { forwardFlopsPerImage } from '../src/gpu-check.js';
import { WORKER_BIN } from './harness.js';

type Rec = Record<string, unknown> & { type: string };

function gpuCheck(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string; wallS: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [WORKER_BIN, 'gpu-check', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve) =>
    child.on('close', (code) =>
      resolve({ code, stdout, stderr, wallS: (Date.now() - started) / 1000 }),
    ),
  );
}

const BUDGET_S = 30;

/** Equal but for the records' rounding (0.1 ms, 0.01 images/s). */
function expectNear(actual: number, expected: number): void {
  expect(Math.abs(actual - expected) / expected).toBeLessThanOrEqual(0.01);
}

describe('worker gpu-check', () => {
  it('measures webgpu (software adapter) and wasm in JSON lines within its budget', async () => {
    const run = await gpuCheck([
      '--backends',
      'webgpu,wasm,tensorflow-gpu',
      '--presets',
      'small,micro',
      '--budget-s',
      String(BUDGET_S),
      '--image-size',
      '8',
      '--channels',
      '1',
      '--batch',
      '8',
    ]);
    expect(run.code, run.stderr).toBe(0);
    console.info(run.stdout);
    // Every line of stdout is one JSON record; progress and Dawn's warnings are on stderr.
    const lines = run.stdout.trim().split('\n');
    const records = lines.map((l) => JSON.parse(l) as Rec);
    expect(run.stderr).toMatch(/gpu-check: webgpu micro/);

    const [start] = records;
    expect(start).toMatchObject({
      type: 'start',
      budgetS: BUDGET_S,
      backends: ['webgpu', 'wasm', 'tensorflow-gpu'],
      presets: ['micro', 'small'],
      batch: 8,
      imageSize: 8,
      channels: 1,
      sampleSteps: 16,
    });

    const backends = records.filter((r) => r.type === 'backend');
    expect(backends.map((r) => r.backend)).toEqual(['webgpu', 'wasm', 'tensorflow-gpu']);
    const webgpu = backends[0]!;
    expect(webgpu).toMatchObject({
      loaded: true,
      tfBackend: 'webgpu',
      adapter: { dawnBackend: 'opengles', software: true, featureLevel: 'compatibility' },
    });
    expect((webgpu.adapter as { name: string }).name).toMatch(/llvmpipe/);
    const limits = (webgpu.adapter as { limits: Record<string, number> }).limits;
    expect(limits.maxBufferSize).toBeGreaterThan(0);
    expect(limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(backends[1]).toMatchObject({ loaded: true, tfBackend: 'wasm' });
    // Not installed here: said why, and how to fix it.
    expect(backends[2]).toMatchObject({ loaded: false });
    expect(backends[2]!.reason).toMatch(
      /^tensorflow-gpu requested but @tensorflow\/tfjs-node-gpu is unavailable \(not installed\): install it with/,
    );

    // Exactly one train and one sample record per (backend, preset).
    for (const type of ['train', 'sample']) {
      const keys = records.filter((r) => r.type === type).map((r) => `${r.backend}/${r.preset}`);
      expect(keys.sort(), type).toEqual(
        ['webgpu', 'wasm', 'tensorflow-gpu'].flatMap((b) => [`${b}/micro`, `${b}/small`]).sort(),
      );
    }
    const find = (type: string, backend: string, preset: string) =>
      records.find((r) => r.type === type && r.backend === backend && r.preset === preset)!;
    for (const backend of ['webgpu', 'wasm']) {
      const t = find('train', backend, 'micro');
      expect(t, JSON.stringify(t)).toMatchObject({ status: 'ok', batch: 8, tokens: 4 });
      expect(t.timedSteps as number).toBeGreaterThanOrEqual(1);
      expect(t.msPerStep as number).toBeGreaterThan(0);
      expect(t.msPerStepMin as number).toBeLessThanOrEqual(t.msPerStep as number);
      expect(t.msPerStepMax as number).toBeGreaterThanOrEqual(t.msPerStep as number);
      expectNear(t.imagesPerSec as number, (8 * 1000) / (t.msPerStep as number));
      expect(t.rssPeakMb as number).toBeGreaterThan(0);
      expect(t.tensorMb as number).toBeGreaterThan(0);
      // webgpu reports the GPU buffers it holds; wasm has none.
      if (backend === 'webgpu') expect(t.gpuAllocatedMb as number).toBeGreaterThan(0);
      else expect(t.gpuAllocatedMb).toBeNull();
      const s = find('sample', backend, 'micro');
      // A sample record is measured, or skipped for want of time: never missing.
      expect(['ok', 'skipped']).toContain(s.status);
      if (s.status === 'ok') {
        expect(s).toMatchObject({
          sampler: 'euler',
          objective: 'fm',
          read: 'await data()',
          sampleSteps: 16,
        });
        expectNear(s.imagesPerSec as number, (8 * 1000) / ((s.msPerEvaluation as number) * 16));
      }
    }
    for (const r of records.filter((r) => r.backend === 'tensorflow-gpu' && r.preset))
      expect(r).toMatchObject({ status: 'skipped', reason: 'backend not loaded' });
    // small: measured, or skipped with the estimate that did not fit, or stopped at the deadline.
    for (const backend of ['webgpu', 'wasm']) {
      const t = find('train', backend, 'small');
      expect(['ok', 'skipped', 'stopped'], JSON.stringify(t)).toContain(t.status);
      if (t.status === 'skipped') expect(t.reason).toBe('budget');
    }

    const summary = records.at(-1)!;
    expect(summary.type).toBe('summary');
    expect(summary.budgetS).toBe(BUDGET_S);
    expect(summary.withinBudget).toBe(true);
    expect(summary.wallS as number).toBeLessThanOrEqual(BUDGET_S);
    // The process as a whole: the budget, plus a generous margin for starting and exiting.
    expect(run.wallS).toBeLessThanOrEqual(BUDGET_S + 15);
    const wasmMicro = find('train', 'wasm', 'micro').msPerStep as number;
    const webgpuMicro = find('train', 'webgpu', 'micro').msPerStep as number;
    expect(summary.msPerStep).toMatchObject({ micro: { webgpu: webgpuMicro, wasm: wasmMicro } });
    expect(
      (summary.speedupOverWasm as Record<string, Record<string, number>>).micro!.webgpu,
    ).toBeCloseTo(wasmMicro / webgpuMicro, 1);
    const target = summary.target as Record<string, unknown>;
    expect(target).toMatchObject({
      preset: 'small',
      minSpeedupOverWasm: 10,
      note: 'webgpu ran on a software adapter (a CPU rasteriser): the target is for a GPU',
    });
    const small = (summary.speedupOverWasm as Record<string, Record<string, number>>).small;
    if (small?.webgpu === undefined) {
      expect(target.met).toBeNull();
      expect(target.reason).toMatch(/^no GPU backend and wasm both measured at small/);
    } else expect(target.met).toBe(small.webgpu >= 10);
  }, 60_000);

  it('stops a measurement still running at the deadline and says so', async () => {
    // base on 32x32x3 images, batch 32, on a software rasteriser: one step takes far longer than
    // the 8 s budget (5 s once the reserve for the summary is kept back).
    const run = await gpuCheck(['--backends', 'webgpu', '--presets', 'base', '--budget-s', '8']);
    expect(run.code, run.stderr).toBe(0);
    const records = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Rec);
    const backend = records.find((r) => r.type === 'backend')!;
    const train = records.find((r) => r.type === 'train')!;
    if (backend.loaded === true) {
      expect(train).toMatchObject({
        backend: 'webgpu',
        preset: 'base',
        status: 'stopped',
        reason: 'budget: stopped at the deadline',
      });
      expect(records.find((r) => r.type === 'sample')).toMatchObject({ status: 'stopped' });
    } else expect(backend.reason).toMatch(/^budget/);
    const summary = records.at(-1)!;
    expect(summary).toMatchObject({ type: 'summary', withinBudget: true, msPerStep: {} });
    expect(run.wallS).toBeLessThanOrEqual(8 + 15);
  });

  it('refuses an unknown backend or preset, naming the valid ones', async () => {
    const bad = await gpuCheck(['--backends', 'webgpu,vulkan']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(
      /--backends: unknown "vulkan"; valid: tensorflow-gpu, webgpu, tensorflow, wasm, cpu/,
    );
    const preset = await gpuCheck(['--presets', 'huge']);
    expect(preset.code).toBe(1);
    expect(preset.stderr).toMatch(
      /--presets: unknown "huge"; valid: micro, tiny, small, base, large/,
    );
  });

  it('orders the presets by FLOPs: micro < tiny < small < base', () => {
    const f = (p: 'micro' | 'tiny' | 'small' | 'base') => forwardFlopsPerImage(p, 32, 3);
    expect(f('micro')).toBeLessThan(f('tiny'));
    expect(f('tiny')).toBeLessThan(f('small'));
    expect(f('small')).toBeLessThan(f('base'));
    // small at 32x32x3: 256 tokens, ~2.8 GFLOP per image forward.
    expect(f('small') / 1e9).toBeCloseTo(2.8, 0);
  });
});
