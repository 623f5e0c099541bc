import { describe, expect, it } from 'vitest';
import { DatasetImportError } from '../src/errors.js';
import { encodeNpy, parseNpy, readEmbeddings } from '../src/npy.js';

// Written by numpy 2.4 (numpy.lib.format.write_array) for
// np.arange(6, dtype='<f4').reshape(2, 3) / 4, in format versions 1.0, 2.0 and 3.0.
const NUMPY_FILES = {
  v1: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPgAAAD8AAEA/AACAPwAAoD8=',
  v2: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPgAAAD8AAEA/AACAPwAAoD8=',
  v3: 'k05VTVBZAwB0AAAAeydkZXNjcic6ICc8ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPgAAAD8AAEA/AACAPwAAoD8=',
};

/** A v1 `.npy` file with an arbitrary header, for the error cases. */
function npy(descr: string, shape: number[], data: Uint8Array, fortran = false): Uint8Array {
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': ${fortran ? 'True' : 'False'}, 'shape': ${shapeStr}, }`;
  header += `${' '.repeat((64 - ((11 + header.length) % 64)) % 64)}\n`;
  const out = new Uint8Array(10 + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(data, 10 + header.length);
  return out;
}

function errorOf(f: () => unknown): DatasetImportError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(DatasetImportError);
    return err as DatasetImportError;
  }
  throw new Error('expected an error');
}

describe('parseNpy', () => {
  it.each(Object.entries(NUMPY_FILES))('reads a numpy-written %s file', (_, b64) => {
    const arr = parseNpy(Buffer.from(b64, 'base64'));
    expect(arr.dtype).toBe('<f4');
    expect(arr.shape).toEqual([2, 3]);
    expect(arr.fortranOrder).toBe(false);
    const emb = readEmbeddings(Buffer.from(b64, 'base64'), 2);
    expect([...emb.data]).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25]);
    expect([emb.rows, emb.dim]).toEqual([2, 3]);
  });

  it('rejects bad magic and truncated data', () => {
    expect(errorOf(() => parseNpy(new Uint8Array(20), 'x.npy')).message).toMatch(/x\.npy.*magic/);
    const full = encodeNpy(new Float32Array(6), [2, 3]);
    const cut = errorOf(() => parseNpy(full.subarray(0, full.length - 4)));
    expect(cut.code).toBe('bad_npy');
    expect(cut.message).toMatch(/needs 24 data bytes but the file has 20/);
    expect(errorOf(() => parseNpy(npy('V8', [1], new Uint8Array(8)))).code).toBe('bad_npy');
  });
});

describe('encodeNpy / readEmbeddings', () => {
  it('round-trips float32 data exactly, with a 64-byte aligned header', () => {
    const data = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i) * 1e3);
    const bytes = encodeNpy(data, [4, 3]);
    const parsed = parseNpy(bytes);
    expect((bytes.length - parsed.data.length) % 64).toBe(0);
    const emb = readEmbeddings(bytes, 4);
    expect(emb.data).toEqual(data);
    // Unaligned copy of the bytes (odd byteOffset) still reads.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    expect(readEmbeddings(shifted.subarray(1), 4).data).toEqual(data);
  });

  it('names the file and the row mismatch', () => {
    const bytes = encodeNpy(new Float32Array(999 * 2), [999, 2]);
    const err = errorOf(() => readEmbeddings(bytes, 1000));
    expect(err.code).toBe('embeddings_mismatch');
    expect(err.file).toBe('embeddings.npy');
    expect(err.message).toContain('embeddings.npy has 999 rows, dataset has 1000 images');
  });

  it('rejects float64 with a message naming the dtype', () => {
    const err = errorOf(() => readEmbeddings(npy('<f8', [2, 2], new Uint8Array(32)), 2, 'e.npy'));
    expect(err.code).toBe('embeddings_dtype');
    expect(err.message).toMatch(/e\.npy has dtype <f8 \(float64\); need <f4 float32/);
    expect(errorOf(() => readEmbeddings(npy('>f4', [2, 2], new Uint8Array(16)), 2)).code).toBe(
      'embeddings_dtype',
    );
  });

  it('rejects 3-D arrays, Fortran order and non-finite values', () => {
    const threeD = errorOf(() => readEmbeddings(encodeNpy(new Float32Array(8), [2, 2, 2]), 2));
    expect(threeD.code).toBe('embeddings_mismatch');
    expect(threeD.message).toMatch(/shape \(2, 2, 2\).*2-D/);
    const fortran = errorOf(() => readEmbeddings(npy('<f4', [2, 2], new Uint8Array(16), true), 2));
    expect(fortran.code).toBe('bad_npy');
    expect(fortran.message).toMatch(/Fortran/);
    const nan = Float32Array.from([0, 1, 2, Number.NaN]);
    const err = errorOf(() => readEmbeddings(encodeNpy(nan, [2, 2]), 2));
    expect(err.code).toBe('embeddings_nonfinite');
    expect(err.message).toMatch(/row 1, column 1 is NaN/);
    const inf = Float32Array.from([Number.POSITIVE_INFINITY, 1]);
    expect(errorOf(() => readEmbeddings(encodeNpy(inf, [1, 2]), 1)).code).toBe(
      'embeddings_nonfinite',
    );
  });
});
