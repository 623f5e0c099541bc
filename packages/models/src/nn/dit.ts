/**
 * DiT with AdaLN-Single conditioning (PixArt-alpha, arXiv 2310.00426, section 2.3), the expert
 * network of docs/method.md section 6. Reads top-down like DiT's `models.py`: config, embedders,
 * block, final layer, initialisation, model. Size presets are in `presets.ts`.
 *
 * Tensors are NHWC float32. Parameters live in a flat `Map<string, tf.Variable>` whose names
 * follow PyTorch state_dict names (a contract with the checkpoint code); linear weights are stored
 * `[in, out]` (PyTorch's `nn.Linear.weight` transposed). The patch embedding is a linear layer on
 * flattened `(row, col, channel)` patches: a PyTorch `Conv2d` weight `[D, C, p, p]` converts with
 * `permute(2, 3, 1, 0).reshape(p*p*C, D)`; the output projection emits `(row, col, channel)` per
 * patch, as DiT's `unpatchify`.
 *
 * Conditioning: `c = t_embedder(tau) (+ y_embedder(label))`, `[B, D]`; one shared
 * `t_block = SiLU -> Linear(D, 6D)` gives `t_block(c)`, and block i modulates with
 * `t_block(c) + E_i` (its `scale_shift_table`, `[6, D]`), split into
 * (shift_a, scale_a, gate_a, shift_m, scale_m, gate_m). The final layer uses its own `[2, D]`
 * table plus `c` itself, as PixArt's `T2IFinalLayer`.
 *
 * Initialisation (see {@link initialValue}): DiT's recipe, except how gates start at zero. PixArt
 * initialises `t_block` normal(0.02) and every table randn / sqrt(D), so its blocks are not the
 * identity at init. Here, as DiT's adaLN-Zero, every block IS the identity and the output is zero:
 * `t_block` is zero-initialised and the two gate rows of each `E_i` are zero (its shift and scale
 * rows are randn / sqrt(D) as PixArt; they are inert while the gates are zero), and the output
 * projection is zero. Consequence: at the first step only the output projection receives a
 * nonzero gradient; then the gates and `t_block`, then everything, after three steps.
 */
import * as tf from '@tensorflow/tfjs-core';
import { attention } from './attention.js';
import { linear, matMul } from './fast-matmul.js';
import { normal, rngFor, xavierUniform } from './init.js';
import { gatedResidual, geluTanh, modulatedLayerNorm, silu } from './layers.js';

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/** Serialisable DiT config; equal to the constructor's argument and stored in checkpoints. */
export interface DiTConfig {
  /** Square image side in pixels. */
  imageSize: number;
  /** Image channels (1 for MNIST). */
  channels: number;
  /** Patch side; must divide `imageSize`. Tokens: `(imageSize / patchSize)^2`. */
  patchSize: number;
  /** Width D; a multiple of 4 (2-D sin-cos position embedding) and of `heads`. */
  hidden: number;
  /** Number of transformer blocks. */
  depth: number;
  heads: number;
  /** MLP width is `round(hidden * mlpRatio)`. */
  mlpRatio: number;
  /** 0 = unconditional; otherwise labels 0..numClasses-1 plus the null class `numClasses`. */
  numClasses: number;
  /** Output 2C channels (eps and a variance interpolation) instead of C, as DiT's learn_sigma. */
  learnSigma: boolean;
}

/** Width of the sinusoidal timestep features (DiT's `frequency_embedding_size`). */
export const FREQUENCY_EMBEDDING_SIZE = 256;

const DIT_KEYS = [
  'imageSize',
  'channels',
  'patchSize',
  'hidden',
  'depth',
  'heads',
  'mlpRatio',
  'numClasses',
  'learnSigma',
] as const;

/** The transformer trunk shared by {@link DiTConfig} and the router's config. */
export interface BackboneConfig {
  imageSize: number;
  channels: number;
  patchSize: number;
  hidden: number;
  depth: number;
  heads: number;
  mlpRatio: number;
}

