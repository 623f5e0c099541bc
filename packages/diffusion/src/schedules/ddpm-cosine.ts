/** Largest beta of the cosine schedule (improved DDPM clips the last steps here). */
export const COSINE_MAX_BETA = 0.999;

/**
 * The continuous cosine alpha-bar of improved DDPM (Nichol & Dhariwal 2021, eq. 17; docs/method.md §3):
 * `abar(u) = f(u) / f(0)`, `f(u) = cos^2(((u / T + s) / (1 + s)) * pi / 2)`, for u in [0, T].
 */
export function cosineAlphaBar(u: number, T: number, s: number): number {
  const f = (v: number) => Math.cos(((v / T + s) / (1 + s)) * (Math.PI / 2)) ** 2;
  return f(u) / f(0);
}

/**
 * Betas of the cosine schedule, `[T]` float64: `beta_n = min(1 - abar(n + 1) / abar(n), 0.999)`
 * for n = 0..T-1, as improved DDPM (and diffusers' `squaredcos_cap_v2`) computes them. The
 * cumulative product of `1 - beta` then gives `alphasCumprod[n] = abar(n + 1)`, exactly the closed
 * form except at the clipped last step(s).
 */
export function ddpmCosineBetas(T: number, s: number): Float64Array {
  const betas = new Float64Array(T);
  for (let n = 0; n < T; n++) {
    const ratio = cosineAlphaBar(n + 1, T, s) / cosineAlphaBar(n, T, s);
    betas[n] = Math.min(1 - ratio, COSINE_MAX_BETA);
  }
  return betas;
}
