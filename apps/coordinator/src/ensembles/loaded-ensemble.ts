/**
 * A published ensemble loaded for sampling: every expert's network and the router, from the
 * files its manifest names (each checked against the manifest's size and sha256 before use).
 * Used by the sampling endpoint, by sampler processes and by the offline `sample` command.
 */
import {
  combineExperts,
  initialNoise,
  maxExpertsPerSample,
  type Router,
  routingStrategy,
  samplerEntry,
  selectExperts,
  type VelocityModel,
  velocityExpert,
  withGuidance,
} from '@archipelago/diffusion';
import { routerClasses, type TrainableNetwork } from '@archipelago/models';
import {
  type ConversionMode,
  type EnsembleManifest,
  type ManifestFile,
  manifestExpertSpec,
  type RoutingStrategy,
  type SamplerName,
} from '@archipelago/protocol';
import * as tf from '@tensorflow/tfjs-core';
import { classConditionalProbabilities } from './class-routing.js';
import { checkFile } from './manifest.js';
import { networkFromCheckpoint } from './network-from-checkpoint.js';

/** Fetches the bytes of one file of the manifest (store, HTTP or disk). */
export type FetchFile = (file: ManifestFile, name: string) => Promise<Uint8Array>;

export interface SampleSettings {
  count: number;
  steps: number;
  seed: number;
  sampler: SamplerName;
  routing: RoutingStrategy;
  /** top-k only. */
  k: number;
  /** threshold only. */
  tau: number;
  conversion: ConversionMode;
  /** A class for every sample (echoed in replies), or null. */
  class: number | null;
  /** The class of each sample; null: unconditional (the null class of a class-conditional ensemble). */
  classes: number[] | null;
  guidance: number;
}

export interface SampleOutput {
  /** `[count, H, W, C]` bytes. */
  pixels: Uint8Array;
  height: number;
  width: number;
  channels: 1 | 3;
  perSample: { dominant: number; evaluations: number[] }[];
  routing: {
    steps: { t: number; rows: number[] }[];
    totals: number[];
    meanExpertsPerSample: number;
  };
  seconds: number;
}

/** What a request costs, in expert-network evaluations of one image (the limit's unit). */
export function sampleCost(s: SampleSettings, experts: number): number {
  const perStep = maxExpertsPerSample(strategyOf(s), experts);
  const guided = s.classes !== null && s.guidance !== 1 ? 2 : 1;
  return s.count * s.steps * perStep * guided * samplerEntry(s.sampler).evaluationsPerStep;
}

/** The combine strategy a request's routing name stands for (the diffusion registry's). */
function strategyOf(s: Pick<SampleSettings, 'routing' | 'k' | 'tau'>) {
  return routingStrategy(s.routing, { k: s.k, tau: s.tau });
}

/** Classes a loaded router reads (0: unconditional, or not a RouterNet). */
function routerClassesOf(router: TrainableNetwork): number {
  return router.spec.kind === 'router' ? routerClasses(router.spec.config) : 0;
}

export class LoadedEnsemble {
  private constructor(
    readonly manifest: EnsembleManifest,
    private readonly experts: TrainableNetwork[],
    private readonly router: TrainableNetwork,
  ) {}

  /** Fetch, check and load every file of `manifest` (the signature is the caller's to check). */
  static async load(manifest: EnsembleManifest, fetchFile: FetchFile): Promise<LoadedEnsemble> {
    const nets: TrainableNetwork[] = [];
    try {
      for (const e of [...manifest.experts].sort((a, b) => a.cluster - b.cluster)) {
        const name = `expert ${e.cluster}`;
        const bytes = await fetchFile(e.checkpoint, name);
        checkFile(name, e.checkpoint, bytes);
        nets.push(networkFromCheckpoint(bytes, { kind: 'expert' }).net);
      }
      const bytes = await fetchFile(manifest.router.checkpoint, 'router');
      checkFile('router', manifest.router.checkpoint, bytes);
      const router = networkFromCheckpoint(bytes, { kind: 'router' }).net;
      // A router that reads the class must know the experts' classes (and their null class).
      const classes = Number(
        (manifest.model.architecture as { numClasses?: number }).numClasses ?? 0,
      );
      const routerClasses = routerClassesOf(router);
      if (routerClasses > 0 && routerClasses !== classes) {
        router.dispose();
        throw new RangeError(
          `the router is conditioned on ${routerClasses} classes, the experts on ${classes}`,
        );
      }
      return new LoadedEnsemble(manifest, nets, router);
    } catch (err) {
      for (const n of nets) n.dispose();
      throw err;
    }
  }

  get numExperts(): number {
    return this.experts.length;
  }

  get numClasses(): number {
    return Number((this.manifest.model.architecture as { numClasses?: number }).numClasses ?? 0);
  }

  /** Classes the router reads (0: an unconditional router, p(k | x_t) only). */
  get routerClasses(): number {
    return routerClassesOf(this.router);
  }

