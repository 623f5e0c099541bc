import { assertInRange, assertKnownKeys, assertOneOf } from '../config-error.js';

/**
 * Per-sample weights of the epsilon loss (docs/method.md §11), as functions of the step's
 * `SNR = abar / (1 - abar)`:
 * - `none`: `w = 1` (Ho et al. 2020);
 * - `min-snr`: `w = min(SNR, gamma) / SNR` (Min-SNR-gamma, Hang et al. 2023; default gamma 5);
 *   caps the weight of nearly clean steps;
 * - `velocity`: `w = min((1 + 1 / sqrt(SNR))^2, max)` (default max 25): the epsilon loss becomes
 *   the FM velocity loss at the SNR-matched time (`v` error = `eps` error / (1 - t) and
 *   `1 / (1 - t) = 1 + 1 / sqrt(SNR)`), truncated so the noisiest steps do not dominate.
 */
export type LossWeighting =
  | { kind: 'none' }
  | { kind: 'min-snr'; gamma?: number }
  | { kind: 'velocity'; max?: number };

/** The valid `kind`s of {@link LossWeighting}. */
export const LOSS_WEIGHTING_KINDS = ['min-snr', 'none', 'velocity'] as const;

/** Checks a loss weighting and fills its defaults. */
export function resolveLossWeighting(config: LossWeighting): LossWeighting {
  const kind: unknown = (config as { kind?: unknown }).kind;
  assertOneOf(kind, LOSS_WEIGHTING_KINDS, 'loss weighting kind');
  switch (config.kind) {
    case 'none':
      assertKnownKeys(config, ['kind'], 'none loss weighting');
      return { kind: 'none' };
    case 'min-snr':
      assertKnownKeys(config, ['kind', 'gamma'], 'min-snr loss weighting');
      return {
        kind: 'min-snr',
        gamma: assertInRange(config.gamma ?? 5, 1e-3, 1e6, 'min-snr gamma'),
      };
    case 'velocity':
      assertKnownKeys(config, ['kind', 'max'], 'velocity loss weighting');
      return { kind: 'velocity', max: assertInRange(config.max ?? 25, 1, 1e9, 'velocity max') };
  }
}

/** The weight of one sample at `abar` (in (0, 1)) under a resolved weighting. */
export function lossWeight(weighting: LossWeighting, abar: number): number {
  const snr = abar / (1 - abar);
  switch (weighting.kind) {
    case 'none':
      return 1;
    case 'min-snr':
      return Math.min(snr, weighting.gamma ?? 5) / snr;
    case 'velocity':
      return Math.min((1 + 1 / Math.sqrt(snr)) ** 2, weighting.max ?? 25);
  }
}