/**
 * Check a config object read from JSON or code: exactly the known keys, sensible values.
 * @throws listing unknown keys with the valid ones, or naming the bad value.
 */
export function checkConfig(kind: string, config: object, keys: readonly string[]): void {
  const unknown = Object.keys(config).filter((k) => !keys.includes(k));
  const missing = keys.filter((k) => !(k in config));
  if (unknown.length > 0 || missing.length > 0) {
    throw new Error(
      `${kind}: ${unknown.length ? `unknown key(s) ${unknown.join(', ')}` : ''}` +
        `${unknown.length && missing.length ? '; ' : ''}` +
        `${missing.length ? `missing key(s) ${missing.join(', ')}` : ''}; valid: ${keys.join(', ')}`,
    );
  }
  const c = config as BackboneConfig;
  const positiveInt = ['imageSize', 'channels', 'patchSize', 'hidden', 'depth', 'heads'] as const;
  for (const k of positiveInt) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) {
      throw new Error(`${kind}: ${k} must be a positive integer, got ${c[k]}`);
    }
  }
  if (c.imageSize % c.patchSize !== 0) {
    throw new Error(`${kind}: patchSize ${c.patchSize} must divide imageSize ${c.imageSize}`);
  }
  if (c.hidden % c.heads !== 0) {
    throw new Error(`${kind}: heads ${c.heads} must divide hidden ${c.hidden}`);
  }
  if (c.hidden % 4 !== 0) {
    throw new Error(`${kind}: hidden ${c.hidden} must be a multiple of 4 (2-D sin-cos embedding)`);
  }
  if (!(c.mlpRatio > 0) || !Number.isFinite(c.mlpRatio)) {
    throw new Error(`${kind}: mlpRatio must be a positive number, got ${c.mlpRatio}`);
  }
}

/** Validate a {@link DiTConfig}; throws on unknown keys (listing the valid ones) or bad values. */
export function validateDiTConfig(config: DiTConfig): void {
  checkConfig('DiTConfig', config, DIT_KEYS);
  if (!Number.isInteger(config.numClasses) || config.numClasses < 0) {
    throw new Error(`DiTConfig: numClasses must be an integer >= 0, got ${config.numClasses}`);
  }
  if (typeof config.learnSigma !== 'boolean') {
    throw new Error(`DiTConfig: learnSigma must be true or false, got ${config.learnSigma}`);
  }
}

/** Tokens per image. */
export function numTokens(c: BackboneConfig): number {
  return (c.imageSize / c.patchSize) ** 2;
}

/** Parameter shapes of the trunk: patch/position/time embedders, t_block and the blocks. */
export function backboneShapes(c: BackboneConfig, tokens: number): Record<string, number[]> {
  const { patchSize: p, channels: C, hidden: D } = c;
  return {
    'patch_embed.weight': [p * p * C, D],
    'patch_embed.bias': [D],
    pos_embed: [1, tokens, D],
    't_embedder.mlp.0.weight': [FREQUENCY_EMBEDDING_SIZE, D],
    't_embedder.mlp.0.bias': [D],
    't_embedder.mlp.2.weight': [D, D],
    't_embedder.mlp.2.bias': [D],
  };
}

