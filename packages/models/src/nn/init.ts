/**
 * Seeded parameter initialisers: the recipes of DiT's `initialize_weights` (xavier-uniform
 * linears, normal(0.02) embedders, zeros) drawn from a small deterministic generator.
 *
 * Each parameter gets its own stream, derived from the model seed and the parameter's name, so a
 * parameter's initial value does not depend on which other parameters exist (blocks.0 is the same
 * at depth 4 and depth 12) nor on the backend.
 */

/** Uniform numbers in [0, 1). */
export type Rng = () => number;

/** mulberry32 (public domain): 32-bit state, good enough for initialisation. */
function mulberry32(state: number): Rng {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A generator for one parameter: FNV-1a over the seed and the name. */
export function rngFor(seed: number, name: string): Rng {
  if (!Number.isInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
  let h = 0x811c9dc5;
  const mix = (byte: number) => {
    h ^= byte & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  };
  for (let i = 0; i < 4; i++) mix(seed >>> (8 * i));
  for (let i = 0; i < 4; i++) mix(Math.floor(seed / 2 ** 32) >>> (8 * i));
  for (const ch of name) mix(ch.charCodeAt(0));
  return mulberry32(h);
}

/** Standard normal samples (Box-Muller). */
export function normal(size: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    const u = 1 - rng(); // (0, 1]
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    const phi = 2 * Math.PI * rng();
    out[i] = r * Math.cos(phi);
    if (i + 1 < size) out[i + 1] = r * Math.sin(phi);
  }
  return out;
}

/** Xavier (Glorot) uniform for a weight stored `[fanIn, fanOut]`: U(-a, a), a = sqrt(6 / (in + out)). */
export function xavierUniform(fanIn: number, fanOut: number, rng: Rng): Float32Array {
  const a = Math.sqrt(6 / (fanIn + fanOut));
  const out = new Float32Array(fanIn * fanOut);
  for (let i = 0; i < out.length; i++) out[i] = (2 * rng() - 1) * a;
  return out;
}
