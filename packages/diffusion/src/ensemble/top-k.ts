import { assertInteger, assertKnownKeys } from '../config-error.js';
import type { StrategyKind } from './strategy.js';

/** The k largest router probabilities, ties to the lower index (top-1 is `k: 1`). */
export type TopKStrategy = { kind: 'top-k'; k: number };

export const topK: StrategyKind<TopKStrategy> = {
  resolve(config) {
    assertKnownKeys(config, ['kind', 'k'], 'top-k strategy');
    return { kind: 'top-k', k: assertInteger(config.k, 1, 1_000_000, 'top-k k') };
  },
  select(probs, row, K, _argmax, config, selected) {
    const base = row * K;
    const order = Array.from({ length: K }, (_, k) => k);
    order.sort((i, j) => probs[base + j]! - probs[base + i]! || i - j);
    for (let r = 0; r < Math.min(config.k, K); r++) selected[base + order[r]!] = 1;
  },
  maxExperts: (config, K) => Math.min(config.k, K),
  routings: {
    'top-1': () => ({ kind: 'top-k', k: 1 }),
    'top-k': ({ k }) => ({ kind: 'top-k', k }),
  },
};