/** Shapes of `t_block` and the blocks (after any label embedder, in state_dict order). */
export function blockShapes(c: BackboneConfig): Record<string, number[]> {
  const D = c.hidden;
  const mlp = Math.round(D * c.mlpRatio);
  const s: Record<string, number[]> = {
    't_block.1.weight': [D, 6 * D],
    't_block.1.bias': [6 * D],
  };
  for (let i = 0; i < c.depth; i++) {
    s[`blocks.${i}.scale_shift_table`] = [6, D];
    s[`blocks.${i}.attn.qkv.weight`] = [D, 3 * D];
    s[`blocks.${i}.attn.qkv.bias`] = [3 * D];
    s[`blocks.${i}.attn.proj.weight`] = [D, D];
    s[`blocks.${i}.attn.proj.bias`] = [D];
    s[`blocks.${i}.mlp.fc1.weight`] = [D, mlp];
    s[`blocks.${i}.mlp.fc1.bias`] = [mlp];
    s[`blocks.${i}.mlp.fc2.weight`] = [mlp, D];
    s[`blocks.${i}.mlp.fc2.bias`] = [D];
  }
  return s;
}

/** All DiT parameter shapes, in state_dict order, without allocating anything. */
export function ditParamShapes(c: DiTConfig): Record<string, number[]> {
  const { patchSize: p, channels: C, hidden: D } = c;
  const outC = c.learnSigma ? 2 * C : C;
  return {
    ...backboneShapes(c, numTokens(c)),
    ...(c.numClasses > 0 ? { 'y_embedder.embedding_table': [c.numClasses + 1, D] } : {}),
    ...blockShapes(c),
    'final_layer.scale_shift_table': [2, D],
    'final_layer.linear.weight': [D, p * p * outC],
    'final_layer.linear.bias': [p * p * outC],
  };
}

// ---------------------------------------------------------------------------------------------
// Embedders
// ---------------------------------------------------------------------------------------------

/** Looks a parameter up by its state_dict name. */
export type ParamLookup = (name: string) => tf.Tensor;

/**
 * Sinusoidal features of a float timestep tau in [0, 999] (fractional allowed), DiT's
 * `TimestepEmbedder.timestep_embedding`: `[cos(tau f_i), sin(tau f_i)]`,
 * `f_i = 10000^(-i / half)`, i < half = dim / 2.
 * @param tau `[B]` @returns `[B, dim]`
 */
export function timestepEmbedding(tau: tf.Tensor, dim = FREQUENCY_EMBEDDING_SIZE): tf.Tensor {
  const half = dim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp((-Math.log(10000) * i) / half);
  const args = tf.mul(tf.reshape(tau, [-1, 1]), tf.tensor2d(freqs, [1, half])); // [B, half]
  return tf.concat([tf.cos(args), tf.sin(args)], 1); //                             [B, dim]
}

/** `t_embedder`: sinusoidal features -> Linear(256, D) -> SiLU -> Linear(D, D). `[B]` -> `[B, D]`. */
export function embedTimestep(tau: tf.Tensor, p: ParamLookup): tf.Tensor {
  const f = timestepEmbedding(tau); //                                               [B, 256]
  const h = silu(linear(f, p('t_embedder.mlp.0.weight'), p('t_embedder.mlp.0.bias'))); // [B, D]
  return linear(h, p('t_embedder.mlp.2.weight'), p('t_embedder.mlp.2.bias')); //     [B, D]
}

/**
 * `y_embedder`: label lookup as one-hot x table (the gather gradient is missing on wasm).
 * @param labels `[B]` int32 in 0..numClasses (numClasses = the null class) @returns `[B, D]`
 */
export function embedLabels(labels: tf.Tensor, table: tf.Tensor): tf.Tensor {
  const rows = table.shape[0] as number;
  const oneHot = tf.cast(tf.oneHot(labels as tf.Tensor1D, rows), 'float32'); //    [B, K+1]
  return matMul(oneHot, table); //                                                 [B, D]
}

/**
 * DiT's fixed 2-D sin-cos position embedding (`get_2d_sincos_pos_embed`), token order row-major:
 * the first D/2 features encode the column, the last D/2 the row; each half is
 * `[sin(pos w_i), cos(pos w_i)]`, `w_i = 10000^(-i / (D/4))`.
 * @returns `[grid*grid * D]` values of the `[1, grid*grid, D]` embedding
 */
