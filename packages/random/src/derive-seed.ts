/**
 * The one seed derivation of the project. Every random draw, in tfjs ops (noise, times, DDPM
 * steps) and in the data algorithms (k-means, PCA, shards, batch order), takes a seed derived
 * here from the user's seed and names naming what the randomness is for, so that one seed gives
 * reproducible, unrelated streams. tfjs's random ops treat a seed of 0 as "no seed" and draw
 * from `Math.random()`, hence results are never 0.
 */

/** One mixing step: a positive 31-bit hash (splitmix32 finaliser) of `seed` and a stream number. */
function mix(seed: number, stream: number): number {
  let h =
    (Math.imul(seed | 0, 0x9e3779b9) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x85ebca6b)) >>> 0;
  h = (h + Math.imul(stream + 1, 0x7f4a7c15)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x21f0aaad) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x735a2d97) >>> 0;
  h = (h ^ (h >>> 15)) >>> 1;
  return h === 0 ? 1 : h;
}

/** A string salt as a stream number (FNV-1a over its UTF-16 code units, above 2^32). */
function streamOf(salt: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193) >>> 0;
  return 2 ** 32 + h;
}

/**
 * A positive 31-bit integer seed (never 0) from `seed` and any number of salts naming what the
 * randomness is for: integers (a stream, a cluster, a step) or strings (`'kmeans++'`). With one
 * integer salt `stream` (default 0) it is one mixing step of `(seed, stream)`; further salts mix
 * into the result in turn. Deterministic; different salts give unrelated seeds.
 */
export function deriveSeed(seed: number, ...salts: (number | string)[]): number {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`seed must be a safe integer, got ${seed}`);
  }
  const streams = salts.map((salt) => {
    if (typeof salt === 'string') return streamOf(salt);
    if (!Number.isSafeInteger(salt)) {
      throw new RangeError(`seed salts must be safe integers or strings, got ${salt}`);
    }
    return salt;
  });
  let h = mix(seed, streams[0] ?? 0);
  for (const stream of streams.slice(1)) h = mix(h, stream);
  return h;
}
