import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  currentBackend,
  initBackend,
  nativeThreadEnv,
} from '../src/backend.js';

const require = createRequire(import.meta.url);
const installed = (name: string) => {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
};

describe('initBackend', () => {
  it('auto picks the first backend that loads, reporting what it skipped', async () => {
    const info = await initBackend();
    const expected = installed('@tensorflow/tfjs-node') ? 'tensorflow' : 'wasm';
    expect(info.name).toBe(expected);
    expect(tf.getBackend()).toBe(info.tfBackend);
    expect(currentBackend()).toBe(info);
    if (expected === 'wasm')
      expect(info.skipped).toEqual([{ name: 'tensorflow', reason: 'not installed' }]);
    // The backend computes.
    const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
    expect(Array.from(await y.data())).toEqual([11]);
  });

  it('switches to an explicitly requested backend', async () => {
    const info = await initBackend({ backend: 'cpu' });
    expect(info).toMatchObject({ name: 'cpu', tfBackend: 'cpu', skipped: [] });
    expect(tf.getBackend()).toBe('cpu');
    await initBackend({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
  });

  it('rejects an unknown backend, listing the valid ones', async () => {
    await expect(initBackend({ backend: 'metal' as never })).rejects.toThrow(
      'unknown backend "metal"; valid: auto, tensorflow-gpu, webgpu, tensorflow, wasm, cpu',
    );
  });

  it('asking for a CUDA GPU needs the GPU package; without it the error says what to install and which CUDA', async () => {
    if (installed('@tensorflow/tfjs-node-gpu')) {
      expect((await initBackend({ backend: 'tensorflow-gpu', gpu: 0 })).name).toBe(
        'tensorflow-gpu',
      );
      return;
    }
    const err = await initBackend({ backend: 'tensorflow-gpu', gpu: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toMatch(
      /GPU 0 requested but @tensorflow\/tfjs-node-gpu is unavailable \(not installed\)/,
    );
    expect((err as Error).message).toMatch(/CUDA 11\.2 and cuDNN 8\.1/);
  });

  it('refuses --gpu with a CPU backend and a negative device', async () => {
    await expect(initBackend({ gpu: 1, backend: 'wasm' })).rejects.toThrow(
      '--gpu 1 needs the tensorflow-gpu or webgpu backend, not wasm',
    );
    await expect(initBackend({ gpu: -1 })).rejects.toThrow(
      '--gpu must be a device index >= 0, got -1',
    );
  });
});

describe('nativeThreadEnv', () => {
  it("caps libtensorflow's pools at the threads a replica may use, unless the user set them", () => {
    expect(nativeThreadEnv(undefined, {})).toEqual({});
    expect(nativeThreadEnv(3, {})).toEqual({
      TF_NUM_INTRAOP_THREADS: '3',
      TF_NUM_INTEROP_THREADS: '1',
    });
    expect(nativeThreadEnv(3, { TF_NUM_INTRAOP_THREADS: '8' })).toEqual({
      TF_NUM_INTEROP_THREADS: '1',
    });
  });
});
