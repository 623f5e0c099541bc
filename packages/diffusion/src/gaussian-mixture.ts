import { deriveSeed } from '@archipelago/random';
import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './config-error.js';
import type { Network, Router, VelocityModel } from './model.js';
import { batchSize } from './per-sample.js';
import type { DdpmSchedule } from './schedules/ddpm-schedule.js';

/**
 * An isotropic Gaussian mixture in D dimensions: `p(x0) = sum_k pi_k N(x0; mu_k, sigma_k^2 I)`.
 * `weights` are normalised to sum to 1.
 */
export type GaussianMixtureConfig = { weights: number[]; means: number[][]; stds: number[] };

/** Per-sample conditional statistics on a path `x = alpha x0 + sigma e`; see `conditionalMeans`. */
export type PathStatistics = {
  /** `[B * K]` posterior p(k | x). */
  posterior: Float64Array;
  /** `[B * K * D]` E[x0 | x, k]. */
  x0: Float64Array;
  /** `[B * K * D]` E[e | x, k]. */
  eps: Float64Array;
};

/**
 * A Gaussian mixture with every diffusion quantity in closed form (docs/method.md §4, "check that needs
 * no training"): the ideal epsilon-predictor of a DDPM schedule, the ideal FM velocity, the cluster
 * posterior (the ideal router) and each component's ideal velocity (the ideal expert for that
 * cluster). Computed in float64 from the float32 inputs; results are float32 tensors.
 *
 * On any path `x = alpha x0 + sigma e`, `x | k ~ N(alpha mu_k, s_k^2 I)` with
 * `s_k^2 = alpha^2 sigma_k^2 + sigma^2`, and Gaussian conditioning gives
 * `E[x0 | x, k] = mu_k + (alpha sigma_k^2 / s_k^2)(x - alpha mu_k)`,
 * `E[e | x, k] = (sigma / s_k^2)(x - alpha mu_k)`,
 * `p(k | x) ∝ pi_k N(x; alpha mu_k, s_k^2 I)`; mixture quantities are posterior-weighted sums.
 * The FM path is alpha = 1 - t, sigma = t; DDPM step n is alpha = sqrt(abar_n),
 * sigma = sqrt(1 - abar_n).
 *
 * Inputs `x` are `[B, D]` or any `[B, ...]` with D elements per sample.
 */
export class GaussianMixture {
  readonly config: GaussianMixtureConfig;
  /** Number of components K. */
  readonly K: number;
  /** Dimension D. */
  readonly dim: number;
  private readonly logWeights: Float64Array;
  private readonly mu: Float64Array; // [K * D]
  private readonly variances: Float64Array; // [K]

  constructor(config: GaussianMixtureConfig) {
    const { weights, means, stds } = config;
    this.K = weights.length;
    this.dim = means[0]?.length ?? 0;
    if (this.K === 0 || means.length !== this.K || stds.length !== this.K || this.dim === 0) {
      throw new ConfigError('a Gaussian mixture needs K >= 1 weights, means and stds alike');
    }
    if (means.some((m) => m.length !== this.dim || m.some((v) => !Number.isFinite(v)))) {
      throw new ConfigError(`every mean must hold ${this.dim} finite numbers`);
    }
    if (weights.some((w) => !(w > 0 && Number.isFinite(w))) || stds.some((s) => !(s > 0))) {
      throw new ConfigError('mixture weights and stds must be positive');
    }
    const total = weights.reduce((a, b) => a + b, 0);
    this.config = {
      weights: weights.map((w) => w / total),
      means: means.map((m) => [...m]),
      stds: [...stds],
    };
    this.logWeights = Float64Array.from(this.config.weights, Math.log);
    this.mu = Float64Array.from(means.flat());
    this.variances = Float64Array.from(stds, (s) => s * s);
  }

  /** Mixture mean, `sum_k pi_k mu_k` (`[D]`). */
  mean(): number[] {
    const m = new Array<number>(this.dim).fill(0);
    for (let k = 0; k < this.K; k++) {
      for (let d = 0; d < this.dim; d++)
        m[d]! += this.config.weights[k]! * this.mu[k * this.dim + d]!;
    }
    return m;
  }

