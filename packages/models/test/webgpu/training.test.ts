/**
 * A short training run of the micro DiT on webgpu (Dawn; Mesa's software adapter in CI) follows
 * the same run on wasm: the expert trainer's whole step (noising, the DiT's forward and backward
 * passes, Adam, the EMA) and its resumable checkpoint, which read tensors only asynchronously.
 */
import type { ObjectiveConfig } from '@archipelago/diffusion';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { loadCheckpoint } from '../../src/checkpoint/index.js';
import { ditConfigFromPreset } from '../../src/nn/presets.js';
import { ExpertTrainer } from '../../src/training/index.js';

const STEPS = 6;
const BATCH = 8;
/** Losses agree to float32 summation order (measured: within 3e-7 relative after 6 steps). */
const LOSS_TOLERANCE = 1e-5;

/** 8x8 one-channel images in [-1, 1], deterministic in `seed` (no tf random). */
function images(seed: number): { data: Float32Array; shape: number[] } {
  const data = new Float32Array(BATCH * 64);
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = Math.tanh(3 * Math.sin(i / 7 + seed) + (s / 2 ** 32 - 0.5));
  }
  return { data, shape: [BATCH, 8, 8, 1] };
}

async function train(
  backend: 'wasm' | 'webgpu',
  objective: ObjectiveConfig,
): Promise<{ losses: number[]; params: Float32Array }> {
  const info = await initBackend({ backend });
  expect(info.name, info.warning).toBe(backend);
  const trainer = await ExpertTrainer.create({
    network: {
      kind: 'dit',
      config: ditConfigFromPreset('micro', { imageSize: 8, channels: 1, numClasses: 0 }),
    },
    objective,
    optimizer: { learningRate: 1e-3 },
    ema: { decay: 0.999 },
    seed: 7,
  });
  try {
    const losses: number[] = [];
    for (let i = 0; i < STEPS; i++) losses.push((await trainer.step(images(i + 1))).loss);
    const saved = await trainer.saveResumable();
    const { params } = loadCheckpoint(saved.checkpoint);
    // Every parameter of the checkpoint (the EMA weights), end to end.
    const all = Object.values(params).flatMap((p) => Array.from(p.data as Float32Array));
    return { losses, params: Float32Array.from(all) };
  } finally {
    await trainer.dispose();
  }
}

describe('the micro DiT trains on webgpu as on wasm', () => {
  it('refuses data-parallel threads on webgpu: one device trains', async () => {
    await initBackend({ backend: 'webgpu' });
    await expect(
      ExpertTrainer.create({
        network: {
          kind: 'dit',
          config: ditConfigFromPreset('micro', { imageSize: 8, channels: 1, numClasses: 0 }),
        },
        objective: { name: 'fm', timeSampling: { kind: 'uniform' } },
        optimizer: { learningRate: 1e-3 },
        seed: 1,
        threads: 2,
      }),
    ).rejects.toThrow('data-parallel threads run on CPU backends; on webgpu train with threads: 1');
    await initBackend({ backend: 'wasm' });
  });

  it.each([
    ['fm', { name: 'fm', timeSampling: { kind: 'logit-normal' } }],
    ['ddpm (v-prediction)', { name: 'ddpm', schedule: { kind: 'cosine' }, prediction: 'v' }],
  ] as [string, ObjectiveConfig][])(
    '%s: the same losses step by step',
    async (_, objective) => {
      const wasm = await train('wasm', objective);
      const webgpu = await train('webgpu', objective);
      await initBackend({ backend: 'wasm' });
      console.info(`losses wasm ${wasm.losses.join(', ')}; webgpu ${webgpu.losses.join(', ')}`);
      for (const [i, ref] of wasm.losses.entries()) {
        expect(Math.abs(webgpu.losses[i]! - ref) / ref).toBeLessThanOrEqual(LOSS_TOLERANCE);
      }
      // The run learns (not a constant loss) and the checkpoints agree too.
      expect(wasm.losses.at(-1)).not.toBe(wasm.losses[0]);
      let diff = 0;
      for (const [j, v] of wasm.params.entries())
        diff = Math.max(diff, Math.abs(webgpu.params[j]! - v));
      expect(diff).toBeLessThanOrEqual(1e-5);
    },
    120_000,
  );
});
