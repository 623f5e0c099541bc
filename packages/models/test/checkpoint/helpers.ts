import { expect } from 'vitest';
import { CheckpointError, type CheckpointErrorCode } from '../../src/checkpoint/index.js';

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomFloats(n: number, random: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => random() * 2 - 1);
}

/** The raw bytes behind any typed array view. */
export const bytesOf = (a: ArrayBufferView): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * A safetensors file built by hand, per the spec: u64 LE header length, the header text
 * (padded with spaces to a multiple of 8 unless pad is false), then `data`.
 */
export function rawFile(
  header: string | object,
  data: ArrayLike<number> = [],
  options: { pad?: boolean; length?: bigint } = {},
): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  let json = new TextEncoder().encode(text);
  if (options.pad ?? true) {
    const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    padded.set(json);
    json = padded;
  }
  return rawBytes(json, data, options.length);
}

/** Like rawFile, with the header given as bytes (for invalid UTF-8). */
export function rawBytes(header: Uint8Array, data: ArrayLike<number> = [], length?: bigint) {
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

/** Runs fn and returns the CheckpointError it throws (failing if it throws anything else). */
export function catchCheckpointError(fn: () => unknown): CheckpointError {
  try {
    fn();
  } catch (error) {
    if (error instanceof CheckpointError) return error;
    throw new Error(`expected a CheckpointError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a CheckpointError, nothing was thrown');
}

export async function catchCheckpointErrorAsync(
  fn: () => Promise<unknown>,
): Promise<CheckpointError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof CheckpointError) return error;
    throw new Error(`expected a CheckpointError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a CheckpointError, nothing was thrown');
}

/** Asserts fn throws a CheckpointError with `code` whose message matches every pattern. */
export function expectRejected(
  fn: () => unknown,
  code: CheckpointErrorCode,
  ...patterns: (string | RegExp)[]
): CheckpointError {
  const error = catchCheckpointError(fn);
  expect(error.code).toBe(code);
  expect(error.name).toBe('CheckpointError');
  for (const p of patterns) expect(error.message).toMatch(p);
  return error;
}

export interface TinyDiTConfig {
  imageSize: number;
  channels: number;
  patchSize: number;
  hidden: number;
  depth: number;
  mlpRatio: number;
  numClasses: number;
  freqDim: number;
}

export const TINY_DIT: TinyDiTConfig = {
  imageSize: 8,
  channels: 3,
  patchSize: 2,
  hidden: 8,
  depth: 2,
  mlpRatio: 2,
  numClasses: 4,
  freqDim: 16,
};

/** Parameter names and shapes of a small DiT, following the networks' naming convention. */
export function tinyDiTShapes(c: TinyDiTConfig = TINY_DIT): Record<string, number[]> {
  const h = c.hidden;
  const p = c.patchSize;
  const tokens = (c.imageSize / p) ** 2;
  const mlp = h * c.mlpRatio;
  const out = p * p * c.channels;
  const shapes: Record<string, number[]> = {
    'patch_embed.weight': [h, c.channels, p, p],
    'patch_embed.bias': [h],
    pos_embed: [1, tokens, h],
    't_embedder.mlp.0.weight': [h, c.freqDim],
    't_embedder.mlp.0.bias': [h],
    't_embedder.mlp.2.weight': [h, h],
    't_embedder.mlp.2.bias': [h],
    'y_embedder.embedding_table': [c.numClasses + 1, h],
    't_block.1.weight': [6 * h, h],
    't_block.1.bias': [6 * h],
  };
  for (let i = 0; i < c.depth; i++) {
    shapes[`blocks.${i}.scale_shift_table`] = [6, h];
    shapes[`blocks.${i}.attn.qkv.weight`] = [3 * h, h];
    shapes[`blocks.${i}.attn.qkv.bias`] = [3 * h];
    shapes[`blocks.${i}.attn.proj.weight`] = [h, h];
    shapes[`blocks.${i}.attn.proj.bias`] = [h];
    shapes[`blocks.${i}.mlp.fc1.weight`] = [mlp, h];
    shapes[`blocks.${i}.mlp.fc1.bias`] = [mlp];
    shapes[`blocks.${i}.mlp.fc2.weight`] = [h, mlp];
    shapes[`blocks.${i}.mlp.fc2.bias`] = [h];
  }
  shapes['final_layer.scale_shift_table'] = [2, h];
  shapes['final_layer.linear.weight'] = [out, h];
  shapes['final_layer.linear.bias'] = [out];
  return shapes;
}

/** Random (seeded) parameters with the given shapes. */
export function randomParams(
  shapes: Record<string, number[]>,
  seed = 1,
): Record<string, { shape: number[]; data: Float32Array }> {
  const random = rng(seed);
  const params: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of Object.entries(shapes))
    params[name] = {
      shape,
      data: randomFloats(
        shape.reduce((a, b) => a * b, 1),
        random,
      ),
    };
  return params;
}
