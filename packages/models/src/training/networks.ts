/**
 * The networks a trainer can drive, named by a serialisable spec `{ kind, config }` so a worker
 * thread can rebuild the same network from a message and a checkpoint can record it as its
 * `architecture` (`{ kind, ...config }`).
 */
import { ConfigError } from '@archipelago/diffusion';
import type * as tf from '@tensorflow/tfjs-core';
import {
  DiT,
  type DiTConfig,
  ditParamShapes,
  type RouterConfig,
  RouterNet,
  routerParamShapes,
  validateDiTConfig,
  validateRouterConfig,
} from '../nn/index.js';
import {
  MlpClassifier,
  type MlpClassifierConfig,
  type MlpConfig,
  MlpNet,
  mlpClassifierParamShapes,
  mlpParamShapes,
  resolveMlpClassifierConfig,
  resolveMlpConfig,
} from './mlp-net.js';

/** An expert (denoiser) network: a DiT for images, an MLP for vectors. */
export type ExpertNetworkSpec =
  | { kind: 'dit'; config: DiTConfig }
  | { kind: 'mlp'; config: MlpConfig };

/** A router (cluster classifier): a RouterNet for images, an MLP classifier for vectors. */
export type RouterNetworkSpec =
  | { kind: 'router'; config: RouterConfig }
  | { kind: 'mlp-classifier'; config: MlpClassifierConfig };

export type NetworkSpec = ExpertNetworkSpec | RouterNetworkSpec;

export const EXPERT_NETWORK_KINDS = ['dit', 'mlp'] as const;
export const ROUTER_NETWORK_KINDS = ['mlp-classifier', 'router'] as const;
const NETWORK_KINDS = [...EXPERT_NETWORK_KINDS, ...ROUTER_NETWORK_KINDS] as const;

/** What a trainer needs of a network, whatever its kind. */
export interface TrainableNetwork {
  /** The spec with the network's resolved config (defaults filled in). */
  readonly spec: NetworkSpec;
  /** Parameters by name; non-trainable ones (the DiT's `pos_embed`) are included. */
  readonly params: Map<string, tf.Variable>;
  /**
   * `x` `[B, ...]` (the network's input shape), `tau` `[B]` float32 in [0, 999], `labels` `[B]`
   * int32 class labels (class-conditional DiT only). Returns `[B, ...]` (experts) or logits
   * `[B, K]` (routers).
   */
  apply(x: tf.Tensor, tau: tf.Tensor, labels?: tf.Tensor): tf.Tensor;
  dispose(): void;
}

/**
 * Checks a spec (unknown kinds and config keys throw, listing the valid ones) and returns it with
 * a copy of its config, defaults filled in: the `architecture` a checkpoint records.
 */
export function resolveNetworkSpec<S extends NetworkSpec>(spec: S, valid?: readonly S['kind'][]): S;
export function resolveNetworkSpec(
  spec: NetworkSpec,
  valid: readonly string[] = NETWORK_KINDS,
): NetworkSpec {
  const kind: unknown = (spec as { kind?: unknown }).kind;
  if (!(valid as readonly unknown[]).includes(kind)) {
    throw new ConfigError(
      `unknown network kind ${JSON.stringify(kind)}; valid: ${valid.join(', ')}`,
    );
  }
  switch (spec.kind) {
    case 'dit':
      validateDiTConfig(spec.config);
      if (spec.config.learnSigma) {
        throw new Error('DiT learnSigma: the trainers fit the mean only (no variance loss)');
      }
      return { kind: 'dit', config: { ...spec.config } };
    case 'mlp':
      return { kind: 'mlp', config: resolveMlpConfig(spec.config) };
    case 'router': {
      validateRouterConfig(spec.config);
      // numClasses 0 is the unconditional router: stored without the key, as before it existed.
      const { numClasses, ...rest } = spec.config;
      return { kind: 'router', config: numClasses ? { ...rest, numClasses } : rest };
    }
    case 'mlp-classifier':
      return { kind: 'mlp-classifier', config: resolveMlpClassifierConfig(spec.config) };
  }
}

/** Every parameter's shape (trainable or not), without building the network. */
export function paramShapesOf(spec: NetworkSpec): Record<string, number[]> {
  switch (spec.kind) {
    case 'dit':
      return ditParamShapes(spec.config);
    case 'mlp':
      return mlpParamShapes(spec.config);
    case 'router':
      return routerParamShapes(spec.config);
    case 'mlp-classifier':
      return mlpClassifierParamShapes(spec.config);
  }
}

/** Builds the network a spec names, its parameters initialised from `seed`. */
export function buildNetwork(input: NetworkSpec, seed: number): TrainableNetwork {
  const spec = resolveNetworkSpec(input);
  switch (spec.kind) {
    case 'dit': {
      const net = new DiT(spec.config, seed);
      return wrap(spec, net, (x, tau, labels) => net.apply(x, tau, labels));
    }
    case 'mlp': {
      const net = new MlpNet(spec.config, seed);
      return wrap(spec, net, (x, tau, labels) => {
        if (labels) throw new Error('MlpNet is unconditional: labels are not accepted');
        return net.apply(x, tau);
      });
    }
    case 'router': {
      const net = new RouterNet(spec.config, seed);
      return wrap(spec, net, (x, tau, labels) => net.apply(x, tau, labels));
    }
    case 'mlp-classifier': {
      const net = new MlpClassifier(spec.config, seed);
      return wrap(spec, net, (x, tau) => net.apply(x, tau));
    }
  }
}

function wrap(
  spec: NetworkSpec,
  net: { params: Map<string, tf.Variable>; dispose(): void },
  apply: TrainableNetwork['apply'],
): TrainableNetwork {
  return { spec, params: net.params, apply, dispose: () => net.dispose() };
}

/** The checkpoint `architecture` of a network: its kind and its resolved config. */
export function architectureOf(spec: NetworkSpec): Record<string, unknown> {
  return { kind: spec.kind, ...spec.config };
}

/** Per-sample input shape (`[H, W, C]` for images, `[D]` for vectors) of a resolved spec. */
export function inputShapeOf(spec: NetworkSpec): number[] {
  switch (spec.kind) {
    case 'dit':
    case 'router':
      return [spec.config.imageSize, spec.config.imageSize, spec.config.channels];
    case 'mlp':
    case 'mlp-classifier':
      return [spec.config.dim];
  }
}
