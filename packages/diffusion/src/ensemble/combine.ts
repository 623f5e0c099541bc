import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type { Router, VelocityModel } from '../model.js';
import { batchSize, perSample } from '../per-sample.js';
import { type GuidableModel, withGuidance } from './guidance.js';
import { type CombineStrategy, resolveCombineStrategy, selectExperts } from './select-experts.js';

/** What one call of a combined model evaluated. */
export type EnsembleCall = {
  /** Samples in the call. */
  batch: number;
  /** FM time of the first sample (samplers use one t per call). */
  t: number;
  /** `[K]` rows each expert was evaluated on (0: not run). */
  rows: number[];
};

/** Evaluation counts of a combined model, appended to on every call (plain data, serialisable). */
export type EnsembleStats = {
  /** One entry per call, in order (a sampler step makes one call, Heun two). */
  calls: EnsembleCall[];
  /** `[K]` rows evaluated per expert, summed over calls. */
  rowsPerExpert: number[];
};

/** A combined model and the record of what it evaluated. */
export type ExpertEnsemble = { model: VelocityModel; stats: EnsembleStats };

/**
 * Combines experts by router weights (DDM; docs/method.md §5):
 * `u(x_t, t) = sum_k w_k(x_t, t) v_k(x_t, t)`, with `w` the router probabilities `[B, K]` reduced
 * per sample by `strategy` and renormalised. Only the experts some sample selected run, each on
 * just the rows that selected it (gathered, evaluated, weighted and gathered back into place), so
 * cost grows with the experts kept, not with K.
 *
 * The router's `[B, K]` probabilities are read back to the CPU to choose rows. Labels, if given,
 * go to the router (a class-conditional one routes by them) and are gathered with their rows. `x`: `[B, ...]`, `t`: `[B]`; the model returns `[B, ...]`.
 *
 * `withGuidance(model, w, null)` guides each selected expert on its rows (one doubled call per
 * expert, the router once per step on the `[B]` rows) and clamps after guidance where the expert
 * clamps; the stats count those rows once.
 */
export function combineExperts(
  experts: readonly VelocityModel[],
  router: Router,
  strategy: CombineStrategy,
): ExpertEnsemble {
  const resolved = resolveCombineStrategy(strategy);
  const K = experts.length;
  if (K === 0) throw new RangeError('combineExperts needs at least one expert');
  const stats: EnsembleStats = { calls: [], rowsPerExpert: new Array<number>(K).fill(0) };

  const combined =
    (members: readonly VelocityModel[]): VelocityModel =>
    (x: Tensor, t: Tensor1D, labels?: Tensor1D): Tensor =>
      tf.tidy(() => {
        const batch = batchSize(x, t, 'FM time t');
        const probs = router(x, t, labels); // [B, K]
        if (probs.rank !== 2 || probs.shape[0] !== batch || probs.shape[1] !== K) {
          throw new RangeError(
            `router returned [${probs.shape.join(', ')}], expected [${batch}, ${K}] probabilities`,
          );
        }
        const { selected, weights } = selectExperts(probs.dataSync(), batch, K, resolved);
        const parts: Tensor[] = []; // [B, ...] weighted contribution of each expert that ran
        const rows = new Array<number>(K).fill(0);
        for (let k = 0; k < K; k++) {
          const idx: number[] = [];
          for (let b = 0; b < batch; b++) if (selected[b * K + k]) idx.push(b);
          if (idx.length === 0) continue;
          rows[k] = idx.length;
          const w = perSample(
            Float64Array.from(idx, (b) => weights[b * K + k]!),
            x.rank,
          );
          if (idx.length === batch) {
            parts.push(tf.mul(members[k]!(x, t, labels), w));
            continue;
          }
          const gather = tf.tensor1d(idx, 'int32');
          const xk = tf.gather(x, gather); // [rows_k, ...]
          const tk = tf.gather(t, gather) as Tensor1D;
          const lk = labels === undefined ? undefined : (tf.gather(labels, gather) as Tensor1D);
          const vk = tf.mul(members[k]!(xk, tk, lk), w); // [rows_k, ...]
          // Scatter back by gathering from [v_k; 0]: rows that did not select k read the zero row.
          const back = new Int32Array(batch).fill(idx.length);
          idx.forEach((b, i) => {
            back[b] = i;
          });
          const padded = tf.concat([vk, tf.zeros([1, ...x.shape.slice(1)])], 0);
          parts.push(tf.gather(padded, tf.tensor1d(back, 'int32'))); // [B, ...]
        }
        stats.calls.push({ batch, t: t.dataSync()[0]!, rows });
        rows.forEach((r, k) => {
          stats.rowsPerExpert[k]! += r;
        });
        return parts.length === 1 ? parts[0]! : tf.addN(parts);
      });

  // Classifier-free guidance of the ensemble guides each expert before its clamp (docs/method.md
  // §11) and combines the guided experts with the router's weights for the rows' classes (a
  // class-conditional router's p(k | x_t, c); an unconditional router's do not depend on the
  // label): one routing per step, each expert's clamp after its guidance.
  const model: GuidableModel = Object.assign(combined(experts), {
    guided: (scale: number, nullLabel: number) =>
      combined(experts.map((e) => withGuidance(e, scale, nullLabel))),
  });
  return { model, stats };
}