  /** Mixture covariance, `sum_k pi_k (sigma_k^2 I + mu_k mu_k^T) - m m^T` (`[D][D]`). */
  covariance(): number[][] {
    const m = this.mean();
    return m.map((_, i) =>
      m.map((__, j) => {
        let c = -m[i]! * m[j]!;
        for (let k = 0; k < this.K; k++) {
          const mk = this.mu.subarray(k * this.dim, (k + 1) * this.dim);
          c += this.config.weights[k]! * ((i === j ? this.variances[k]! : 0) + mk[i]! * mk[j]!);
        }
        return c;
      }),
    );
  }

  /**
   * Posterior and per-component conditional means on the path `x = alpha x0 + sigma e`, in float64.
   * `x`: `[B * D]` row-major; `alpha`, `sigma`: `[B]` per sample.
   */
  conditionalMeans(
    x: ArrayLike<number>,
    alpha: ArrayLike<number>,
    sigma: ArrayLike<number>,
  ): PathStatistics {
    const { K, dim: D } = this;
    const batch = alpha.length;
    if (x.length !== batch * D || sigma.length !== batch) {
      throw new RangeError(`expected ${batch} samples of dimension ${D}, got ${x.length} values`);
    }
    const posterior = new Float64Array(batch * K);
    const x0 = new Float64Array(batch * K * D);
    const eps = new Float64Array(batch * K * D);
    const logp = new Float64Array(K);
    for (let b = 0; b < batch; b++) {
      const a = alpha[b]!;
      const s = sigma[b]!;
      let maxLog = -Infinity;
      for (let k = 0; k < K; k++) {
        const varK = a * a * this.variances[k]! + s * s;
        const gainX0 = (a * this.variances[k]!) / varK;
        const gainEps = s / varK;
        let sq = 0;
        for (let d = 0; d < D; d++) {
          const mu = this.mu[k * D + d]!;
          const r = x[b * D + d]! - a * mu;
          sq += r * r;
          x0[(b * K + k) * D + d] = mu + gainX0 * r;
          eps[(b * K + k) * D + d] = gainEps * r;
        }
        logp[k] = this.logWeights[k]! - 0.5 * D * Math.log(varK) - sq / (2 * varK);
        maxLog = Math.max(maxLog, logp[k]!);
      }
      let z = 0;
      for (let k = 0; k < K; k++) z += Math.exp(logp[k]! - maxLog);
      for (let k = 0; k < K; k++) posterior[b * K + k] = Math.exp(logp[k]! - maxLog) / z;
    }
    return { posterior, x0, eps };
  }

  /** The ideal FM velocity `E[e - x0 | x_t]` (docs/method.md §3) as a {@link VelocityModel}. */
  idealVelocity(): VelocityModel {
    return (x, t) => this.fmModel(x, t, (stats, b, d) => this.mixed(stats, b, d, 'v'));
  }

  /** Component k's ideal velocity `E[e - x0 | x_t, k]`: the ideal expert for cluster k. */
  componentVelocity(k: number): VelocityModel {
    if (!(Number.isInteger(k) && k >= 0 && k < this.K)) {
      throw new RangeError(`component must be an integer in [0, ${this.K - 1}], got ${k}`);
    }
    return (x, t) => this.fmModel(x, t, (stats, b, d) => this.component(stats, b, k, d));
  }

  /**
   * A class-conditional ideal velocity: label k gives component k's velocity, `nullLabel` the
   * mixture's (for classifier-free guidance tests).
   */
  conditionalVelocity(nullLabel: number): VelocityModel {
    return (x, t, labels) => {
      if (labels === undefined) throw new RangeError('conditionalVelocity needs labels');
      const l = labels.dataSync();
      return this.fmModel(x, t, (stats, b, d) =>
        l[b] === nullLabel ? this.mixed(stats, b, d, 'v') : this.component(stats, b, l[b]!, d),
      );
    };
  }

