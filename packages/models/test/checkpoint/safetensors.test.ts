import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  bf16ToFloat32,
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  f16ToFloat32,
  float32ToBf16,
  float32ToF16,
  SAFETENSORS_DTYPES,
  type SafetensorsTensorInput,
  safetensorsDtypeSize,
} from '../../src/checkpoint/index.js';
import { bytesOf, expectRejected, rawBytes, rawFile } from './helpers.js';

const f32 = (...bits: number[]) => new Float32Array(Uint32Array.from(bits).buffer);
const f64 = (...bits: bigint[]) => new Float64Array(BigUint64Array.from(bits).buffer);
const header = (file: Uint8Array) => {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { n, text: new TextDecoder().decode(file.subarray(8, 8 + n)) };
};

/** One tensor of every dtype, with edge values (NaN payloads, -0, extremes). */
const everyDtype = (): Record<string, SafetensorsTensorInput> => ({
  f32: {
    dtype: 'F32',
    shape: [2, 3],
    data: f32(0x3f800000, 0x80000000, 0x7fc00001, 0xffa00005, 0x7f800000, 1),
  },
  f64: {
    dtype: 'F64',
    shape: [3],
    data: f64(0x8000000000000000n, 0x7ff8000000000123n, 0x3ff0000000000000n),
  },
  f16: { dtype: 'F16', shape: [4], data: Uint16Array.of(0x3c00, 0x8000, 0x7e01, 0x0001) },
  bf16: { dtype: 'BF16', shape: [3], data: Uint16Array.of(0x3f80, 0xc049, 0x7fc1) },
  i64: { dtype: 'I64', shape: [3], data: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n, -1n) },
  u64: { dtype: 'U64', shape: [2], data: BigUint64Array.of(0n, 2n ** 64n - 1n) },
  i32: { dtype: 'I32', shape: [3], data: Int32Array.of(-(2 ** 31), 2 ** 31 - 1, -7) },
  u32: { dtype: 'U32', shape: [2], data: Uint32Array.of(0, 2 ** 32 - 1) },
  i16: { dtype: 'I16', shape: [2], data: Int16Array.of(-32768, 32767) },
  u16: { dtype: 'U16', shape: [2], data: Uint16Array.of(0, 65535) },
  i8: { dtype: 'I8', shape: [3], data: Int8Array.of(-128, 127, 0) },
  u8: { dtype: 'U8', shape: [3], data: Uint8Array.of(0, 255, 7) },
  bool: { dtype: 'BOOL', shape: [2, 2], data: Uint8Array.of(1, 0, 0, 1) },
  scalar: { dtype: 'F32', shape: [], data: Float32Array.of(2.5) },
  empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
});