export function sincosPosEmbed2d(hidden: number, grid: number): Float32Array {
  const quarter = hidden / 4;
  const out = new Float32Array(grid * grid * hidden);
  for (let row = 0; row < grid; row++) {
    for (let col = 0; col < grid; col++) {
      const base = (row * grid + col) * hidden;
      for (let i = 0; i < quarter; i++) {
        const omega = 1 / 10000 ** (i / quarter);
        out[base + i] = Math.sin(col * omega);
        out[base + quarter + i] = Math.cos(col * omega);
        out[base + 2 * quarter + i] = Math.sin(row * omega);
        out[base + 3 * quarter + i] = Math.cos(row * omega);
      }
    }
  }
  return out;
}

/**
 * Cut an NHWC image into flattened patches, `(row, col, channel)` inside each patch, tokens in
 * row-major order. Only 4-D transposes (5-D and 6-D ones are ~100x slower on wasm).
 * @param x `[B, H, W, C]` @returns `[B, T, p*p*C]`
 */
export function patchify(x: tf.Tensor, p: number): tf.Tensor {
  const [B, H, W, C] = x.shape as [number, number, number, number];
  const rows = tf.reshape(x, [(B * H) / p, p, W / p, p * C]); //   [B*Hp, p, Wp, p*C]
  const patches = tf.transpose(rows, [0, 2, 1, 3]); //              [B*Hp, Wp, p, p*C]
  return tf.reshape(patches, [B, (H / p) * (W / p), p * p * C]); // [B, T, p*p*C]
}

/** Inverse of {@link patchify}: `[B, T, p*p*C]` -> `[B, H, W, C]` for a square image. */
export function unpatchify(x: tf.Tensor, p: number, channels: number): tf.Tensor {
  const [B, T] = x.shape as [number, number, number];
  const grid = Math.round(Math.sqrt(T));
  const rows = tf.reshape(x, [B * grid, grid, p, p * channels]); //   [B*Hp, Wp, p, p*C]
  const image = tf.transpose(rows, [0, 2, 1, 3]); //                   [B*Hp, p, Wp, p*C]
  return tf.reshape(image, [B, grid * p, grid * p, channels]); //      [B, H, W, C]
}

/** `patch_embed` + `pos_embed`: `[B, H, W, C]` -> `[B, T, D]`. */
export function embedPatches(x: tf.Tensor, p: ParamLookup, patchSize: number): tf.Tensor {
  const patches = patchify(x, patchSize); //                                        [B, T, p*p*C]
  const h = linear(patches, p('patch_embed.weight'), p('patch_embed.bias')); //      [B, T, D]
  return tf.add(h, p('pos_embed')); //                                               [B, T, D]
}

// ---------------------------------------------------------------------------------------------
// Block
// ---------------------------------------------------------------------------------------------

/**
 * Multi-head self-attention. The products run sequence-first (`[T, B*H, Dh]`, see
 * `attention.ts`); q, k and v come from column blocks of the `[D, 3D]` qkv weight (slicing the
 * small weight: slicing the `[B*T, 3D]` activation is several times dearer on wasm). The
 * 1/sqrt(Dh) scale is folded into q's weights. Head h uses features h*Dh..(h+1)*Dh of q, k, v,
 * as PyTorch's `qkv.reshape(B, T, 3, H, Dh)`.
 * @param x `[B, T, D]` @returns `[B, T, D]`
 */
