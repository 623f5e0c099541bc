import { describe, expect, it } from 'vitest';
import {
  CheckpointError,
  type DecodedSafetensors,
  decodeSafetensors,
  encodeSafetensors,
  loadCheckpoint,
  saveCheckpoint,
} from '../../src/checkpoint/index.js';
import { bytesOf, randomParams, rng, tinyDiTShapes } from './helpers.js';

/** Decodes, returning the CheckpointError instead of throwing it; anything else propagates. */
function attempt<T>(fn: () => T): T | CheckpointError {
  try {
    return fn();
  } catch (error) {
    if (error instanceof CheckpointError) return error;
    throw error;
  }
}

const hex = (d: ArrayBufferView) => Buffer.from(bytesOf(d)).toString('hex');
/** Everything but the names: dtype, shape and bytes of each tensor, as a sorted list. */
const contents = (d: DecodedSafetensors) =>
  Object.values(d.tensors)
    .map((t) => `${t.dtype}${JSON.stringify(t.shape)}${hex(t.data)}`)
    .sort();
const bitsDiffering = (a: DecodedSafetensors, b: DecodedSafetensors) => {
  let n = 0;
  for (const [name, t] of Object.entries(a.tensors)) {
    const x = bytesOf(t.data);
    const y = bytesOf(b.tensors[name]!.data);
    for (let i = 0; i < x.length; i++) for (let v = x[i]! ^ y[i]!; v; v &= v - 1) n++;
  }
  return n;
};