describe('encodeSafetensors / decodeSafetensors', () => {
  it('round-trips every dtype bit-exactly (NaN payloads, -0, extremes, scalars, empty)', () => {
    const input = everyDtype();
    expect(new Set(Object.values(input).map((t) => t.dtype))).toEqual(new Set(SAFETENSORS_DTYPES));
    const { tensors, metadata } = decodeSafetensors(encodeSafetensors(input));
    expect(Object.keys(metadata)).toEqual([]);
    expect(Object.keys(tensors).sort()).toEqual(Object.keys(input).sort());
    for (const [name, t] of Object.entries(input)) {
      const out = tensors[name]!;
      expect(out.dtype, name).toBe(t.dtype);
      expect(out.shape, name).toEqual(t.shape);
      expect(out.data.constructor, name).toBe(t.data.constructor);
      expect(bytesOf(out.data), name).toEqual(bytesOf(t.data));
    }
    expect(Object.is(tensors.f32!.data[1], -0)).toBe(true);
    expect(tensors.i64!.data[0]).toBe(-(2n ** 63n));
  });

  it('returns fresh, aligned copies that do not alias the input', () => {
    const file = encodeSafetensors({
      a: { dtype: 'U8', shape: [3], data: Uint8Array.of(1, 2, 3) },
      b: { dtype: 'F64', shape: [1], data: Float64Array.of(Math.PI) },
    });
    // Decode from an odd offset inside a larger buffer.
    const host = new Uint8Array(file.length + 3);
    host.set(file, 3);
    const view = host.subarray(3);
    const { tensors } = decodeSafetensors(view);
    for (const t of Object.values(tensors)) {
      expect(t.data.byteOffset).toBe(0);
      expect(t.data.buffer.byteLength).toBe(t.data.byteLength);
      expect(t.data.buffer).not.toBe(host.buffer);
    }
    expect(tensors.b!.data[0]).toBe(Math.PI);
    host.fill(0);
    expect(Array.from(tensors.a!.data as Uint8Array)).toEqual([1, 2, 3]);
  });

  it('is deterministic: same bytes for the same input in any key order, and for a re-encode', () => {
    const input = everyDtype();
    const reversed = Object.fromEntries(Object.entries(input).reverse());
    const meta = { z: '1', a: '2', é: '3' };
    const a = encodeSafetensors(input, meta);
    expect(encodeSafetensors(input, meta)).toEqual(a);
    expect(encodeSafetensors(reversed, { é: '3', a: '2', z: '1' })).toEqual(a);
    const decoded = decodeSafetensors(a);
    expect({ ...decoded.metadata }).toEqual(meta);
    expect(encodeSafetensors(decoded.tensors, decoded.metadata)).toEqual(a);
  });

  it('lays tensors out by decreasing alignment, then name, each aligned to its element size', () => {
    const file = encodeSafetensors(everyDtype());
    const parsed = JSON.parse(header(file).text) as Record<
      string,
      { dtype: string; data_offsets: number[] }
    >;
    const names = Object.keys(parsed);
    expect(names).toEqual([
      'u64',
      'i64',
      'f64',
      'empty',
      'f32',
      'scalar',
      'u32',
      'i32',
      'bf16',
      'f16',
      'u16',
      'i16',
      'i8',
      'u8',
      'bool',
    ]);
    const start = 8 + header(file).n;
    for (const name of names) {
      const { dtype, data_offsets } = parsed[name]!;
      expect((start + data_offsets[0]!) % safetensorsDtypeSize(dtype as 'F32'), name).toBe(0);
    }
  });

  it('pads the header with spaces to a multiple of 8', () => {
    for (let len = 1; len <= 16; len++) {
      const file = encodeSafetensors({
        ['x'.repeat(len)]: { dtype: 'U8', shape: [1], data: Uint8Array.of(9) },
      });
      const { n, text } = header(file);
      expect(n % 8).toBe(0);
      expect(file.length).toBe(8 + n + 1);
      const json = JSON.stringify({
        ['x'.repeat(len)]: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
      });
      expect(text).toBe(json + ' '.repeat(n - json.length));
      expect(n - json.length).toBeLessThan(8);
    }
  });

  it('writes empty metadata as no __metadata__ and an empty file as {} plus padding', () => {
    expect(Array.from(encodeSafetensors({}, {}))).toEqual([
      8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32,
    ]);
    expect(decodeSafetensors(encodeSafetensors({})).tensors).toEqual({});
  });

  it('keeps any name, even __proto__, as a plain key without touching prototypes', () => {
    const file = rawFile('{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', [5]);
    const { tensors } = decodeSafetensors(file);
    expect(Object.keys(tensors)).toEqual(['__proto__']);
    expect(Object.getOwnPropertyDescriptor(tensors, '__proto__')?.value).toMatchObject({
      dtype: 'U8',
      shape: [1],
    });
    expect(({} as Record<string, unknown>).dtype).toBeUndefined();
    expect(encodeSafetensors(tensors)).toEqual(file);
  });
});

