/**
 * DiT size presets (the end of DiT's `models.py`, scaled to pixel-space images of 28-64 px).
 *
 * Trainable parameters (pos_embed excluded), unconditional; a class-conditional model adds
 * (numClasses + 1) x hidden:
 *
 * | name  | patch | hidden | depth | heads | 28x28x1    | 32x32x3    | note                        |
 * |-------|-------|--------|-------|-------|------------|------------|-----------------------------|
 * | micro | 4     | 96     | 4     | 4     | 393,136    | 399,312    | the demo (MLP ratio 2)      |
 * | tiny  | 4     | 128    | 4     | 4     | 947,088    | 955,312    | tests, the benchmark        |
 * | small | 2     | 256    | 6     | 4     | 5,270,788  | 5,274,892  |                             |
 * | base  | 2     | 384    | 12    | 6     | 22,440,580 | 22,446,732 | DiT-S width and depth       |
 * | large | 2     | 768    | 12    | 12    | 89,412,868 | 89,425,164 | DiT-B width and depth       |
 *
 * Every preset but micro has MLP ratio 4. micro trains ~1.7x faster per image than tiny on the
 * wasm backend (measured with 16 tokens, batch 32), which on 2 CPU cores buys more steps than
 * tiny's extra width is worth.
 *
 * AdaLN-Single is why base and large are smaller than
 * DiT-S/2 (33M) and DiT-B/2 (130M): one shared t_block replaces a Linear(D, 6D) per block.
 *
 * Patch 2 on 32 px gives 256 tokens, as DiT/2 on its 32x32 latents; for 64 px images pass
 * `patchSize: 4` to keep 256 tokens.
 */
import type { DiTConfig } from './dit.js';

export interface DiTPreset {
  patchSize: number;
  hidden: number;
  depth: number;
  heads: number;
  mlpRatio: number;
}

export const DIT_PRESETS = {
  micro: { patchSize: 4, hidden: 96, depth: 4, heads: 4, mlpRatio: 2 },
  tiny: { patchSize: 4, hidden: 128, depth: 4, heads: 4, mlpRatio: 4 },
  small: { patchSize: 2, hidden: 256, depth: 6, heads: 4, mlpRatio: 4 },
  base: { patchSize: 2, hidden: 384, depth: 12, heads: 6, mlpRatio: 4 },
  large: { patchSize: 2, hidden: 768, depth: 12, heads: 12, mlpRatio: 4 },
} as const satisfies Record<string, DiTPreset>;

export type DiTPresetName = keyof typeof DIT_PRESETS;

export const DIT_PRESET_NAMES = Object.keys(DIT_PRESETS) as DiTPresetName[];

export interface PresetData {
  imageSize: number;
  channels: number;
  /** 0 = unconditional. */
  numClasses: number;
  /** Overrides the preset's patch size (e.g. 4 for 64 px images). */
  patchSize?: number;
}

/**
 * The full config of a named preset for a dataset.
 * @throws on an unknown name, listing the valid ones
 */
export function ditConfigFromPreset(name: string, data: PresetData): DiTConfig {
  if (!Object.hasOwn(DIT_PRESETS, name)) {
    throw new Error(`unknown DiT preset "${name}"; valid: ${DIT_PRESET_NAMES.join(', ')}`);
  }
  const preset: DiTPreset = DIT_PRESETS[name as DiTPresetName];
  return {
    imageSize: data.imageSize,
    channels: data.channels,
    patchSize: data.patchSize ?? preset.patchSize,
    hidden: preset.hidden,
    depth: preset.depth,
    heads: preset.heads,
    mlpRatio: preset.mlpRatio,
    numClasses: data.numClasses,
    learnSigma: false,
  };
}
