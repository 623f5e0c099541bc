/**
 * Selecting webgpu: adapters, `--gpu N`, what auto does with a software adapter, and the errors.
 * Here (and in CI) the only adapter is Mesa's llvmpipe through Dawn's OpenGL ES backend; there is
 * no Vulkan loader, so Dawn's Vulkan backend offers none.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  currentBackend,
  describeBackend,
  initBackend,
} from '../../src/backend.js';
import { listWebGpuAdapters } from '../../src/dawn.js';

describe('webgpu on Dawn', () => {
  // First in the file: auto decides from a clean state.
  it('auto with preferGpu skips a software adapter (slower than wasm), saying why', async () => {
    const info = await initBackend({ preferGpu: true });
    expect(info.name).toBe('wasm');
    const webgpu = info.skipped.find((s) => s.name === 'webgpu');
    expect(webgpu?.reason).toMatch(
      /^only a software adapter, 0 "llvmpipe[^"]*" \(opengles, software\): slower than wasm \(pass --backend webgpu to use it anyway\)$/,
    );
    expect(info.skipped.map((s) => s.name)).toEqual(['tensorflow-gpu', 'webgpu', 'tensorflow']);
  });

  it('lists the adapters with their limits, and says why a Dawn backend has none', async () => {
    const { adapters, failures } = await listWebGpuAdapters(['vulkan', 'opengles']);
    expect(adapters).toHaveLength(1);
    const [a] = adapters;
    expect(a).toMatchObject({ index: 0, dawnBackend: 'opengles', software: true });
    expect(a!.name).toMatch(/^llvmpipe/);
    expect(a!.featureLevel).toBe('compatibility');
    expect(a!.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(2 ** 27);
    expect(failures).toEqual([
      {
        dawnBackend: 'vulkan',
        reason: expect.stringMatching(/^no adapter; install .*Vulkan loader/),
      },
    ]);
  });

  it('--backend webgpu takes any adapter, the best with no --gpu, and computes on it', async () => {
    const info = await initBackend({ backend: 'webgpu' });
    expect(info).toMatchObject({ name: 'webgpu', tfBackend: 'webgpu', skipped: [] });
    expect(info.warning).toBeUndefined();
    expect(info.adapter?.index).toBe(0);
    expect(currentBackend()).toBe(info);
    expect(describeBackend(info)).toMatch(
      /^webgpu on adapter 0 "llvmpipe[^"]*" \(Dawn opengles, compatibility, software: slower than wasm; .*Mesa.*; maxBufferSize \d+ MiB, maxStorageBufferBindingSize \d+ MiB, workgroup storage \d+ B, \d+ invocations per workgroup\)$/,
    );
    const y = tf.softmax(
      tf.matMul(
        tf.tensor2d([[1, 2]]),
        tf.tensor2d([
          [3, 1],
          [4, 0],
        ]),
      ),
    );
    const values = await y.data();
    expect(values[0]).toBeCloseTo(1 / (1 + Math.exp(-10)), 6);
    // Back to wasm and to webgpu again: the same adapter's registration is reused.
    await initBackend({ backend: 'wasm' });
    expect((await initBackend({ backend: 'webgpu', gpu: 0 })).adapter?.index).toBe(0);
    expect(tf.getBackend()).toBe('webgpu');
    await initBackend({ backend: 'wasm' });
  });

  it('--gpu N names an adapter: one that does not exist is an error listing those that do', async () => {
    const err = await initBackend({ backend: 'webgpu', gpu: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(
      /^GPU 3 requested but webgpu cannot use it \(no WebGPU adapter 3; adapters: 0 "llvmpipe[^"]*" \(opengles, software\)\)$/,
    );
  });

  it('--gpu N alone tries tensorflow-gpu then webgpu, and says why neither fits', async () => {
    const err = await initBackend({ gpu: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    const message = (err as Error).message;
    expect(message).toMatch(/^GPU 0 requested but no backend can use it: tensorflow-gpu: /);
    expect(message).toMatch(/CUDA 11\.2 and cuDNN 8\.1/);
    expect(message).toMatch(/webgpu: only a software adapter/);
  });

  it('a Dawn backend with no adapter: --backend webgpu falls back to wasm with the reasons', async () => {
    // Dawn's Vulkan backend finds no Vulkan loader on this machine: a real failure, not a mock.
    const info = await initBackend({ backend: 'webgpu', dawnBackends: ['vulkan'] });
    expect(info.name).toBe('wasm');
    expect(info.warning).toMatch(
      /^webgpu is unavailable \(no WebGPU adapter \(vulkan: no adapter; install .*Vulkan loader.*\)\): training on wasm instead$/,
    );
    expect(tf.getBackend()).toBe('wasm');
  });
});
