import { assertInRange, assertInteger, assertKnownKeys, assertOneOf } from '../config-error.js';

/**
 * How a sample's experts are chosen from its router probabilities (docs/method.md §5), serialisable:
 * - `full`: all K experts;
 * - `top-k`: the k largest p_k (ties to the lower index; top-1 is `k: 1`);
 * - `threshold`: every p_k >= tau, and always the argmax.
 * Kept weights are renormalised to sum to 1 per sample.
 */
export type CombineStrategy =
  | { kind: 'full' }
  | { kind: 'top-k'; k: number }
  | { kind: 'threshold'; tau: number };

/** The valid `kind`s of {@link CombineStrategy}. */
export const COMBINE_STRATEGY_KINDS = ['full', 'threshold', 'top-k'] as const;

/** Checks a strategy; an unknown kind throws a ConfigError listing `full, threshold, top-k`. */
export function resolveCombineStrategy(strategy: CombineStrategy): CombineStrategy {
  const kind: unknown = (strategy as { kind?: unknown }).kind;
  assertOneOf(kind, COMBINE_STRATEGY_KINDS, 'combine strategy kind');
  switch (strategy.kind) {
    case 'full':
      assertKnownKeys(strategy, ['kind'], 'full strategy');
      return { kind: 'full' };
    case 'top-k':
      assertKnownKeys(strategy, ['kind', 'k'], 'top-k strategy');
      return { kind: 'top-k', k: assertInteger(strategy.k, 1, 1_000_000, 'top-k k') };
    case 'threshold':
      assertKnownKeys(strategy, ['kind', 'tau'], 'threshold strategy');
      return { kind: 'threshold', tau: assertInRange(strategy.tau, 0, 1, 'threshold tau') };
  }
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
  if (probs.length !== batch * K) {
    throw new RangeError(`router gave ${probs.length} probabilities, expected ${batch} x ${K}`);
  }
  const selected = new Uint8Array(batch * K);
  const weights = new Float64Array(batch * K);
  const order = Array.from({ length: K }, (_, k) => k);
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
    if (s.kind === 'full') {
      selected.fill(1, row, row + K);
    } else if (s.kind === 'top-k') {
      order.sort((i, j) => probs[row + j]! - probs[row + i]! || i - j);
      for (let r = 0; r < Math.min(s.k, K); r++) selected[row + order[r]!] = 1;
    } else {
      for (let k = 0; k < K; k++) if (probs[row + k]! >= s.tau) selected[row + k] = 1;
      selected[row + argmax] = 1;
    }
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
