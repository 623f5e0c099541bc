/**
 * Seeds for tfjs's random ops. `tf.randomNormal(..., seed)` treats a seed of 0 as "no seed" and
 * draws from `Math.random()`, and nearby seeds used for different purposes (noise, times) would
 * otherwise reuse one stream; so every random draw in this package goes through `deriveSeed`.
 */

/**
 * A positive 31-bit integer seed, a hash (splitmix32 finaliser) of `seed` and a `stream` number
 * naming what the randomness is for. Never 0, deterministic, and different streams of one seed
 * are unrelated.
 */
export function deriveSeed(seed: number, stream = 0): number {
  if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(stream)) {
    throw new RangeError(`seed and stream must be safe integers, got ${seed}, ${stream}`);
  }
  let h =
    (Math.imul(seed | 0, 0x9e3779b9) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x85ebca6b)) >>> 0;
  h = (h + Math.imul(stream + 1, 0x7f4a7c15)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x21f0aaad) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x735a2d97) >>> 0;
  h = (h ^ (h >>> 15)) >>> 1;
  return h === 0 ? 1 : h;
}