describe('compatibility with the reference implementation', () => {
  it('matches the reference test vectors byte for byte', () => {
    // huggingface/safetensors, safetensors/src/tensor.rs: test_serialization,
    // test_serialization_forced_alignement, test_empty.
    const data = Float32Array.of(0, 1, 2, 3, 4, 5);
    expect(
      Array.from(encodeSafetensors({ 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data } })),
    ).toEqual([
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121,
      112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50,
      44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48,
      44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64,
      0, 0, 160, 64,
    ]);
    expect(
      Array.from(encodeSafetensors({ attn0: { dtype: 'F32', shape: [1, 1, 2, 3], data } })),
    ).toEqual([
      72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112,
      101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44,
      50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91,
      48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0,
      64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ]);
    expect(Array.from(encodeSafetensors({}, { framework: 'pt' }))).toEqual([
      40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58,
      123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32,
      32, 32, 32, 32,
    ]);
  });

  it('reads a file written by the reference implementation and re-encodes it byte for byte', () => {
    // fixtures/reference.safetensors: written by safetensors 0.8.0 (fixtures/make_reference.py).
    const file = new Uint8Array(
      readFileSync(new URL('./fixtures/reference.safetensors', import.meta.url)),
    );
    const { tensors, metadata } = decodeSafetensors(file);
    expect({ ...metadata }).toEqual({ 'archipelago.note': 'héllo ✓', format: 'pt' });
    expect(Object.keys(tensors)).toEqual([
      'u64',
      'i64',
      'f64',
      'empty',
      'f32',
      'scalar',
      'u32',
      'i32',
      'bf16',
      'f16',
      'u16',
      'i16',
      'i8',
      'näme "q"\t',
      'u8',
      'bool',
    ]);
    const t = tensors;
    const bits32 = (a: ArrayBufferView) =>
      Array.from(new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4));
    expect(t.f32!.shape).toEqual([2, 3]);
    expect(bits32(t.f32!.data)).toEqual([
      0x3f800000, 0x80000000, 0x7fc00001, 0x7f800000, 0xff800000, 1,
    ]);
    expect(Array.from(new BigUint64Array((t.f64!.data as Float64Array).buffer))).toEqual([
      0x8000000000000000n,
      0x7e37e43c8800759cn,
      0x7ff8000000000123n,
    ]);
    expect(t.f64!.data[1]).toBe(1e300);
    expect(t.f16!.dtype).toBe('F16');
    expect(Array.from(f16ToFloat32(t.f16!.data as Uint16Array))).toEqual([1, -0, 65504, 2 ** -24]);
    expect(Array.from(bf16ToFloat32(t.bf16!.data as Uint16Array))).toEqual([
      1,
      -3.140625,
      Number.NaN,
    ]);
    expect(Array.from(t.i64!.data as BigInt64Array)).toEqual([-(2n ** 63n), 2n ** 63n - 1n, -1n]);
    expect(Array.from(t.u64!.data as BigUint64Array)).toEqual([0n, 2n ** 64n - 1n]);
    expect(Array.from(t.i32!.data as Int32Array)).toEqual([-(2 ** 31), 2 ** 31 - 1, -7]);
    expect(Array.from(t.u32!.data as Uint32Array)).toEqual([0, 2 ** 32 - 1]);
    expect(Array.from(t.i16!.data as Int16Array)).toEqual([-32768, 32767]);
    expect(Array.from(t.u16!.data as Uint16Array)).toEqual([0, 65535]);
    expect(Array.from(t.i8!.data as Int8Array)).toEqual([-128, 127, 0]);
    expect(Array.from(t.u8!.data as Uint8Array)).toEqual([0, 255, 7]);
    expect(t.bool).toMatchObject({ dtype: 'BOOL', shape: [2, 2] });
    expect(Array.from(t.bool!.data as Uint8Array)).toEqual([1, 0, 0, 1]);
    expect(t.scalar).toMatchObject({ dtype: 'F32', shape: [] });
    expect(Array.from(t.scalar!.data as Float32Array)).toEqual([2.5]);
    expect(t.empty).toMatchObject({ dtype: 'F32', shape: [0, 4] });
    expect(t.empty!.data.length).toBe(0);
    expect(Array.from(t['näme "q"\t']!.data as Uint8Array)).toEqual([1]);

    expect(encodeSafetensors(tensors, metadata)).toEqual(file);
  });
});

