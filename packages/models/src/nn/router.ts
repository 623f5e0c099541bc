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
 * Parameter names: those of the DiT trunk (`patch_embed.*`, `pos_embed`, `t_embedder.*`,
 * `t_block.1.*`, `blocks.{i}.*`) plus `cls_token` `[1, 1, D]`, `head.weight` `[D, K]`,
 * `head.bias` `[K]`.
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
}

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
  checkConfig('RouterConfig', config, ROUTER_KEYS);
  if (!Number.isInteger(config.numClusters) || config.numClusters < 1) {
    throw new Error(`RouterConfig: numClusters must be an integer >= 1, got ${config.numClusters}`);
  }
}

/** All router parameter shapes, without allocating. */
export function routerParamShapes(c: RouterConfig): Record<string, number[]> {
  const D = c.hidden;
  return {
    cls_token: [1, 1, D],
    ...backboneShapes(c, numTokens(c)),
    ...blockShapes(c),
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
    this.config = Object.fromEntries(
      ROUTER_KEYS.map((k) => [k, config[k]]),
    ) as unknown as RouterConfig;
    this.seed = seed;
    this.params = createParams(routerParamShapes(this.config), seed);
  }

  /**
   * @param x `[B, H, W, C]` float32 (noisy sample x_t)
   * @param tau `[B]` float32 in [0, 999] (999 t for flow-matching time t)
   * @returns logits `[B, K]`
   */
  apply(x: tf.Tensor, tau: tf.Tensor): tf.Tensor2D {
    const c = this.config;
    const B = checkImages('RouterNet', x, c);
    checkTau('RouterNet', tau, B);
    const p = lookup(this.params);
    const D = c.hidden;
    return tf.tidy(() => {
      const patches = embedPatches(x, p, c.patchSize); //                            [B, T, D]
      const cls = tf.mul(tf.ones([B, 1, 1]), p('cls_token')); //                   [B, 1, D]
      let h = tf.concat([cls, patches], 1); //                                       [B, T+1, D]
      const tmod = tBlock(embedTimestep(tau, p), p); //                              6 x [B, 1, D]
      for (let i = 0; i < c.depth; i++) h = ditBlock(h, tmod, p, i, c.heads); //     [B, T+1, D]
      const first = tf.reshape(tf.slice(h, [0, 0, 0], [B, 1, D]), [B, D]); //       [B, D]
      return linear(layerNorm(first), p('head.weight'), p('head.bias')) as tf.Tensor2D; // [B, K]
    });
  }

  /** Posterior over clusters, softmax of the logits. `[B, K]`. */
  probabilities(x: tf.Tensor, tau: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => tf.softmax(this.apply(x, tau)));
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
