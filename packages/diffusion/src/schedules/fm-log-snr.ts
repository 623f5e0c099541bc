/**
 * Log signal-to-noise ratio of the flow-matching path `x_t = (1 - t) x0 + t e` (docs/method.md §4):
 * `log SNR_FM(t) = 2 log((1 - t) / t)`. +Infinity at t = 0, -Infinity at t = 1.
 */
export function fmLogSnr(t: number): number {
  if (!(t >= 0 && t <= 1)) throw new RangeError(`FM time must be in [0, 1], got ${t}`);
  return 2 * (Math.log1p(-t) - Math.log(t));
}

/** Inverse of {@link fmLogSnr}: the FM time with log SNR `lambda`, `t = 1 / (1 + exp(lambda / 2))`. */
export function fmTimeForLogSnr(lambda: number): number {
  if (Number.isNaN(lambda)) throw new RangeError('log SNR must not be NaN');
  return 1 / (1 + Math.exp(lambda / 2));
}

/**
 * The factor `sqrt((1 - t)^2 + t^2)` relating the FM path to the variance-preserving path of the
 * same SNR: `x_vp = x_t / fmVpScale(t)` has `x_vp = sqrt(abar) x0 + sqrt(1 - abar) e` with
 * `abar = (1 - t)^2 / ((1 - t)^2 + t^2)` (docs/method.md §4, step 3).
 */
export function fmVpScale(t: number): number {
  return Math.hypot(1 - t, t);
}