describe('half-precision helpers', () => {
  const allBits = Uint16Array.from({ length: 65536 }, (_, i) => i);

  it('F16: every non-NaN pattern survives f16 -> f32 -> f16, NaN stays NaN', () => {
    const wide = f16ToFloat32(allBits);
    const back = float32ToF16(wide);
    for (let i = 0; i < 65536; i++) {
      const nanBits = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (nanBits) {
        expect(Number.isNaN(wide[i])).toBe(true);
        expect((back[i]! & 0x7c00) === 0x7c00 && (back[i]! & 0x3ff) !== 0).toBe(true);
      } else if (back[i] !== i) {
        expect.fail(`f16 0x${i.toString(16)} -> ${wide[i]} -> 0x${back[i]!.toString(16)}`);
      }
    }
    expect(wide[0x3c00]).toBe(1);
    expect(wide[0xc000]).toBe(-2);
    expect(wide[0x7bff]).toBe(65504);
    expect(wide[0x0400]).toBe(2 ** -14);
    expect(wide[0x03ff]).toBe(1023 * 2 ** -24);
    expect(wide[0x7c00]).toBe(Number.POSITIVE_INFINITY);
    expect(Object.is(wide[0x8000], -0)).toBe(true);
  });

  it('F16: rounds to nearest, ties to even, overflows to infinity', () => {
    const cases: [number, number][] = [
      [0.1, 0x2e66],
      [65519, 0x7bff],
      [65520, 0x7c00], // tie between 65504 and 2^16 goes to even: infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: even is 0
      [3 * 2 ** -25, 0x0002],
      [2 ** -25 + 2 ** -40, 0x0001],
      [1023.5 * 2 ** -24, 0x0400], // subnormal rounds up into the smallest normal
      [1 + 2 ** -11, 0x3c00], // tie, even
      [1 + 3 * 2 ** -11, 0x3c02], // tie, even
      [1e-10, 0x0000],
      [-1e-10, 0x8000],
      [Number.NEGATIVE_INFINITY, 0xfc00],
    ];
    const got = float32ToF16(Float32Array.from(cases, ([x]) => x));
    cases.forEach(([x, bits], i) => {
      expect(got[i], `${x}`).toBe(bits);
    });
  });

  it('BF16: exact widening, round-to-nearest-even narrowing, NaN kept', () => {
    const wide = bf16ToFloat32(allBits);
    const back = float32ToBf16(wide);
    for (let i = 0; i < 65536; i++) {
      if (Number.isNaN(wide[i]))
        expect(Number.isNaN(bf16ToFloat32(back.subarray(i, i + 1))[0])).toBe(true);
      else if (back[i] !== i) expect.fail(`bf16 0x${i.toString(16)} -> 0x${back[i]!.toString(16)}`);
    }
    const got = float32ToBf16(
      f32(0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0x7f800001, 0xff800000),
    );
    expect(Array.from(got)).toEqual([0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x7fc0, 0xff80]);
  });
});

