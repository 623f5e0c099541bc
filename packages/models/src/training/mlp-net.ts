/**
 * Small time-conditioned MLPs for low-dimensional data (2-D mixtures in tests, feature vectors):
 * an expert network `(x_t [B, D], tau [B]) -> [B, D]` (epsilon or velocity) and a classifier
 * variant `(x_t, tau) -> logits [B, K]` for a toy router (docs/method.md section 5).
 *
 * Reads like the DiT (nn/dit.ts): the time embedder is DiT's (sinusoidal features of the float
 * timestep tau in [0, 999], then Linear -> SiLU -> Linear), added to a linear projection of x;
 * SiLU hidden layers; a zero-initialised output projection. The expert's output projection is
 * named `final_layer.linear.*` like the DiT's, so `convertDdpmToFm` re-initialises it (docs/method.md
 * section 7); the classifier's head is `head.*` like the RouterNet's and starts at the uniform
 * distribution.
 *
 * Parameters live in a `Map<string, tf.Variable>` with dotted names; weights are stored
 * `[in, out]` (PyTorch's `nn.Linear.weight` transposed), as everywhere in this package.
 */
import { ConfigError, deriveSeed } from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';
import { linear, timestepEmbedding } from '../nn/index.js';

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/** Serialisable MLP config (stored in checkpoints); {@link MlpNet.config} has every key. */
export interface MlpConfig {
  /** Data dimension D. */
  dim: number;
  /** Hidden width H. */
  hidden: number;
  /** Number of H -> H hidden layers after the input layer; 0 allowed. */
  depth: number;
  /** Width of the sinusoidal tau features; even. Default {@link MLP_FREQUENCY_DIM}. */
  frequencyDim?: number;
}

/** Config of the classifier variant: an {@link MlpConfig} plus the number of clusters K. */
export interface MlpClassifierConfig extends MlpConfig {
  /** K >= 2. */
  numClusters: number;
}

/** Default width of the sinusoidal timestep features. */
export const MLP_FREQUENCY_DIM = 64;

const MLP_KEYS = ['dim', 'hidden', 'depth', 'frequencyDim'] as const;
const CLASSIFIER_KEYS = [...MLP_KEYS, 'numClusters'] as const;

function assertKnownKeys(config: object, valid: readonly string[], what: string): void {
  for (const key of Object.keys(config)) {
    if (!valid.includes(key)) {
      throw new ConfigError(`unknown ${what} key "${key}"; valid: ${valid.join(', ')}`);
    }
  }
}