export function selfAttention(x: tf.Tensor, p: ParamLookup, prefix: string, heads: number) {
  const [B, T, D] = x.shape as [number, number, number];
  const G = B * heads;
  const Dh = D / heads;
  const w = p(`${prefix}.qkv.weight`); //                                                [D, 3D]
  const b = p(`${prefix}.qkv.bias`); //                                                  [3D]
  const xt = tf.transpose(x, [1, 0, 2]); //                                               [T, B, D]
  const project = (i: number, scale = 1) => {
    let wi = tf.slice(w, [0, i * D], [D, D]); //                                          [D, D]
    let bi = tf.slice(b, [i * D], [D]); //                                                [D]
    if (scale !== 1) [wi, bi] = [tf.mul(wi, scale), tf.mul(bi, scale)];
    return tf.reshape(linear(xt, wi, bi), [T, G, Dh]); //                                 [T, B*H, Dh]
  };
  const o = attention(project(0, 1 / Math.sqrt(Dh)), project(1), project(2)); //         [T, B*H, Dh]
  const y = linear(tf.reshape(o, [T, B, D]), p(`${prefix}.proj.weight`), p(`${prefix}.proj.bias`)); // [T, B, D]
  return tf.transpose(y, [1, 0, 2]); //                                                   [B, T, D]
}

/** Transformer MLP: fc1 -> GELU(tanh) -> fc2. `[B, T, D]` -> `[B, T, D]`. */
export function mlp(x: tf.Tensor, p: ParamLookup, prefix: string): tf.Tensor {
  const h = geluTanh(linear(x, p(`${prefix}.fc1.weight`), p(`${prefix}.fc1.bias`))); // [B, T, mlp]
  return linear(h, p(`${prefix}.fc2.weight`), p(`${prefix}.fc2.bias`)); //              [B, T, D]
}

/**
 * The shared `t_block`: SiLU -> Linear(D, 6D), cut into its six chunks once per forward pass.
 * `[B, D]` -> 6 x `[B, 1, D]` (shift_a, scale_a, gate_a, shift_m, scale_m, gate_m before E_i).
 */
export function tBlock(c: tf.Tensor, p: ParamLookup): tf.Tensor[] {
  const [B, D] = c.shape as [number, number];
  const t0 = linear(silu(c), p('t_block.1.weight'), p('t_block.1.bias')); //            [B, 6D]
  return tf.split(tf.reshape(t0, [B, 6, D]), 6, 1); //                                   6 x [B, 1, D]
}

/**
 * One AdaLN-Single block (PixArt's `PixArtBlock` without cross-attention), modulating with
 * `t_block(c) + E_i`:
 * `x += gate_a * Attn(LN(x) (1 + scale_a) + shift_a)`; `x += gate_m * MLP(LN(x) (1 + scale_m) + shift_m)`.
 * @param x `[B, T, D]` @param tmod {@link tBlock}'s six `[B, 1, D]` chunks @returns `[B, T, D]`
 */
export function ditBlock(
  x: tf.Tensor,
  tmod: tf.Tensor[],
  p: ParamLookup,
  i: number,
  heads: number,
) {
  const pre = `blocks.${i}`;
  const rows = tf.unstack(p(`${pre}.scale_shift_table`)); //                                 6 x [D]
  const [shiftA, scaleA, gateA, shiftM, scaleM, gateM] = rows.map((r, j) => tf.add(tmod[j]!, r)); // 6 x [B, 1, D]
  const a = selfAttention(modulatedLayerNorm(x, shiftA!, scaleA!), p, `${pre}.attn`, heads); // [B, T, D]
  const x1 = gatedResidual(x, gateA!, a); //                                                 [B, T, D]
  const m = mlp(modulatedLayerNorm(x1, shiftM!, scaleM!), p, `${pre}.mlp`); //              [B, T, D]
  return gatedResidual(x1, gateM!, m); //                                                    [B, T, D]
}

// ---------------------------------------------------------------------------------------------
// Final layer
// ---------------------------------------------------------------------------------------------

/**
 * PixArt's `T2IFinalLayer`: `(shift, scale) = table + c`, LN, modulate, Linear(D, p*p*C_out).
 * @param x `[B, T, D]` @param c `[B, D]` @returns `[B, T, p*p*C_out]`
 */