  /**
   * Images `[count, H, W, C]` from the ensemble, deterministic in `settings.seed`. Once `signal`
   * aborts, sampling stops at the next step and throws the signal's reason.
   */
  async sample(s: SampleSettings, signal?: AbortSignal): Promise<SampleOutput> {
    const start = performance.now();
    const { manifest } = this;
    const arch = manifest.model.architecture as { imageSize: number; channels: number };
    const K = this.experts.length;
    const B = s.count;
    const classes = s.classes;
    if (classes !== null && this.numClasses === 0) {
      throw new RangeError('this ensemble is unconditional: omit class');
    }
    if (classes !== null && classes.length !== B) {
      throw new RangeError(`${classes.length} classes for ${B} samples`);
    }
    const bad = classes?.find((c) => !(Number.isInteger(c) && c >= 0 && c < this.numClasses));
    if (bad !== undefined) {
      throw new RangeError(
        `class ${bad} is out of range: the ensemble knows ${this.numClasses} classes (0..${this.numClasses - 1})`,
      );
    }
    const models = this.velocityModels(s.conversion);
    // Per-sample bookkeeping: the router's probabilities are re-read to attribute each
    // evaluation to its sample (combineExperts only counts rows per expert).
    const strategy = strategyOf(s);
    const evaluations = Array.from({ length: B }, () => new Array<number>(K).fill(0));
    const weightSums = Array.from({ length: B }, () => new Array<number>(K).fill(0));
    const routerNet = this.router;
    // Class-conditional requests. A router trained with the class (every class-conditional run's
    // since it existed) answers p(k | x_t, c) itself from the rows' labels, and p(k | x_t) for the
    // null class. An older router knows only p(k | x_t): then p(k | x_t, c) ∝ p(k | x_t) p(c | k),
    // with p(c | k) from the clusters' class counts (exact at t = 1; it keeps a class away from
    // experts that never saw it; docs/method.md §5 measures the two). A class no cluster holds
    // leaves that router's weights as they are.
    const classRouter = this.routerClasses > 0;
    const priors = classes === null || classRouter ? null : classes.map((c) => this.classPrior(c));
    const router: Router = (x, t, rowLabels) => {
      // In log space (ensembles/class-routing.ts): a product of probabilities underflows.
      const probs = tf.tidy(() =>
        classRouter
          ? (tf.softmax(
              routerNet.apply(x, tf.mul(t, 999) as tf.Tensor1D, rowLabels) as tf.Tensor2D,
            ) as tf.Tensor2D)
          : classConditionalProbabilities(
              routerNet.apply(x, tf.mul(t, 999) as tf.Tensor1D) as tf.Tensor2D,
              priors,
            ),
      );
      const rows = probs.shape[0];
      const { selected, weights } = selectExperts(probs.dataSync(), rows, K, strategy);
      for (let r = 0; r < rows; r++) {
        const b = r % B; // one row per sample (r % B would also map a batch stacked [cond; uncond])
        for (let k = 0; k < K; k++) {
          if (selected[r * K + k]) evaluations[b]![k]! += 1;
          weightSums[b]![k]! += weights[r * K + k]!;
        }
      }
      return probs;
    };
    const { model: combined, stats } = combineExperts(models, router, strategy);
    let labels: tf.Tensor1D | undefined;
    let model: VelocityModel = combined;
    if (this.numClasses > 0) {
      labels = tf.tensor1d(classes ?? new Array<number>(B).fill(this.numClasses), 'int32');
      if (classes !== null && s.guidance !== 1)
        model = withGuidance(combined, s.guidance, this.numClasses);
    }
    const shape = [B, arch.imageSize, arch.imageSize, arch.channels];
    const xT = initialNoise(shape, s.seed);
    let x0: tf.Tensor = xT;
    try {
      const { sampler, grid } = samplerEntry(s.sampler);
      const times = grid(s.steps);
      // Images live in [-1, 1]: samplers that clip their x0 estimates (DDIM) clip there.
      const options = { x0Clamp: [-1, 1] as [number, number], ...(labels ? { labels } : {}) };
      // One step at a time, yielding in between: a step of every sampler needs only the state and
      // its two grid times (they share one loop, `integrate`), so the pixels are those of one
      // call, while the process keeps serving (heartbeats, other requests) and a request whose
      // client went away stops at the next step.
      for (let i = 0; i + 1 < times.length; i++) {
        const next = sampler(model, x0, [times[i]!, times[i + 1]!], options);
        if (x0 !== xT) x0.dispose();
        x0 = next;
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (signal?.aborted) {
          x0.dispose();
          signal.throwIfAborted();
        }
      }
    } finally {
      xT.dispose();
      labels?.dispose();
    }
    const bytes = tf.tidy(() =>
      tf.cast(tf.round(tf.mul(tf.add(tf.clipByValue(x0, -1, 1), 1), 127.5)), 'int32'),
    );
    const pixels = Uint8Array.from(await bytes.data());
    tf.dispose([x0, bytes]);
    const totals = stats.rowsPerExpert.slice();
    const evaluated = totals.reduce((a, b) => a + b, 0);
    const rowsSeen = stats.calls.reduce((a, c) => a + c.batch, 0);
    return {
      pixels,
      height: arch.imageSize,
      width: arch.imageSize,
      channels: arch.channels as 1 | 3,
      perSample: evaluations.map((ev, b) => {
        const w = weightSums[b]!;
        let dominant = 0;
        for (let k = 1; k < K; k++) if (w[k]! > w[dominant]!) dominant = k;
        return { dominant, evaluations: ev };
      }),
      routing: {
        steps: stats.calls.map((c) => ({ t: c.t, rows: c.rows })),
        totals,
        meanExpertsPerSample: rowsSeen > 0 ? evaluated / rowsSeen : 0,
      },
      seconds: (performance.now() - start) / 1000,
    };
  }