describe('decodeSafetensors rejects', () => {
  const good = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } };
  const four = [0, 0, 128, 63];

  it('a file shorter than 8 bytes', () => {
    for (let n = 0; n < 8; n++)
      expectRejected(() => decodeSafetensors(new Uint8Array(n)), 'file_too_short', `${n} bytes`);
  });

  it('a header length past the end of the file or past maxHeaderBytes', () => {
    expectRejected(
      () => decodeSafetensors(rawFile(good, four, { length: 1000n })),
      'header_out_of_bounds',
      /1000/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile(good, [], { length: 2n ** 64n - 1n })),
      'header_too_large',
      /18446744073709551615/,
    );
    const ok = rawFile(good, four);
    expect(() => decodeSafetensors(ok, { maxHeaderBytes: header(ok).n })).not.toThrow();
    expectRejected(
      () => decodeSafetensors(ok, { maxHeaderBytes: header(ok).n - 1 }),
      'header_too_large',
      /limit/,
    );
    expect(() => decodeSafetensors(ok, { maxHeaderBytes: -1 })).toThrow(RangeError);
  });

  it('a header that is not UTF-8, not JSON, or not an object', () => {
    expectRejected(
      () => decodeSafetensors(rawBytes(Uint8Array.of(0x7b, 0xff, 0x7d, 32, 32, 32, 32, 32))),
      'invalid_utf8',
      /UTF-8/,
    );
    expectRejected(() => decodeSafetensors(rawFile('{"a":')), 'invalid_json', /JSON/);
    expectRejected(() => decodeSafetensors(rawFile('{}\0', [], { pad: false })), 'invalid_json');
    expectRejected(() => decodeSafetensors(rawFile('')), 'invalid_json');
    expectRejected(() => decodeSafetensors(rawFile('[1,2]')), 'header_not_object', /array/);
    expectRejected(() => decodeSafetensors(rawFile('"x"')), 'header_not_object', /string/);
    expectRejected(() => decodeSafetensors(rawFile('null')), 'header_not_object', /null/);
    expectRejected(() => decodeSafetensors(rawFile('  {}')), 'header_not_object', /start with/);
    expectRejected(
      () => decodeSafetensors(rawBytes(Uint8Array.of(0xef, 0xbb, 0xbf, 0x7b, 0x7d, 32, 32, 32))),
      'invalid_json',
    );
  });

  it('__metadata__ that is not a map of strings', () => {
    expectRejected(
      () => decodeSafetensors(rawFile({ __metadata__: { a: 1 } })),
      'invalid_metadata',
      /"a"/,
      /number/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile({ __metadata__: { b: null } })),
      'invalid_metadata',
      /"b"/,
      /null/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile({ __metadata__: { c: {} } })),
      'invalid_metadata',
      /"c"/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile({ __metadata__: ['x'] })),
      'invalid_metadata',
      /__metadata__/,
    );
    expectRejected(() => decodeSafetensors(rawFile({ __metadata__: 'x' })), 'invalid_metadata');
  });

  it('malformed tensor entries', () => {
    const e = expectRejected(
      () => decodeSafetensors(rawFile({ w: [1] })),
      'invalid_tensor_entry',
      /"w"/,
      /not a JSON object/,
    );
    expect(e.tensor).toBe('w');
    expectRejected(() => decodeSafetensors(rawFile({ w: 3 })), 'invalid_tensor_entry', /"w"/);
    expectRejected(
      () => decodeSafetensors(rawFile({ w: { shape: [1], data_offsets: [0, 4] } }, four)),
      'invalid_tensor_entry',
      /missing field "dtype"/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile({ w: { dtype: 'F32', shape: [1] } }, four)),
      'invalid_tensor_entry',
      /missing field "data_offsets"/,
    );
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4], extra: 1 } }, four),
        ),
      'invalid_tensor_entry',
      /unknown field "extra"/,
    );
  });

  it('an unknown dtype', () => {
    for (const dtype of ['F8_E4M3', 'f32', 'C64', 'float32', 7, null]) {
      const e = expectRejected(
        () => decodeSafetensors(rawFile({ w: { dtype, shape: [1], data_offsets: [0, 1] } }, [0])),
        'unknown_dtype',
        /"w"/,
        JSON.stringify(dtype),
      );
      expect(e.tensor).toBe('w');
    }
  });

  it('a shape with negative, fractional, huge or non-number dims', () => {
    for (const shape of [
      '[-1]',
      '[1.5]',
      '["2"]',
      '[null]',
      '[9007199254740992]',
      '[1e400]',
      '[1,-0.5]',
    ])
      expectRejected(
        () =>
          decodeSafetensors(
            rawFile(`{"w":{"dtype":"U8","shape":${shape},"data_offsets":[0,1]}}`, [0]),
          ),
        'invalid_shape',
        /"w"/,
        /shape\[\d\] is/,
      );
    expectRejected(
      () => decodeSafetensors(rawFile({ w: { dtype: 'U8', shape: 1, data_offsets: [0, 1] } }, [0])),
      'invalid_shape',
      /not an array/,
    );
  });

  it('data_offsets that are not [begin, end] integers', () => {
    for (const offsets of [[0], [0, 4, 8], ['0', 4], [-4, 0], [0, 1.5], null, { 0: 0, 1: 4 }])
      expectRejected(
        () =>
          decodeSafetensors(
            rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: offsets } }, four),
          ),
        'invalid_offsets',
        /"w"/,
        /data_offsets/,
      );
    expectRejected(
      () =>
        decodeSafetensors(rawFile({ w: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, four)),
      'invalid_offsets',
      /ends before it begins/,
    );
  });

  it('a byte length that is not product(shape) * dtype size', () => {
    expectRejected(
      () =>
        decodeSafetensors(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, four)),
      'byte_length_mismatch',
      /"w"/,
      /hold 4 bytes/,
      /needs 8/,
    );
    // A 2^52 x 2^52 x 0 shape is empty; 2^52 x 2^52 is not.
    const big = 2 ** 52;
    expect(() =>
      decodeSafetensors(
        rawFile({ w: { dtype: 'F32', shape: [big, big, 0], data_offsets: [0, 0] } }),
      ),
    ).not.toThrow();
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile({ w: { dtype: 'F32', shape: [big, big], data_offsets: [0, 4] } }, four),
        ),
      'byte_length_mismatch',
      /needs more than 2\^53/,
    );
  });

  it('a hostile header (200k huge dims, 50k tensors) in linear time, with short messages', () => {
    const dims = new Array(200_000).fill(2 ** 52).join(',');
    const start = performance.now();
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile(
            `{"w":{"dtype":"F64","shape":[${dims}],"data_offsets":[0,8]}}`,
            new Array(8).fill(0),
          ),
        ),
      'byte_length_mismatch',
      /shape \[4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, 4503599627370496, \.\.\. \(200000 dims\)\]/,
      /needs more than 2\^53/,
    );
    const longName = 'n'.repeat(100_000);
    const e = expectRejected(
      () =>
        decodeSafetensors(
          rawFile(
            { [longName]: { dtype: 'F32', shape: [1], data_offsets: [0, 5] } },
            [1, 2, 3, 4, 5],
          ),
        ),
      'byte_length_mismatch',
    );
    expect(e.message.length).toBeLessThan(500);
    const many = Array.from(
      { length: 50_000 },
      (_, i) => `"t${i}":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`,
    );
    expectRejected(
      () => decodeSafetensors(rawFile(`{${many.join(',')}}`, new Uint8Array(49_999))),
      'offset_out_of_bounds',
      /"t49999"/,
    );
    expect(performance.now() - start).toBeLessThan(5000);
  });

  it('offsets past the end of the data', () => {
    const e = expectRejected(
      () =>
        decodeSafetensors(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, four)),
      'offset_out_of_bounds',
      /"w"/,
      /4-byte data region/,
    );
    expect(e.tensor).toBe('w');
  });

  it('overlapping tensors', () => {
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile(
            {
              a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
              b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
            },
            new Array(12).fill(0),
          ),
        ),
      'overlapping_tensors',
      /"b"/,
      /"a"/,
    );
    // Two tensors on the same bytes.
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile(
            {
              a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
              b: { dtype: 'I32', shape: [1], data_offsets: [0, 4] },
            },
            four,
          ),
        ),
      'overlapping_tensors',
    );
  });

  it('holes in the data region', () => {
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile(
            {
              a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
              b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
            },
            new Array(12).fill(0),
          ),
        ),
      'data_hole',
      /\[4, 8\)/,
      /"b"/,
    );
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Array(8).fill(0)),
        ),
      'data_hole',
      /\[0, 4\)/,
    );
  });

  it('trailing bytes after the data', () => {
    expectRejected(
      () => decodeSafetensors(rawFile(good, [...four, 0])),
      'trailing_bytes',
      /1 bytes after/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile({}, [1, 2, 3])),
      'trailing_bytes',
      /3 bytes after/,
    );
    expectRejected(
      () => decodeSafetensors(rawFile({ __metadata__: { a: 'b' } }, [1])),
      'trailing_bytes',
    );
  });

  it('BOOL bytes other than 0 and 1', () => {
    expectRejected(
      () =>
        decodeSafetensors(
          rawFile({ m: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] } }, [1, 0, 2]),
        ),
      'invalid_bool',
      /"m"/,
      /element 2 is 2/,
    );
  });

  it('but accepts an unpadded header, and headers in any key order', () => {
    expect(decodeSafetensors(rawFile(good, four, { pad: false })).tensors.a!.data[0]).toBe(1);
    const h =
      '{"b":{"data_offsets":[4,5],"shape":[],"dtype":"U8"},"__metadata__":{"k":"v"},"a":{"shape":[1],"data_offsets":[0,4],"dtype":"F32"}}';
    const { tensors, metadata } = decodeSafetensors(rawFile(h, [...four, 9]));
    expect(Object.keys(tensors)).toEqual(['a', 'b']);
    expect({ ...metadata }).toEqual({ k: 'v' });
  });
});

