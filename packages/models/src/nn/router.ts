/**
 * The router of docs/method.md section 5: a small DiT-style classifier r(x_t, tau) -> logits over
 * the K data clusters, trained by cross-entropy on noised samples; softmax gives p(k | x_t, t).
 *
 * Same trunk as {@link DiT} (linear patch embedding, fixed sin-cos positions, time embedding,
 * AdaLN-Single blocks, same initialisation rules), with a learned CLS token prepended to the patch
 * tokens (it carries no position embedding: its learned value is its position), and at the end
 * LayerNorm (no affine) on the CLS token and a linear head. The head is zero-initialised, so the
 * router starts at the uniform distribution (loss log K).
 *
 * Class-conditional (`numClasses` > 0, docs/method.md §5): the router also sees the class, as the
 * DiT does, `c = t_embedder(tau) + y_embedder(label)`, with the null class `numClasses` for an
 * unconditional row; trained with label dropout it gives p(k | x_t, c) and, for the null class,
 * p(k | x_t), in one network.
 *
 * Parameter names: those of the DiT trunk (`patch_embed.*`, `pos_embed`, `t_embedder.*`,
 * `t_block.1.*`, `blocks.{i}.*`) plus `cls_token` `[1, 1, D]`, `head.weight` `[D, K]`,
 * `head.bias` `[K]`, and `y_embedder.embedding_table` `[numClasses + 1, D]` when conditional.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  backboneShapes,
  blockShapes,
  checkConfig,
  checkImages,
  checkTau,
  countTrainable,
  createParams,
  ditBlock,
  embedLabels,
  embedPatches,
  embedTimestep,
  lookup,
  numTokens,
  tBlock,
} from './dit.js';
import { linear } from './fast-matmul.js';
import { layerNorm } from './layers.js';

/** Serialisable router config; equal to the constructor's argument. */
export interface RouterConfig {
  imageSize: number;
  channels: number;
  patchSize: number;
  hidden: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /**
   * K, the number of clusters (experts); at least 1. With K = 1 (a monolith) the router's softmax
   * is the constant 1 whatever its weights: a trivial router that keeps the manifest format.
   */
  numClusters: number;
  /**
   * Classes the router is conditioned on (labels 0..numClasses-1 plus the null class
   * `numClasses`); absent or 0: an unconditional router p(k | x_t) (every router before the
   * option, whose checkpoints and manifests lack the key).
   */
  numClasses?: number;
}

/** Required keys; `numClasses` is optional (absent = 0). */
const ROUTER_KEYS = [
  'imageSize',
  'channels',
  'patchSize',
  'hidden',
  'depth',
  'heads',
  'mlpRatio',
  'numClusters',
] as const;

/** Validate a {@link RouterConfig}; throws on unknown keys (listing the valid ones) or bad values. */
export function validateRouterConfig(config: RouterConfig): void {
  const { numClasses, ...required } = config;
  checkConfig('RouterConfig', required, ROUTER_KEYS);
  if (!Number.isInteger(config.numClusters) || config.numClusters < 1) {
    throw new Error(`RouterConfig: numClusters must be an integer >= 1, got ${config.numClusters}`);
  }
  if (numClasses !== undefined && !(Number.isInteger(numClasses) && numClasses >= 0)) {
    throw new Error(`RouterConfig: numClasses must be an integer >= 0, got ${numClasses}`);
  }
}

/** The classes a router is conditioned on (0: unconditional). */
export function routerClasses(config: Pick<RouterConfig, 'numClasses'>): number {
  return config.numClasses ?? 0;
}

/** All router parameter shapes, without allocating. */
export function routerParamShapes(c: RouterConfig): Record<string, number[]> {
  const D = c.hidden;
  return {
    cls_token: [1, 1, D],
    ...backboneShapes(c, numTokens(c)),
    ...blockShapes(c),
    ...(routerClasses(c) > 0 ? { 'y_embedder.embedding_table': [routerClasses(c) + 1, D] } : {}),
    'head.weight': [D, c.numClusters],
    'head.bias': [c.numClusters],
  };
}

/** Cluster classifier for noisy samples. */
export class RouterNet {
  readonly config: RouterConfig;
  readonly params: Map<string, tf.Variable>;
  readonly seed: number;

  constructor(config: RouterConfig, seed = 0) {
    validateRouterConfig(config);
    // The key is kept only when the router is conditional: an unconditional router's config
    // (and so its checkpoint and manifest) is what it was before the option existed.
    this.config = Object.fromEntries([
      ...ROUTER_KEYS.map((k) => [k, config[k]]),
      ...(routerClasses(config) > 0 ? [['numClasses', config.numClasses]] : []),
    ]) as unknown as RouterConfig;
    this.seed = seed;
    this.params = createParams(routerParamShapes(this.config), seed);
  }

  /** Classes it is conditioned on (0: unconditional). */
  get numClasses(): number {
    return routerClasses(this.config);
  }

  /** The label that means "no class" (an unconditional row); only when {@link numClasses} > 0. */
  get nullClass(): number {
    return this.numClasses;
  }

  /**
   * @param x `[B, H, W, C]` float32 (noisy sample x_t)
   * @param tau `[B]` float32 in [0, 999] (999 t for flow-matching time t)
   * @param labels `[B]` int32 in 0..numClasses (numClasses = null class), class-conditional
   *   routers only; omitted there means the null class for every row
   * @returns logits `[B, K]`
   */
  apply(x: tf.Tensor, tau: tf.Tensor, labels?: tf.Tensor): tf.Tensor2D {
    const c = this.config;
    const B = checkImages('RouterNet', x, c);
    checkTau('RouterNet', tau, B);
    if (labels && this.numClasses === 0)
      throw new Error('RouterNet: labels given to an unconditional router');
    if (labels && (labels.rank !== 1 || labels.shape[0] !== B || labels.dtype !== 'int32')) {
      throw new Error(
        `RouterNet: labels must be int32 [${B}], got ${labels.dtype} [${labels.shape}]`,
      );
    }
    const p = lookup(this.params);
    const D = c.hidden;
    return tf.tidy(() => {
      const patches = embedPatches(x, p, c.patchSize); //                            [B, T, D]
      const cls = tf.mul(tf.ones([B, 1, 1]), p('cls_token')); //                   [B, 1, D]
      let h = tf.concat([cls, patches], 1); //                                       [B, T+1, D]
      let cond = embedTimestep(tau, p); //                                           [B, D]
      if (this.numClasses > 0) {
        const y = labels ?? tf.fill([B], this.nullClass, 'int32'); //                 [B]
        cond = tf.add(cond, embedLabels(y, p('y_embedder.embedding_table'))); //     [B, D]
      }
      const tmod = tBlock(cond, p); //                                               6 x [B, 1, D]
      for (let i = 0; i < c.depth; i++) h = ditBlock(h, tmod, p, i, c.heads); //     [B, T+1, D]
      const first = tf.reshape(tf.slice(h, [0, 0, 0], [B, 1, D]), [B, D]); //       [B, D]
      return linear(layerNorm(first), p('head.weight'), p('head.bias')) as tf.Tensor2D; // [B, K]
    });
  }

  /** Posterior over clusters, softmax of the logits. `[B, K]`. */
  probabilities(x: tf.Tensor, tau: tf.Tensor, labels?: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => tf.softmax(this.apply(x, tau, labels)));
  }

  paramShapes(): Record<string, number[]> {
    return routerParamShapes(this.config);
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
