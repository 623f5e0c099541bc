import type { Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs-core';

/**
 * What a trained network is, whatever its objective: `net(x, tau, labels)`.
 *
 * - `x`: `[B, ...]` noisy input (a DDPM expert expects the variance-preserving path, an FM expert
 *   the rectified path);
 * - `tau`: `[B]` float timestep in [0, 999] (docs/method.md §2): a DDPM expert's (possibly fractional)
 *   step n, or `999 t` for an FM expert;
 * - `labels`: `[B]` int32 class ids (the null class for unconditional), absent if unconditional.
 *
 * Returns `[B, ...]` like `x`: epsilon for a DDPM expert, velocity for an FM expert.
 */
export type Network = (x: Tensor, tau: Tensor1D, labels?: Tensor1D) => Tensor;

/**
 * The one contract samplers and ensembles see: the flow-matching velocity
 * `v(x_t, t) ~ E[e - x0 | x_t]` on the path `x_t = (1 - t) x0 + t e` (docs/method.md §3).
 *
 * - `x`: `[B, ...]`; `t`: `[B]` FM time in [0, 1], t = 1 is pure noise; `labels`: `[B]` int32.
 *
 * Returns `[B, ...]` like `x`. The caller owns the result; inputs are not disposed.
 */
export type VelocityModel = (x: Tensor, t: Tensor1D, labels?: Tensor1D) => Tensor;

/**
 * Epsilon at an FM state: `eps(x_t, t) ~ E[e | x_t]` with `x_t = (1 - t) x0 + t e`.
 * Shapes as {@link VelocityModel}.
 */
export type FmEpsilonModel = (x: Tensor, t: Tensor1D, labels?: Tensor1D) => Tensor;

/**
 * A router (docs/method.md §5): `r(x_t, t)` returns `[B, K]` probabilities p(k | x_t, t), each row
 * summing to 1, for `x` `[B, ...]` on the FM path and `t` `[B]`. The rows' class labels are passed
 * as the experts get them (class-conditional ensembles); a class-conditional router gives
 * p(k | x_t, c) from them, an unconditional one ignores them.
 */
export type Router = (x: Tensor, t: Tensor1D, labels?: Tensor1D) => Tensor2D;
