import { assertInRange, assertKnownKeys } from '../config-error.js';
import type { StrategyKind } from './strategy.js';

/** Every expert with p_k >= tau, and always the argmax. */
export type ThresholdStrategy = { kind: 'threshold'; tau: number };

export const threshold: StrategyKind<ThresholdStrategy> = {
  resolve(config) {
    assertKnownKeys(config, ['kind', 'tau'], 'threshold strategy');
    return { kind: 'threshold', tau: assertInRange(config.tau, 0, 1, 'threshold tau') };
  },
  select(probs, row, K, argmax, config, selected) {
    const base = row * K;
    for (let k = 0; k < K; k++) if (probs[base + k]! >= config.tau) selected[base + k] = 1;
    selected[base + argmax] = 1;
  },
  // Any number of experts may pass the threshold.
  maxExperts: (_config, K) => K,
  routings: { threshold: ({ tau }) => ({ kind: 'threshold', tau }) },
};