export function finalLayer(x: tf.Tensor, c: tf.Tensor, p: ParamLookup): tf.Tensor {
  const [B, , D] = x.shape as [number, number, number];
  const c3 = tf.reshape(c, [B, 1, D]); //                                                [B, 1, D]
  const [shift, scale] = tf.unstack(p('final_layer.scale_shift_table')).map((r) => tf.add(c3, r)); // 2 x [B, 1, D]
  const h = modulatedLayerNorm(x, shift!, scale!); //                                    [B, T, D]
  return linear(h, p('final_layer.linear.weight'), p('final_layer.linear.bias')); //     [B, T, p*p*C]
}

// ---------------------------------------------------------------------------------------------
// Initialisation (the one place; the router uses it too)
// ---------------------------------------------------------------------------------------------

/**
 * Initial value of a parameter from its name (DiT's `initialize_weights`, gates as described in
 * the file header):
 * - biases: 0; `pos_embed`: fixed 2-D sin-cos (not trained);
 * - `t_embedder` weights, `y_embedder.embedding_table`, `cls_token`: normal(0.02);
 * - `t_block.1.weight`, `final_layer.linear.weight`, `head.weight`: 0;
 * - `blocks.i.scale_shift_table`: randn / sqrt(D), gate rows (2 and 5) 0;
 * - `final_layer.scale_shift_table`: randn / sqrt(D);
 * - every other weight (patch_embed, qkv, proj, fc1, fc2): xavier-uniform on `[in, out]`.
 *
 * Also the way to re-initialise one parameter, e.g. the output projection when a DDPM checkpoint
 * initialises a flow-matching expert (docs/method.md section 7).
 */
export function initialValue(name: string, shape: number[], seed: number): Float32Array {
  const size = shape.reduce((a, d) => a * d, 1);
  const rng = rngFor(seed, name);
  const D = shape[shape.length - 1] as number;
  if (name.endsWith('.bias')) return new Float32Array(size);
  if (name === 'pos_embed') return sincosPosEmbed2d(D, Math.round(Math.sqrt(shape[1] as number)));
  if (
    name.startsWith('t_embedder.') ||
    name === 'y_embedder.embedding_table' ||
    name === 'cls_token'
  ) {
    return normal(size, 0.02, rng);
  }
  if (
    name === 't_block.1.weight' ||
    name === 'final_layer.linear.weight' ||
    name === 'head.weight'
  ) {
    return new Float32Array(size);
  }
  if (name.endsWith('scale_shift_table')) {
    const table = normal(size, 1 / Math.sqrt(D), rng);
    if (name.startsWith('blocks.')) {
      table.fill(0, 2 * D, 3 * D); // gate_a
      table.fill(0, 5 * D, 6 * D); // gate_m
    }
    return table;
  }
  if (name.endsWith('.weight') && shape.length === 2) {
    return xavierUniform(shape[0] as number, shape[1] as number, rng);
  }
  throw new Error(`initialValue: no initialiser for parameter "${name}" [${shape}]`);
}

/** Allocate the variables; `pos_embed` is non-trainable. */
export function createParams(
  shapes: Record<string, number[]>,
  seed: number,
): Map<string, tf.Variable> {
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of Object.entries(shapes)) {
    const value = tf.tensor(initialValue(name, shape, seed), shape, 'float32');
    params.set(name, tf.variable(value, name !== 'pos_embed'));
    value.dispose();
  }
  return params;
}

/** A lookup that fails loudly on a missing name. */
export function lookup(params: Map<string, tf.Variable>): ParamLookup {
  return (name) => {
    const v = params.get(name);
    if (!v) throw new Error(`missing parameter "${name}"`);
    return v;
  };
}

/** Number of trainable scalars. */
export function countTrainable(params: Map<string, tf.Variable>): number {
  let n = 0;
  for (const v of params.values()) if (v.trainable) n += v.size;
  return n;
}

