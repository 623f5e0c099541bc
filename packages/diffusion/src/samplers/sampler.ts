import { fill, type Tensor, type Tensor1D, tidy } from '@tensorflow/tfjs-core';
import type { VelocityModel } from '../model.js';

/** Options every sampler takes. */
export type SamplerOptions = {
  /** `[B]` int32 class labels passed to the model at every step. */
  labels?: Tensor1D;
  /**
   * Called after step `i` (0-based) with the new state `x` (`[B, ...]`). `x` is disposed by the
   * sampler once the next step is taken: clone it to keep it.
   */
  onStep?: (i: number, x: Tensor) => void;
  /** The data range `[lo, hi]`, for samplers that clip their x0 estimates to it (DDIM). */
  x0Clamp?: [number, number];
};

/**
 * The one sampler signature (k-diffusion style): integrate `dx/dt = v(x, t)` over `grid`
 * (strictly decreasing FM times, from 1 down to 0; see `timeGrid`) starting at `xT` (`[B, ...]`,
 * noise at `grid[0]`). Returns the `[B, ...]` state at the last grid time; the caller owns it.
 * `xT` is not disposed.
 */
export type Sampler = (
  model: VelocityModel,
  xT: Tensor,
  grid: readonly number[],
  options?: SamplerOptions,
) => Tensor;

/** Throws unless `grid` has at least two strictly decreasing times in [0, 1]. */
export function assertTimeGrid(grid: readonly number[]): void {
  if (grid.length < 2)
    throw new RangeError(`a time grid needs at least 2 times, got ${grid.length}`);
  for (let i = 0; i < grid.length; i++) {
    const t = grid[i]!;
    if (!(t >= 0 && t <= 1)) throw new RangeError(`grid time ${i} is ${t}, outside [0, 1]`);
    if (i > 0 && !(t < grid[i - 1]!)) {
      throw new RangeError(
        `a time grid must strictly decrease; time ${i} is ${t} after ${grid[i - 1]}`,
      );
    }
  }
}

/**
 * The loop every velocity sampler shares: validate the grid, apply `step` from each grid time to
 * the next (inside a tidy, so only the new state survives), free the previous state, report it.
 * `step(x, t, tNext, vAt)` returns the next `[B, ...]` state; `vAt(x, t)` calls the model at a
 * per-sample time `t`.
 */
export function integrate(
  model: VelocityModel,
  xT: Tensor,
  grid: readonly number[],
  options: SamplerOptions,
  step: (x: Tensor, t: number, tNext: number, vAt: (x: Tensor, t: number) => Tensor) => Tensor,
): Tensor {
  assertTimeGrid(grid);
  const batch = xT.shape[0]!;
  const vAt = (x: Tensor, t: number) => model(x, fill([batch], t) as Tensor1D, options.labels);
  let x = xT;
  for (let i = 0; i + 1 < grid.length; i++) {
    const current = x;
    const next = tidy(() => step(current, grid[i]!, grid[i + 1]!, vAt));
    if (current !== xT) current.dispose();
    x = next;
    options.onStep?.(i, x);
  }
  return x;
}
