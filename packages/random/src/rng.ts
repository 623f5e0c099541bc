import { deriveSeed } from './derive-seed.js';

/**
 * Seeded pseudo-random numbers: every data algorithm takes its seed as an argument and builds its
 * own generator, so results never depend on global state or call order elsewhere.
 *
 * Generator: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, as in PractRand), 128
 * bits of state seeded through splitmix32 so that nearby seeds give unrelated streams.
 */

export interface Rng {
  /** Uniform float in [0, 1) with 32 bits of randomness. */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal variate (Box-Muller). */
  normal(): number;
}

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A generator for `seed` (a safe integer; use {@link deriveSeed} for sub-streams). */
export function createRng(seed: number): Rng {
  const mix = splitmix32(deriveSeed(seed));
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  const u32 = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) u32();
  const next = (): number => u32() / 4294967296;
  return {
    next,
    int(n: number): number {
      if (!Number.isInteger(n) || n <= 0) throw new RangeError(`int(n) needs n >= 1, got ${n}`);
      return Math.floor(next() * n);
    },
    normal(): number {
      let u = next();
      while (u === 0) u = next();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    },
  };
}

/** Fisher-Yates shuffle of `values` in place; returns `values`. */
export function shuffleInPlace<T extends { length: number; [i: number]: unknown }>(
  values: T,
  rng: Rng,
): T {
  for (let i = values.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const tmp = values[i];
    values[i] = values[j];
    values[j] = tmp;
  }
  return values;
}

/**
 * `m` distinct indices from [0, n), drawn uniformly without replacement and returned sorted
 * ascending (sorted rows keep memory access sequential when gathering). Returns all of
 * [0, n) when m >= n.
 */
export function sampleIndices(n: number, m: number, rng: Rng): Int32Array {
  if (m >= n) return Int32Array.from({ length: n }, (_, i) => i);
  // Partial Fisher-Yates over a virtual identity permutation: O(m) memory via a Map.
  const swapped = new Map<number, number>();
  const out = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    const j = i + rng.int(n - i);
    const vj = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(i) ?? i);
    out[i] = vj;
  }
  return out.sort();
}