describe('fuzz: truncations and bit flips', () => {
  const original = encodeSafetensors(
    {
      'blocks.0.attn.qkv.weight': {
        dtype: 'F32',
        shape: [3, 4],
        data: Float32Array.from({ length: 12 }, (_, i) => i - 5.5),
      },
      half: { dtype: 'F16', shape: [5], data: Uint16Array.of(1, 2, 3, 4, 5) },
      mask: { dtype: 'BOOL', shape: [2, 3], data: Uint8Array.of(1, 0, 1, 1, 0, 0) },
      big: { dtype: 'I64', shape: [2], data: BigInt64Array.of(-1n, 123456789012345n) },
      scalar: { dtype: 'F64', shape: [], data: Float64Array.of(Math.E) },
      empty: { dtype: 'U8', shape: [0], data: new Uint8Array(0) },
    },
    { archipelago: '{"a":1}', note: 'fuzz' },
  );
  const decoded = decodeSafetensors(original);
  const dataStart = 8 + Number(new DataView(original.buffer).getBigUint64(0, true));

  it('200 random truncations and bit flips either throw CheckpointError or decode consistently', () => {
    const random = rng(2024);
    const outcomes = { truncationRejected: 0, flipRejected: 0, flipDecoded: 0 };
    for (let trial = 0; trial < 200; trial++) {
      if (trial % 2 === 0) {
        // Truncation: every strict prefix is refused (the data region must be covered exactly).
        const cut = Math.floor(random() * original.length);
        const result = attempt(() => decodeSafetensors(original.slice(0, cut)));
        expect(result, `prefix of ${cut} bytes`).toBeInstanceOf(CheckpointError);
        outcomes.truncationRejected++;
        continue;
      }
      // Bit flip: half of them in the 8 + header bytes, half in the data region.
      const pos =
        trial % 4 === 1
          ? Math.floor(random() * dataStart)
          : dataStart + Math.floor(random() * (original.length - dataStart));
      const bit = Math.floor(random() * 8);
      const mutated = original.slice();
      mutated[pos]! ^= 1 << bit;
      const result = attempt(() => decodeSafetensors(mutated));
      if (result instanceof CheckpointError) {
        expect(result.message.startsWith(`${result.code}: `)).toBe(true);
        outcomes.flipRejected++;
        continue;
      }
      outcomes.flipDecoded++;
      if (pos >= dataStart) {
        // Same tensors, one bit different: safetensors has no checksum (checkpointSha256 is the guard).
        expect(Object.keys(result.tensors)).toEqual(Object.keys(decoded.tensors));
        expect({ ...result.metadata }).toEqual({ ...decoded.metadata });
        expect(bitsDiffering(decoded, result), `flip at ${pos}`).toBe(1);
      } else {
        // A header flip that still parses can only have renamed a tensor or changed metadata text.
        expect(contents(result), `flip at ${pos}`).toEqual(contents(decoded));
      }
    }
    expect(outcomes.truncationRejected).toBe(100);
    expect(outcomes.flipRejected).toBeGreaterThan(0);
    expect(outcomes.flipDecoded).toBeGreaterThan(0);
  });

  it('header edits (numbers, structure, lengths) either throw CheckpointError or decode consistently', () => {
    const random = rng(7);
    const text = new TextDecoder().decode(original.subarray(8, dataStart));
    const data = original.subarray(dataStart);
    const numbers = [...text.matchAll(/\d+/g)];
    const replacements = [
      '0',
      '1',
      '-1',
      '1.5',
      '1e999',
      '9007199254740993',
      '18446744073709551616',
      '"1"',
      'null',
      '[]',
      '{}',
      '999',
    ];
    let rejected = 0;
    for (let trial = 0; trial < 200; trial++) {
      let header: string;
      if (trial % 2 === 0) {
        const m = numbers[Math.floor(random() * numbers.length)]!;
        const r = replacements[Math.floor(random() * replacements.length)]!;
        header = text.slice(0, m.index) + r + text.slice(m.index! + m[0].length);
      } else {
        // Delete or duplicate a random slice of the header.
        const a = Math.floor(random() * text.length);
        const b = a + Math.floor(random() * 12);
        header =
          random() < 0.5 ? text.slice(0, a) + text.slice(b) : text.slice(0, b) + text.slice(a);
      }
      const h = new TextEncoder().encode(header);
      const file = new Uint8Array(8 + h.length + data.length);
      new DataView(file.buffer).setBigUint64(0, BigInt(h.length), true);
      file.set(h, 8);
      file.set(data, 8 + h.length);
      const result = attempt(() => decodeSafetensors(file));
      if (result instanceof CheckpointError) rejected++;
      else {
        // Whatever still parses covers the data region exactly and re-encodes to itself.
        const total = Object.values(result.tensors).reduce((n, t) => n + t.data.byteLength, 0);
        expect(total).toBe(data.length);
        const again = decodeSafetensors(encodeSafetensors(result.tensors, result.metadata));
        expect(contents(again)).toEqual(contents(result));
        expect(Object.keys(again.tensors).sort()).toEqual(Object.keys(result.tensors).sort());
      }
    }
    expect(rejected).toBeGreaterThan(100);
  });

  it('loadCheckpoint on 200 mutated checkpoints: CheckpointError, or the same names and shapes', async () => {
    const shapes = tinyDiTShapes({
      imageSize: 4,
      channels: 1,
      patchSize: 2,
      hidden: 4,
      depth: 1,
      mlpRatio: 1,
      numClasses: 2,
      freqDim: 4,
    });
    const params = randomParams(shapes, 9);
    const checkpoint = await saveCheckpoint({
      params,
      meta: {
        kind: 'expert',
        architecture: { hidden: 4 },
        objective: 'fm',
        step: 3,
        createdAt: '2025-01-01T00:00:00Z',
      },
    });
    const base = loadCheckpoint(checkpoint, { paramShapes: shapes });
    const random = rng(99);
    const codes = new Set<string>();
    for (let trial = 0; trial < 200; trial++) {
      const mutated = checkpoint.slice(
        0,
        trial % 5 === 0 ? Math.floor(random() * checkpoint.length) : checkpoint.length,
      );
      if (trial % 5 !== 0)
        mutated[Math.floor(random() * mutated.length)]! ^= 1 << Math.floor(random() * 8);
      const result = attempt(() =>
        loadCheckpoint(mutated, { paramShapes: shapes, architecture: { hidden: 4 } }),
      );
      if (result instanceof CheckpointError) {
        codes.add(result.code);
        continue;
      }
      expect(Object.keys(result.params).sort()).toEqual(Object.keys(base.params).sort());
      for (const [name, p] of Object.entries(result.params)) {
        expect(p.shape).toEqual(base.params[name]!.shape);
        for (const x of p.data) expect(Number.isFinite(x)).toBe(true);
      }
    }
    expect(codes.has('not_safetensors')).toBe(true);
  });
});
