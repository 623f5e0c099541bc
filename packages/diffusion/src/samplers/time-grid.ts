import { assertInRange, assertInteger, assertKnownKeys } from '../config-error.js';

/** Options of {@link timeGrid}. */
export type TimeGridOptions = { shift?: number };

/**
 * `steps + 1` FM times from 1 down to 0 for a sampler: uniform `t_i = 1 - i / steps`, then shifted
 * (SD3, docs/method.md §3) `t' = a t / (1 + (a - 1) t)`; `a > 1` puts more steps at high noise, `a = 1`
 * (default) is no shift. The endpoints stay exactly 1 and 0 and the grid strictly decreases.
 */
export function timeGrid(steps: number, options: TimeGridOptions = {}): number[] {
  assertKnownKeys(options, ['shift'], 'time grid option');
  assertInteger(steps, 1, 100_000, 'sampling steps');
  const a = assertInRange(options.shift ?? 1, 1e-3, 1e3, 'time grid shift');
  const grid: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t = 1 - i / steps;
    grid.push((a * t) / (1 + (a - 1) * t));
  }
  grid[0] = 1;
  grid[steps] = 0;
  return grid;
}
