/**
 * Betas of the linear schedule (Ho et al. 2020; DiT/ImageNet checkpoints; docs/method.md §3), `[T]`
 * float64: `beta_n = betaStart + (betaEnd - betaStart) n / (T - 1)` for n = 0..T-1.
 * Then `alphasCumprod[n] = prod_{i <= n} (1 - beta_i)`.
 */
export function ddpmLinearBetas(T: number, betaStart: number, betaEnd: number): Float64Array {
  const betas = new Float64Array(T);
  for (let n = 0; n < T; n++) betas[n] = betaStart + ((betaEnd - betaStart) * n) / (T - 1);
  return betas;
}