/** Checks the batch of an NHWC input against a config; returns B. */
export function checkImages(kind: string, x: tf.Tensor, c: BackboneConfig): number {
  const want = [c.imageSize, c.imageSize, c.channels];
  if (x.rank !== 4 || x.shape.slice(1).some((d, i) => d !== want[i])) {
    throw new Error(`${kind}: x must be [B, ${want.join(', ')}] (NHWC), got [${x.shape}]`);
  }
  if (x.dtype !== 'float32') throw new Error(`${kind}: x must be float32, got ${x.dtype}`);
  return x.shape[0] as number;
}

/** Checks `tau` `[B]` float32. */
export function checkTau(kind: string, tau: tf.Tensor, B: number): void {
  if (tau.rank !== 1 || tau.shape[0] !== B || tau.dtype !== 'float32') {
    throw new Error(`${kind}: tau must be float32 [${B}], got ${tau.dtype} [${tau.shape}]`);
  }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/** DiT with AdaLN-Single: predicts eps (or a velocity) from a noisy image and a timestep. */
export class DiT {
  /** A copy of the constructor's config (serialisable, stored in checkpoints). */
  readonly config: DiTConfig;
  /** Parameters by state_dict name; `pos_embed` is non-trainable. */
  readonly params: Map<string, tf.Variable>;
  readonly seed: number;

  constructor(config: DiTConfig, seed = 0) {
    validateDiTConfig(config);
    this.config = Object.fromEntries(DIT_KEYS.map((k) => [k, config[k]])) as unknown as DiTConfig;
    this.seed = seed;
    this.params = createParams(ditParamShapes(this.config), seed);
  }

  /** The label that means "no class" (classifier-free guidance); only when numClasses > 0. */
  get nullClass(): number {
    return this.config.numClasses;
  }

  /**
   * @param x `[B, H, W, C]` float32 (noisy image)
   * @param tau `[B]` float32 in [0, 999], fractional allowed
   * @param labels `[B]` int32 in 0..numClasses (numClasses = null class); omitted on a
   *   class-conditional model means the null class for every sample
   * @returns `[B, H, W, C]` (`2C` with learnSigma)
   */
  apply(x: tf.Tensor, tau: tf.Tensor, labels?: tf.Tensor): tf.Tensor4D {
    const c = this.config;
    const B = checkImages('DiT', x, c);
    checkTau('DiT', tau, B);
    if (labels && c.numClasses === 0)
      throw new Error('DiT: labels given to an unconditional model');
    if (labels && (labels.rank !== 1 || labels.shape[0] !== B || labels.dtype !== 'int32')) {
      throw new Error(`DiT: labels must be int32 [${B}], got ${labels.dtype} [${labels.shape}]`);
    }
    const p = lookup(this.params);
    return tf.tidy(() => {
      let h = embedPatches(x, p, c.patchSize); //                                          [B, T, D]
      let cond = embedTimestep(tau, p); //                                                 [B, D]
      if (c.numClasses > 0) {
        const y = labels ?? tf.fill([B], c.numClasses, 'int32'); //                         [B]
        cond = tf.add(cond, embedLabels(y, p('y_embedder.embedding_table'))); //           [B, D]
      }
      const tmod = tBlock(cond, p); //                                                     6 x [B, 1, D]
      for (let i = 0; i < c.depth; i++) h = ditBlock(h, tmod, p, i, c.heads); //           [B, T, D]
      const out = finalLayer(h, cond, p); //                                               [B, T, p*p*C]
      const outC = c.learnSigma ? 2 * c.channels : c.channels;
      return unpatchify(out, c.patchSize, outC) as tf.Tensor4D; //                         [B, H, W, C]
    });
  }

  /** Parameter shapes by name (including the non-trainable `pos_embed`). */
  paramShapes(): Record<string, number[]> {
    return ditParamShapes(this.config);
  }

  /** Trainable parameter count (excludes the fixed `pos_embed`). */
  countParams(): number {
    return countTrainable(this.params);
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}