  /** p(c | k) for each cluster k, or null when no cluster holds class c. */
  private classPrior(c: number): number[] | null {
    const counts = this.manifest.dataset.classCounts;
    if (!counts || counts.length !== this.experts.length) return null;
    const prior = counts.map((row) => {
      const total = row.reduce((a, b) => a + b, 0);
      return total > 0 ? (row[c] ?? 0) / total : 0;
    });
    return prior.some((p) => p > 0) ? prior : null;
  }

  /**
   * Every expert as a velocity model, by cluster, through its spec's adapter in the registry
   * (DDPM-schedule experts with `conversion` and the manifest's floor and clamp).
   */
  private velocityModels(conversion: ConversionMode): VelocityModel[] {
    const inference = this.manifest.inference;
    return this.manifest.experts
      .slice()
      .sort((a, b) => a.cluster - b.cluster)
      .map((e, i) => {
        const net = this.experts[i]!;
        const network = (x: tf.Tensor, tau: tf.Tensor1D, labels?: tf.Tensor1D) =>
          net.apply(x, tau, labels);
        return velocityExpert({
          objective: manifestExpertSpec(e),
          network,
          conversion: {
            mode: conversion,
            alphaMin: inference.alphaMin,
            x0Clamp: [-inference.x0Clamp, inference.x0Clamp],
          },
        });
      });
  }

  /**
   * Held-out error of the combined velocity (docs/method.md §5) under a routing strategy: the mean
   * squared difference from the flow-matching target `e - x0` at `x_t = (1 - t) x0 + t e`,
   * t ~ U(0, 1), over `x0` (`[n, H, W, C]` in [-1, 1]) drawn `repeats` times with `seed`.
   * Unconditional (the null class). Lower is better; the full mixture with the true posterior is
   * the minimiser when every expert is exact.
   */
  velocityLoss(
    x0: Float32Array,
    n: number,
    routing: Pick<SampleSettings, 'routing' | 'k' | 'tau'>,
    seed: number,
    repeats = 4,
  ): number {
    const arch = this.manifest.model.architecture as { imageSize: number; channels: number };
    const shape = [arch.imageSize, arch.imageSize, arch.channels];
    const models = this.velocityModels('snr');
    const routerNet = this.router;
    const router: Router = (x, t) =>
      tf.tidy(() =>
        tf.softmax(routerNet.apply(x, tf.mul(t, 999) as tf.Tensor1D) as tf.Tensor2D),
      ) as tf.Tensor2D;
    const { model } = combineExperts(models, router, strategyOf(routing));
    let total = 0;
    let rows = 0;
    const CHUNK = 64;
    for (let r = 0; r < repeats; r++) {
      for (let start = 0; start < n; start += CHUNK) {
        const m = Math.min(CHUNK, n - start);
        const size = shape[0]! * shape[1]! * shape[2]!;
        const mse = tf.tidy(() => {
          const x = tf.tensor(x0.subarray(start * size, (start + m) * size), [m, ...shape]);
          const s = seed + 7919 * r + start;
          const t = tf.randomUniform([m], 0.001, 0.999, 'float32', s) as tf.Tensor1D;
          const e = tf.randomNormal([m, ...shape], 0, 1, 'float32', s + 1);
          const tt = tf.reshape(t, [m, 1, 1, 1]);
          const xt = tf.add(tf.mul(tf.sub(1, tt), x), tf.mul(tt, e));
          const labels =
            this.numClasses > 0
              ? (tf.fill([m], this.numClasses, 'int32') as tf.Tensor1D)
              : undefined;
          const v = model(xt, t, labels);
          return tf.mean(tf.square(tf.sub(v, tf.sub(e, x)))).dataSync()[0]!;
        });
        total += mse * m;
        rows += m;
      }
    }
    return total / rows;
  }

  dispose(): void {
    for (const n of this.experts) n.dispose();
    this.router.dispose();
  }
}
