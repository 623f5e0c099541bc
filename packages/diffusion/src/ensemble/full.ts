import { assertKnownKeys } from '../config-error.js';
import type { StrategyKind } from './strategy.js';

/** Every expert, weighted by the router: the exact DDM mixture (docs/method.md §5). */
export type FullStrategy = { kind: 'full' };

export const full: StrategyKind<FullStrategy> = {
  resolve(config) {
    assertKnownKeys(config, ['kind'], 'full strategy');
    return { kind: 'full' };
  },
  select(_probs, row, K, _argmax, _config, selected) {
    selected.fill(1, row * K, row * K + K);
  },
  maxExperts: (_config, K) => K,
  routings: { full: () => ({ kind: 'full' }) },
};
