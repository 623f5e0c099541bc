/**
 * The worker on `--backend webgpu` (tfjs's WebGPU backend on Dawn; docs/gpu-backends.md), as real
 * processes against a real coordinator. Here, as in CI, the only adapter is Mesa's software
 * rasteriser (llvmpipe through Dawn's OpenGL ES backend): slow, so the lease is tiny.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, type Proc, startWorker } from './harness.js';

describe('a worker on webgpu', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  let datasetId: string;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-webgpu-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start();
    token = (await coord.token('volunteers')).token;
    datasetId = await coord.importMnist(1);
  });

  afterAll(async () => {
    for (const p of procs) p.kill();
    await coord?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('without any adapter falls back to wasm, saying why and what to install', async () => {
    // EGL with the X11 platform and no display: Dawn's OpenGL ES backend (the only one asked)
    // finds no adapter. A real failure of the graphics stack, not a mock.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ARCHIPELAGO_DAWN_BACKENDS: 'opengles',
      EGL_PLATFORM: 'x11',
    };
    delete env.DISPLAY;
    delete env.WAYLAND_DISPLAY;
    const w = startWorker('no-adapter', {
      coordinator: coord.url,
      token,
      workDir: path.join(dir, 'work-no-adapter'),
      extra: ['--backend', 'webgpu'],
      env,
    });
    procs.push(w);
    // No run yet: it connects, finds no work and exits 0 (--exit-when-idle).
    expect((await w.exit(60_000)).code, w.output).toBe(0);
    const warning = w.output.split('\n').find((l) => l.includes('warning: webgpu is unavailable'));
    expect(warning, w.output).toMatch(
      /warning: webgpu is unavailable \(no WebGPU adapter \(opengles: no adapter; install EGL and OpenGL ES \(Debian\/Ubuntu: `apt-get install libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri`\).*; EGL_PLATFORM is x11 here, which needs a display\)\): training on wasm instead$/,
    );
    expect(w.output).toMatch(/backend wasm \(skipped webgpu: no WebGPU adapter/);
    expect(w.output).toMatch(/connected to/);
  });

  it('trains a lease end to end on the software adapter and the coordinator publishes the run', async () => {
    const run = await coord.createRun({
      datasetId,
      experts: 1,
      objectives: 'fm:1',
      stepsPerExpert: 12,
      checkpointInterval: 6,
      batchSize: 8,
      model: 'micro',
    });
    const w = startWorker('webgpu', {
      coordinator: coord.url,
      token,
      objective: 'fm',
      workDir: path.join(dir, 'work-webgpu'),
      extra: ['--backend', 'webgpu'],
    });
    procs.push(w);
    expect((await w.exit(180_000)).code, w.output).toBe(0);
    // It says which adapter it trains on, with its driver and limits.
    expect(w.output).toMatch(
      /backend webgpu on adapter 0 "llvmpipe[^"]*" \(Dawn opengles, compatibility, software: slower than wasm; [^;]*Mesa[^;]*; maxBufferSize \d+ MiB, maxStorageBufferBindingSize \d+ MiB/,
    );
    const done = await coord.published(run.id);
    expect(done.experts[0]!.step).toBe(12);
  }, 300_000);
});
