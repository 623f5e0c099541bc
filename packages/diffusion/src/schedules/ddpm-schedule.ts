import { assertInRange, assertInteger, assertKnownKeys, assertOneOf } from '../config-error.js';
import { ddpmCosineBetas } from './ddpm-cosine.js';
import { ddpmLinearBetas } from './ddpm-linear.js';

/** Serialisable DDPM schedule config; stored with every DDPM checkpoint. */
export type DdpmScheduleConfig =
  | { kind: 'cosine'; T?: number; s?: number }
  | { kind: 'linear'; T?: number; betaStart?: number; betaEnd?: number };

/** A {@link DdpmScheduleConfig} with every default filled in. */
export type ResolvedDdpmScheduleConfig =
  | { kind: 'cosine'; T: number; s: number }
  | { kind: 'linear'; T: number; betaStart: number; betaEnd: number };

/** The valid `kind`s of {@link DdpmScheduleConfig}. */
export const DDPM_SCHEDULE_KINDS = ['cosine', 'linear'] as const;

/** Checks a config and fills its defaults (T = 1000; s = 0.008; betas 1e-4 to 0.02). */
export function resolveDdpmScheduleConfig(config: DdpmScheduleConfig): ResolvedDdpmScheduleConfig {
  const kind: unknown = (config as { kind?: unknown }).kind;
  assertOneOf(kind, DDPM_SCHEDULE_KINDS, 'DDPM schedule kind');
  const T = assertInteger(config.T ?? 1000, 2, 1_000_000, 'DDPM schedule T');
  if (config.kind === 'cosine') {
    assertKnownKeys(config, ['kind', 'T', 's'], 'cosine schedule');
    const s = assertInRange(config.s ?? 0.008, 0, 1, 'cosine schedule s');
    return { kind: 'cosine', T, s };
  }
  const linear = config as Extract<DdpmScheduleConfig, { kind: 'linear' }>;
  assertKnownKeys(linear, ['kind', 'T', 'betaStart', 'betaEnd'], 'linear schedule');
  const betaStart = assertInRange(linear.betaStart ?? 1e-4, 1e-12, 0.999, 'linear betaStart');
  const betaEnd = assertInRange(linear.betaEnd ?? 0.02, betaStart, 0.999, 'linear betaEnd');
  return { kind: 'linear', T, betaStart, betaEnd };
}

/**
 * A discrete DDPM noise schedule (docs/method.md §3): steps n = 0..T-1 with
 * `x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) e`. Built from a serialisable config, which
 * {@link DdpmSchedule.config} returns with defaults filled in.
 *
 * Indexing follows improved DDPM / diffusers: `alphasCumprod[n] = prod_{i <= n} (1 - betas[i])`,
 * so step 0 already carries a little noise (cosine: `abar(1)`, linear: `1 - betaStart`), which keeps
 * every log SNR finite.
 *
 * Fractional steps (the conversion's n*, docs/method.md §4) are defined by interpolating the log SNR
 * linearly between neighbouring integer steps; `alphaBar(n)` and `logSnr(n)` agree with that
 * definition, and `stepForLogSnr` inverts it exactly.
 */
export class DdpmSchedule {
  readonly config: ResolvedDdpmScheduleConfig;
  /** Number of steps T. */
  readonly T: number;
  /** `[T]` beta_n. */
  readonly betas: Float64Array;
  /** `[T]` abar_n = prod_{i <= n} (1 - beta_i), strictly decreasing in (0, 1). */
  readonly alphasCumprod: Float64Array;
  /** `[T]` log SNR_DDPM(n) = log(abar_n / (1 - abar_n)), strictly decreasing. */
  readonly logSnrs: Float64Array;

  constructor(config: DdpmScheduleConfig) {
    this.config = resolveDdpmScheduleConfig(config);
    const c = this.config;
    this.T = c.T;
    this.betas =
      c.kind === 'cosine'
        ? ddpmCosineBetas(c.T, c.s)
        : ddpmLinearBetas(c.T, c.betaStart, c.betaEnd);
    this.alphasCumprod = new Float64Array(this.T);
    this.logSnrs = new Float64Array(this.T);
    // Accumulate log(abar) and 1 - abar separately so both stay accurate near abar = 1 and 0.
    let logAbar = 0;
    for (let n = 0; n < this.T; n++) {
      logAbar += Math.log1p(-this.betas[n]!);
      const abar = Math.exp(logAbar);
      this.alphasCumprod[n] = abar;
      this.logSnrs[n] = logAbar - Math.log(-Math.expm1(logAbar));
    }
  }

  /**
   * log SNR_DDPM(n) for n in [0, T - 1]; integer n read the table, fractional n interpolate
   * linearly in log SNR between floor(n) and ceil(n) (docs/method.md §4, step 2).
   */
  logSnr(n: number): number {
    if (!(n >= 0 && n <= this.T - 1)) {
      throw new RangeError(`DDPM step must be in [0, ${this.T - 1}], got ${n}`);
    }
    const lo = Math.floor(n);
    const frac = n - lo;
    if (frac === 0) return this.logSnrs[lo]!;
    return this.logSnrs[lo]! + frac * (this.logSnrs[lo + 1]! - this.logSnrs[lo]!);
  }

  /** abar at a (possibly fractional) step: `sigmoid(logSnr(n))`, equal to `alphasCumprod[n]` at integers. */
  alphaBar(n: number): number {
    if (Number.isInteger(n) && n >= 0 && n < this.T) return this.alphasCumprod[n]!;
    return 1 / (1 + Math.exp(-this.logSnr(n)));
  }

  /**
   * The fractional step n* with `logSnr(n*) = lambda` (docs/method.md §4, step 2): binary search for the
   * bracketing integer steps, then linear interpolation in log SNR. Clamped to [0, T - 1] when
   * `lambda` lies outside the schedule's range (so +Infinity gives 0 and -Infinity gives T - 1).
   */
  stepForLogSnr(lambda: number): number {
    if (Number.isNaN(lambda)) throw new RangeError('log SNR must not be NaN');
    const l = this.logSnrs;
    if (lambda >= l[0]!) return 0;
    if (lambda <= l[this.T - 1]!) return this.T - 1;
    // Invariant: l[lo] > lambda >= l[hi].
    let lo = 0;
    let hi = this.T - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (l[mid]! > lambda) lo = mid;
      else hi = mid;
    }
    return lo + (l[lo]! - lambda) / (l[lo]! - l[hi]!);
  }
}

/** Builds a {@link DdpmSchedule}; an unknown `kind` throws a ConfigError listing `cosine, linear`. */
export function createDdpmSchedule(config: DdpmScheduleConfig): DdpmSchedule {
  return new DdpmSchedule(config);
}