  /** The ideal router: the FM-path posterior p(k | x_t, t), `[B, K]` (docs/method.md §5). */
  posterior(): Router {
    return (x, t) => {
      batchSize(x, t, 'FM time t');
      const times = t.dataSync();
      const stats = this.conditionalMeans(
        x.dataSync(),
        Float64Array.from(times, (v) => 1 - v),
        Float64Array.from(times),
      );
      return tf.tensor2d(Float32Array.from(stats.posterior), [times.length, this.K]);
    };
  }

  /**
   * The ideal DDPM epsilon-predictor `E[e | x_n]` for `schedule` as a {@link Network}, at
   * fractional steps too: step tau has `abar = sigmoid(schedule.logSnr(tau))`, the schedule's own
   * definition of fractional steps.
   */
  idealEpsilon(schedule: DdpmSchedule): Network {
    return (x, tau) => {
      batchSize(x, tau, 'DDPM step tau');
      const steps = tau.dataSync();
      const alpha = new Float64Array(steps.length);
      const sigma = new Float64Array(steps.length);
      steps.forEach((n, b) => {
        const lambda = schedule.logSnr(n);
        alpha[b] = Math.sqrt(1 / (1 + Math.exp(-lambda)));
        sigma[b] = Math.sqrt(1 / (1 + Math.exp(lambda)));
      });
      const stats = this.conditionalMeans(x.dataSync(), alpha, sigma);
      return this.output(x, (b, d) => this.mixed(stats, b, d, 'eps'));
    };
  }

  /** `n` samples `[n, D]` from the mixture, deterministic in `seed`. */
  sample(n: number, seed: number): Tensor2D {
    const D = this.dim;
    const u = tf.randomUniform([n], 0, 1, 'float32', deriveSeed(seed, 1));
    const z = tf.randomNormal([n, D], 0, 1, 'float32', deriveSeed(seed, 2));
    const uv = u.dataSync();
    const zv = z.dataSync();
    u.dispose();
    z.dispose();
    const out = new Float32Array(n * D);
    for (let i = 0; i < n; i++) {
      let k = 0;
      let cum = this.config.weights[0]!;
      while (uv[i]! >= cum && k < this.K - 1) cum += this.config.weights[++k]!;
      const std = Math.sqrt(this.variances[k]!);
      for (let d = 0; d < D; d++) out[i * D + d] = this.mu[k * D + d]! + std * zv[i * D + d]!;
    }
    return tf.tensor2d(out, [n, D]);
  }

  private fmModel(
    x: Tensor,
    t: Tensor1D,
    value: (stats: PathStatistics, b: number, d: number) => number,
  ): Tensor {
    batchSize(x, t, 'FM time t');
    const times = t.dataSync();
    const stats = this.conditionalMeans(
      x.dataSync(),
      Float64Array.from(times, (v) => 1 - v),
      Float64Array.from(times),
    );
    return this.output(x, (b, d) => value(stats, b, d));
  }

  private mixed(stats: PathStatistics, b: number, d: number, what: 'v' | 'eps'): number {
    let sum = 0;
    for (let k = 0; k < this.K; k++) {
      const p = stats.posterior[b * this.K + k]!;
      sum += p * (what === 'eps' ? stats.eps[this.at(b, k, d)]! : this.component(stats, b, k, d));
    }
    return sum;
  }

  private component(stats: PathStatistics, b: number, k: number, d: number): number {
    if (!(k >= 0 && k < this.K)) throw new RangeError(`label ${k} is not a mixture component`);
    const i = this.at(b, k, d);
    return stats.eps[i]! - stats.x0[i]!;
  }

  private at(b: number, k: number, d: number): number {
    return (b * this.K + k) * this.dim + d;
  }

  private output(x: Tensor, value: (b: number, d: number) => number): Tensor {
    const batch = x.shape[0]!;
    if (x.size !== batch * this.dim) {
      throw new RangeError(
        `expected [B, ...] with ${this.dim} values per sample, got [${x.shape}]`,
      );
    }
    const out = new Float32Array(x.size);
    for (let b = 0; b < batch; b++) {
      for (let d = 0; d < this.dim; d++) out[b * this.dim + d] = value(b, d);
    }
    return tf.tensor(out, x.shape);
  }
}
