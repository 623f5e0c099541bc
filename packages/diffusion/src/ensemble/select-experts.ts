import { assertOneOf } from '../config-error.js';
import { type FullStrategy, full } from './full.js';
import type { StrategyKind } from './strategy.js';
import { type ThresholdStrategy, threshold } from './threshold.js';
import { type TopKStrategy, topK } from './top-k.js';

/**
 * How a sample's experts are chosen from its router probabilities (docs/method.md §5),
 * serialisable:
 * - `full`: all K experts;
 * - `top-k`: the k largest p_k (ties to the lower index; top-1 is `k: 1`);
 * - `threshold`: every p_k >= tau, and always the argmax.
 * Kept weights are renormalised to sum to 1 per sample.
 */
export type CombineStrategy = FullStrategy | TopKStrategy | ThresholdStrategy;

/** The strategy kinds by name: a new strategy is one file plus its entry here. */
const COMBINE_STRATEGIES: {
  [K in CombineStrategy['kind']]: StrategyKind<Extract<CombineStrategy, { kind: K }>>;
} = { full, threshold, 'top-k': topK };

/** The valid `kind`s of {@link CombineStrategy}. */
export const COMBINE_STRATEGY_KINDS = Object.keys(
  COMBINE_STRATEGIES,
).sort() as CombineStrategy['kind'][];

function kindOf<C extends CombineStrategy>(strategy: C): StrategyKind<C> {
  const kind: unknown = (strategy as { kind?: unknown }).kind;
  assertOneOf(kind, COMBINE_STRATEGY_KINDS, 'combine strategy kind');
  return COMBINE_STRATEGIES[kind] as unknown as StrategyKind<C>;
}

/** Checks a strategy; an unknown kind throws a ConfigError listing `full, threshold, top-k`. */
export function resolveCombineStrategy<C extends CombineStrategy>(strategy: C): C {
  return kindOf(strategy).resolve(strategy);
}

/** The most experts one sample evaluates per step under `strategy` with K experts. */
export function maxExpertsPerSample(strategy: CombineStrategy, K: number): number {
  const s = resolveCombineStrategy(strategy);
  return kindOf(s).maxExperts(s, K);
}

/** The protocol's routing names (`top-1`, `top-k`, `full`, `threshold`, ...) and their strategies. */
const ROUTINGS: Readonly<Record<string, (params: { k: number; tau: number }) => CombineStrategy>> =
  Object.assign({}, ...Object.values(COMBINE_STRATEGIES).map((kind) => kind.routings));

/** The valid routing names. */
export const ROUTING_NAMES = Object.keys(ROUTINGS);

/**
 * The strategy a routing name stands for, with a request's `k` (top-k) and `tau` (threshold); an
 * unknown name throws a ConfigError listing the valid ones.
 */
export function routingStrategy(
  name: unknown,
  params: { k: number; tau: number },
): CombineStrategy {
  assertOneOf(name, ROUTING_NAMES, 'routing strategy');
  return resolveCombineStrategy(ROUTINGS[name]!(params));
}

/** Which experts each sample uses and with what weight. */
export type ExpertSelection = {
  /** `[B * K]` row-major: 1 where sample b evaluates expert k. */
  selected: Uint8Array;
  /** `[B * K]` row-major renormalised weights (0 where not selected); each row sums to 1. */
  weights: Float64Array;
};

/**
 * Applies `strategy` per sample to router probabilities `probs` (`[B * K]` row-major, each >= 0).
 * A row whose kept probabilities sum to 0 weights its kept experts equally.
 */
export function selectExperts(
  probs: ArrayLike<number>,
  batch: number,
  K: number,
  strategy: CombineStrategy,
): ExpertSelection {
  const s = resolveCombineStrategy(strategy);
  const kind = kindOf(s);
  if (probs.length !== batch * K) {
    throw new RangeError(`router gave ${probs.length} probabilities, expected ${batch} x ${K}`);
  }
  const selected = new Uint8Array(batch * K);
  const weights = new Float64Array(batch * K);
  for (let b = 0; b < batch; b++) {
    const row = b * K;
    let argmax = 0;
    for (let k = 0; k < K; k++) {
      const p = probs[row + k]!;
      if (!(p >= 0 && p <= Number.MAX_VALUE)) {
        throw new RangeError(`router probability [${b}, ${k}] is ${p}; expected finite and >= 0`);
      }
      if (p > probs[row + argmax]!) argmax = k;
    }
    kind.select(probs, b, K, argmax, s, selected);
    let total = 0;
    let count = 0;
    for (let k = 0; k < K; k++) {
      if (selected[row + k]) {
        total += probs[row + k]!;
        count++;
      }
    }
    for (let k = 0; k < K; k++) {
      if (selected[row + k]) weights[row + k] = total > 0 ? probs[row + k]! / total : 1 / count;
    }
  }
  return { selected, weights };
}