function assertInteger(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${what} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** Checks an {@link MlpConfig} (unknown keys throw, listing the valid ones) and fills defaults. */
export function resolveMlpConfig(config: MlpConfig): Required<MlpConfig> {
  assertKnownKeys(config, MLP_KEYS, 'MLP config');
  return resolveTrunk(config);
}

/** Checks an {@link MlpClassifierConfig} and fills defaults. */
export function resolveMlpClassifierConfig(
  config: MlpClassifierConfig,
): Required<MlpClassifierConfig> {
  assertKnownKeys(config, CLASSIFIER_KEYS, 'MLP classifier config');
  const numClusters = assertInteger(config.numClusters, 2, 1 << 16, 'MLP classifier numClusters');
  return { ...resolveTrunk(config), numClusters };
}

function resolveTrunk(config: MlpConfig): Required<MlpConfig> {
  const dim = assertInteger(config.dim, 1, 1 << 20, 'MLP dim');
  const hidden = assertInteger(config.hidden, 1, 1 << 16, 'MLP hidden');
  const depth = assertInteger(config.depth, 0, 1024, 'MLP depth');
  const frequencyDim = assertInteger(
    config.frequencyDim ?? MLP_FREQUENCY_DIM,
    2,
    1 << 14,
    'MLP frequencyDim',
  );
  if (frequencyDim % 2 !== 0) {
    throw new ConfigError(`MLP frequencyDim must be even, got ${frequencyDim}`);
  }
  return { dim, hidden, depth, frequencyDim };
}

/** Parameter shapes of the trunk shared by both variants, in forward order. */
function trunkShapes(c: Required<MlpConfig>): Record<string, number[]> {
  const H = c.hidden;
  const shapes: Record<string, number[]> = {
    't_embedder.mlp.0.weight': [c.frequencyDim, H],
    't_embedder.mlp.0.bias': [H],
    't_embedder.mlp.2.weight': [H, H],
    't_embedder.mlp.2.bias': [H],
    'input_proj.weight': [c.dim, H],
    'input_proj.bias': [H],
  };
  for (let i = 0; i < c.depth; i++) {
    shapes[`blocks.${i}.linear.weight`] = [H, H];
    shapes[`blocks.${i}.linear.bias`] = [H];
  }
  return shapes;
}

/** All {@link MlpNet} parameter shapes. */
export function mlpParamShapes(config: MlpConfig): Record<string, number[]> {
  const c = resolveMlpConfig(config);
  return {
    ...trunkShapes(c),
    'final_layer.linear.weight': [c.hidden, c.dim],
    'final_layer.linear.bias': [c.dim],
  };
}

/** All {@link MlpClassifier} parameter shapes. */
export function mlpClassifierParamShapes(config: MlpClassifierConfig): Record<string, number[]> {
  const c = resolveMlpClassifierConfig(config);
  return {
    ...trunkShapes(c),
    'head.weight': [c.hidden, c.numClusters],
    'head.bias': [c.numClusters],
  };
}

// ---------------------------------------------------------------------------------------------
// Initialisation (all of it here)
// ---------------------------------------------------------------------------------------------

/** A 31-bit stream number for a parameter name (FNV-1a), so each parameter has its own draw. */
function nameStream(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 1;
}

/**
 * DiT's recipe: output layers (`final_layer.linear.*`, `head.*`) and biases zero; the time
 * embedder's weights normal(0.02); other weights xavier-uniform over `[fanIn, fanOut]`. Each
 * parameter is drawn from its own seeded stream (tfjs's seeded random ops run in JS, so the
 * values do not depend on the backend nor on which other parameters exist).
 */
function initialValue(name: string, shape: number[], seed: number): tf.Tensor {
  const zero = name.startsWith('final_layer.linear.') || name.startsWith('head.');
  if (zero || name.endsWith('.bias')) return tf.zeros(shape);
  const s = deriveSeed(seed, nameStream(name));
  if (name.startsWith('t_embedder.')) return tf.randomNormal(shape, 0, 0.02, 'float32', s);
  const [fanIn, fanOut] = shape as [number, number];
  const a = Math.sqrt(6 / (fanIn + fanOut));
  return tf.randomUniform(shape, -a, a, 'float32', s);
}

function createParams(shapes: Record<string, number[]>, seed: number): Map<string, tf.Variable> {
  if (!Number.isSafeInteger(seed)) throw new ConfigError(`seed must be an integer, got ${seed}`);
  const params = new Map<string, tf.Variable>();
  for (const [name, shape] of Object.entries(shapes)) {
    const value = initialValue(name, shape, seed);
    params.set(name, tf.variable(value, true));
    value.dispose();
  }
  return params;
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

function param(params: Map<string, tf.Variable>, name: string): tf.Variable {
  const v = params.get(name);
  if (!v) throw new Error(`missing parameter "${name}"`);
  return v;
}

/** The shared trunk: `[B, D]`, `[B]` -> hidden features `[B, H]`. */
function trunk(
  kind: string,
  c: Required<MlpConfig>,
  params: Map<string, tf.Variable>,
  x: tf.Tensor,
  tau: tf.Tensor,
): tf.Tensor {
  if (x.rank !== 2 || x.shape[1] !== c.dim || x.dtype !== 'float32') {
    throw new Error(`${kind}: x must be float32 [B, ${c.dim}], got ${x.dtype} [${x.shape}]`);
  }
  const B = x.shape[0] as number;
  if (tau.rank !== 1 || tau.shape[0] !== B || tau.dtype !== 'float32') {
    throw new Error(`${kind}: tau must be float32 [${B}], got ${tau.dtype} [${tau.shape}]`);
  }
  const p = (name: string) => param(params, name);
  const f = timestepEmbedding(tau, c.frequencyDim); //                               [B, F]
  const t0 = silu(linear(f, p('t_embedder.mlp.0.weight'), p('t_embedder.mlp.0.bias'))); // [B, H]
  const cond = linear(t0, p('t_embedder.mlp.2.weight'), p('t_embedder.mlp.2.bias')); //   [B, H]
  const xin = linear(x, p('input_proj.weight'), p('input_proj.bias')); //            [B, H]
  let h = silu(tf.add(xin, cond)); //                                                [B, H]
  for (let i = 0; i < c.depth; i++) {
    h = silu(tf.add(linear(h, p(`blocks.${i}.linear.weight`), p(`blocks.${i}.linear.bias`)), cond)); // [B, H]
  }
  return h;
}

function disposeAll(params: Map<string, tf.Variable>): void {
  for (const v of params.values()) v.dispose();
  params.clear();
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/** Time-conditioned MLP expert: predicts epsilon (DDPM) or a velocity (FM) for vectors. */
export class MlpNet {
  /** The config with every default filled in (serialisable). */
  readonly config: Required<MlpConfig>;
  readonly params: Map<string, tf.Variable>;
  readonly seed: number;

  constructor(config: MlpConfig, seed = 0) {
    this.config = resolveMlpConfig(config);
    this.seed = seed;
    this.params = createParams(mlpParamShapes(this.config), seed);
  }

  /**
   * @param x `[B, D]` float32 (noisy sample) @param tau `[B]` float32 in [0, 999]
   * @returns `[B, D]`
   */
  apply(x: tf.Tensor, tau: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const h = trunk('MlpNet', this.config, this.params, x, tau); //                 [B, H]
      const p = (name: string) => param(this.params, name);
      return linear(h, p('final_layer.linear.weight'), p('final_layer.linear.bias')) as tf.Tensor2D; // [B, D]
    });
  }

  paramShapes(): Record<string, number[]> {
    return mlpParamShapes(this.config);
  }

  dispose(): void {
    disposeAll(this.params);
  }
}

/** Time-conditioned MLP classifier: logits over K clusters for a noisy vector (a toy router). */
export class MlpClassifier {
  readonly config: Required<MlpClassifierConfig>;
  readonly params: Map<string, tf.Variable>;
  readonly seed: number;

  constructor(config: MlpClassifierConfig, seed = 0) {
    this.config = resolveMlpClassifierConfig(config);
    this.seed = seed;
    this.params = createParams(mlpClassifierParamShapes(this.config), seed);
  }

  /**
   * @param x `[B, D]` float32 (x_t on the FM path) @param tau `[B]` float32, 999 t
   * @returns logits `[B, K]`
   */
  apply(x: tf.Tensor, tau: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const h = trunk('MlpClassifier', this.config, this.params, x, tau); //          [B, H]
      const p = (name: string) => param(this.params, name);
      return linear(h, p('head.weight'), p('head.bias')) as tf.Tensor2D; //            [B, K]
    });
  }

  paramShapes(): Record<string, number[]> {
    return mlpClassifierParamShapes(this.config);
  }

  dispose(): void {
    disposeAll(this.params);
  }
}