describe('encodeSafetensors rejects', () => {
  it('data that does not match its dtype or shape, a reserved name, non-string metadata', () => {
    expectRejected(
      () => encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float64Array.of(1, 2) } }),
      'invalid_tensor',
      /"w"/,
      /Float32Array/,
    );
    expectRejected(
      () => encodeSafetensors({ w: { dtype: 'F16', shape: [1], data: Float32Array.of(1) } }),
      'invalid_tensor',
      /Uint16Array/,
    );
    expectRejected(
      () => encodeSafetensors({ w: { dtype: 'F32', shape: [3], data: Float32Array.of(1, 2) } }),
      'invalid_tensor',
      /needs 3 elements, got 2/,
    );
    expectRejected(
      () => encodeSafetensors({ w: { dtype: 'F32', shape: [-2], data: Float32Array.of() } }),
      'invalid_tensor',
      /shape\[0\]/,
    );
    expectRejected(
      () => encodeSafetensors({ w: { dtype: 'X' as 'F32', shape: [], data: Float32Array.of(1) } }),
      'invalid_tensor',
      /unknown dtype "X"/,
    );
    expectRejected(
      () => encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [], data: Uint8Array.of(1) } }),
      'invalid_tensor',
      /reserved/,
    );
    expectRejected(
      () => encodeSafetensors({ b: { dtype: 'BOOL', shape: [1], data: Uint8Array.of(3) } }),
      'invalid_bool',
    );
    expectRejected(
      () => encodeSafetensors({}, { n: 1 as unknown as string }),
      'invalid_metadata',
      /"n"/,
    );
  });

  it('errors are CheckpointErrors with a code, a message and the tensor', () => {
    const e = expectRejected(
      () => encodeSafetensors({ w: { dtype: 'F32', shape: [3], data: Float32Array.of(1) } }),
      'invalid_tensor',
    );
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e).toBeInstanceOf(Error);
    expect(e.tensor).toBe('w');
    expect(e.message.startsWith('invalid_tensor: ')).toBe(true);
  });
});
