/**
 * A strict, dependency-free safetensors reader and writer.
 *
 * The format, byte by byte:
 *
 *   bytes [0, 8)        N, the header length: an unsigned 64-bit little-endian integer.
 *   bytes [8, 8 + N)    the header: UTF-8 JSON, one object
 *                         { "__metadata__"?: { "<key>": "<string value>", ... },
 *                           "<tensor name>": { "dtype": "F32", "shape": [2, 3],
 *                                              "data_offsets": [begin, end] }, ... }
 *                       padded at the end with spaces (0x20) so that N is a multiple of 8.
 *                       `data_offsets` count bytes from the start of the data region.
 *   bytes [8 + N, EOF)  the data region: each tensor's elements, row-major (C order),
 *                       little-endian, at [8 + N + begin, 8 + N + end). end - begin equals
 *                       product(shape) * size(dtype) (a scalar has shape [] and one
 *                       element). The tensors cover the data region exactly: no gaps, no
 *                       overlaps, nothing after the last tensor.
 *
 * Writing follows the reference implementation (huggingface/safetensors) byte for byte:
 * compact JSON with the fields in the order dtype, shape, data_offsets, `__metadata__`
 * first, tensors laid out by decreasing dtype alignment (U64, I64, F64, F32, U32, I32,
 * BF16, F16, U16, I16, I8, U8, BOOL) and then by name (UTF-8 byte order), so every tensor
 * starts aligned to its element size. The one choice of ours: `__metadata__` keys are
 * sorted (the reference keeps insertion order) and an empty `__metadata__` is left out,
 * so equal inputs always give identical bytes. A file holding only F32 tensors (every
 * Archipelago checkpoint) is thus laid out by sorted name.
 *
 * Reading is stricter than the reference: besides everything it checks, it refuses
 * a header that does not start with `{`, unknown fields in a tensor entry, and BOOL
 * bytes other than 0 and 1. It never trusts a length before checking it against the
 * buffer, and returns copies, so the input may be reused or freed. The header can be read and
 * checked on its own, from a file's first bytes and its size (`parseSafetensorsHeader`), so a
 * file from an untrusted source is judged before any of its tensor data is read.
 */

import { CheckpointError, fmtShape, q, show } from './errors.js';

/** Element types this module reads and writes (the reference's names). */
export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'U64'
  | 'I32'
  | 'U32'
  | 'I16'
  | 'U16'
  | 'I8'
  | 'U8'
  | 'BOOL';

/**
 * The typed array holding each dtype. F16 and BF16 are kept as their raw bits (use
 * `f16ToFloat32` / `bf16ToFloat32` to widen them); BOOL is one byte per element, 0 or 1.
 */
export interface SafetensorsArrayTypes {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  U64: BigUint64Array;
  I32: Int32Array;
  U32: Uint32Array;
  I16: Int16Array;
  U16: Uint16Array;
  I8: Int8Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}

/** Any of the typed arrays above. */
export type SafetensorsTypedArray = SafetensorsArrayTypes[SafetensorsDtype];

/** A decoded tensor; `dtype` narrows `data`. */
export type SafetensorsTensor = {
  [D in SafetensorsDtype]: { dtype: D; shape: number[]; data: SafetensorsArrayTypes[D] };
}[SafetensorsDtype];

/** A tensor to encode; `data` must be the typed array of `dtype` (checked at run time). */
export interface SafetensorsTensorInput {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: SafetensorsTypedArray;
}

export interface DecodedSafetensors {
  /** In file order. A null-prototype record: any name, even `__proto__`, is a plain key. */
  tensors: Record<string, SafetensorsTensor>;
  /** `__metadata__`, or an empty record. Null-prototype, like `tensors`. */
  metadata: Record<string, string>;
}

export interface DecodeSafetensorsOptions {
  /** The largest header accepted, in bytes. Default 100 MiB. */
  maxHeaderBytes?: number;
}

export const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;

interface DtypeInfo {
  size: number;
  /** The reference's alignment order; larger is laid out first. */
  rank: number;
  /** `Object.prototype.toString` tag of the typed array. */
  tag: string;
  make: (buffer: ArrayBuffer) => SafetensorsTypedArray;
}

const DTYPES: Record<SafetensorsDtype, DtypeInfo> = {
  BOOL: { size: 1, rank: 0, tag: 'Uint8Array', make: (b) => new Uint8Array(b) },
  U8: { size: 1, rank: 1, tag: 'Uint8Array', make: (b) => new Uint8Array(b) },
  I8: { size: 1, rank: 2, tag: 'Int8Array', make: (b) => new Int8Array(b) },
  I16: { size: 2, rank: 5, tag: 'Int16Array', make: (b) => new Int16Array(b) },
  U16: { size: 2, rank: 6, tag: 'Uint16Array', make: (b) => new Uint16Array(b) },
  F16: { size: 2, rank: 7, tag: 'Uint16Array', make: (b) => new Uint16Array(b) },
  BF16: { size: 2, rank: 8, tag: 'Uint16Array', make: (b) => new Uint16Array(b) },
  I32: { size: 4, rank: 9, tag: 'Int32Array', make: (b) => new Int32Array(b) },
  U32: { size: 4, rank: 10, tag: 'Uint32Array', make: (b) => new Uint32Array(b) },
  F32: { size: 4, rank: 11, tag: 'Float32Array', make: (b) => new Float32Array(b) },
  F64: { size: 8, rank: 12, tag: 'Float64Array', make: (b) => new Float64Array(b) },
  I64: { size: 8, rank: 13, tag: 'BigInt64Array', make: (b) => new BigInt64Array(b) },
  U64: { size: 8, rank: 14, tag: 'BigUint64Array', make: (b) => new BigUint64Array(b) },
};

/** Every supported dtype, in the reference's alignment order (smallest first). */
export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = (
  Object.keys(DTYPES) as SafetensorsDtype[]
).sort((a, b) => DTYPES[a].rank - DTYPES[b].rank);

/** Bytes per element of `dtype`. */
export const safetensorsDtypeSize = (dtype: SafetensorsDtype): number => DTYPES[dtype].size;

export const isSafetensorsDtype = (value: unknown): value is SafetensorsDtype =>
  typeof value === 'string' && Object.hasOwn(DTYPES, value);

const METADATA_KEY = '__metadata__';
const TENSOR_FIELDS = ['dtype', 'shape', 'data_offsets'] as const;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf8 = new TextEncoder();

const dict = <T>(): Record<string, T> => Object.create(null) as Record<string, T>;

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Reverses each `size`-byte element in place (only used on big-endian hosts). */
const swapBytes = (bytes: Uint8Array, size: number): void => {
  if (size === 1) return;
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
};

const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
};

const tagOf = (value: unknown): string => Object.prototype.toString.call(value).slice(8, -1);

/**
 * product(shape), or Infinity once it passes 2^53 (no buffer is that large). Stops early
 * so a hostile header with millions of huge dims costs linear time.
 */
const elementCount = (shape: readonly number[]): number => {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return Number.POSITIVE_INFINITY;
  }
  return n;
};

const fmtCount = (n: number) => (Number.isSafeInteger(n) ? String(n) : 'more than 2^53');

const checkBools = (name: string, bytes: Uint8Array): void => {
  const bad = bytes.findIndex((b) => b > 1);
  if (bad >= 0)
    throw new CheckpointError(
      'invalid_bool',
      `tensor ${q(name)}: BOOL element ${bad} is ${bytes[bad]}, not 0 or 1`,
      { tensor: name },
    );
};

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes. Deterministic:
 * equal inputs give identical bytes. Throws CheckpointError('invalid_tensor') when a
 * tensor's data does not match its dtype or shape.
 */
export function encodeSafetensors(
  tensors: Record<string, SafetensorsTensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = Object.keys(tensors).map((name) => {
    const tensor = tensors[name]!;
    const bad = (why: string) =>
      new CheckpointError('invalid_tensor', `tensor ${q(name)}: ${why}`, { tensor: name });
    if (name === METADATA_KEY) throw bad(`the name ${METADATA_KEY} is reserved`);
    if (!isSafetensorsDtype(tensor.dtype)) throw bad(`unknown dtype ${show(tensor.dtype)}`);
    const info = DTYPES[tensor.dtype];
    if (!Array.isArray(tensor.shape)) throw bad('shape is not an array');
    const shape = tensor.shape.map((d, i) => {
      if (!Number.isSafeInteger(d) || d < 0)
        throw bad(`shape[${i}] is ${show(d)}, not a non-negative integer`);
      return d === 0 ? 0 : d; // -0 -> 0
    });
    const data = tensor.data;
    if (!ArrayBuffer.isView(data) || tagOf(data) !== info.tag)
      throw bad(`dtype ${tensor.dtype} needs a ${info.tag}, got ${tagOf(data)}`);
    if (data.length !== elementCount(shape))
      throw bad(
        `shape ${fmtShape(shape)} needs ${fmtCount(elementCount(shape))} elements, got ${data.length}`,
      );
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (tensor.dtype === 'BOOL') checkBools(name, raw);
    return { name, key: utf8.encode(name), dtype: tensor.dtype, info, shape, raw };
  });
  entries.sort((a, b) => b.info.rank - a.info.rank || compareBytes(a.key, b.key));

  const parts: string[] = [];
  const metaKeys = metadata === undefined ? [] : Object.keys(metadata);
  if (metaKeys.length > 0) {
    const fields = metaKeys
      .map((key) => ({ key, bytes: utf8.encode(key) }))
      .sort((a, b) => compareBytes(a.bytes, b.bytes))
      .map(({ key }) => {
        const value = metadata![key];
        if (typeof value !== 'string')
          throw new CheckpointError(
            'invalid_metadata',
            `metadata ${q(key)} is a ${typeof value}, not a string`,
          );
        return `${JSON.stringify(key)}:${JSON.stringify(value)}`;
      });
    parts.push(`"${METADATA_KEY}":{${fields.join(',')}}`);
  }
  let offset = 0;
  for (const e of entries) {
    const end = offset + e.raw.length;
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = utf8.encode(`{${parts.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;

  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let pos = 8 + headerLength;
  for (const e of entries) {
    out.set(e.raw, pos);
    if (!LITTLE_ENDIAN) swapBytes(out.subarray(pos, pos + e.raw.length), e.info.size);
    pos += e.raw.length;
  }
  return out;
}

/** One tensor as the header describes it; its bytes are `[dataStart + begin, dataStart + end)`. */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A checked header: everything about a file but its tensor data. */
export interface SafetensorsHeader {
  /** Where the data region starts: 8 + the header length. */
  dataStart: number;
  /** `__metadata__`, or an empty record (null-prototype). */
  metadata: Record<string, string>;
  /** The tensors in data order; they cover the data region exactly. */
  entries: SafetensorsEntry[];
}

const parseEntry = (name: string, value: unknown): SafetensorsEntry => {
  const fail = (code: 'invalid_tensor_entry' | 'invalid_shape' | 'invalid_offsets', why: string) =>
    new CheckpointError(code, `tensor ${q(name)}: ${why}`, { tensor: name });
  if (!isPlainObject(value)) throw fail('invalid_tensor_entry', 'entry is not a JSON object');
  for (const key of Object.keys(value))
    if (!(TENSOR_FIELDS as readonly string[]).includes(key))
      throw fail('invalid_tensor_entry', `unknown field ${q(key)}`);
  for (const key of TENSOR_FIELDS)
    if (!Object.hasOwn(value, key)) throw fail('invalid_tensor_entry', `missing field ${q(key)}`);

  const { dtype, shape, data_offsets: offsets } = value;
  if (!isSafetensorsDtype(dtype))
    throw new CheckpointError(
      'unknown_dtype',
      `tensor ${q(name)}: unknown dtype ${show(dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`,
      { tensor: name },
    );
  if (!Array.isArray(shape)) throw fail('invalid_shape', 'shape is not an array');
  shape.forEach((d: unknown, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      throw fail('invalid_shape', `shape[${i}] is ${show(d)}, not a non-negative integer`);
  });
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
  )
    throw fail(
      'invalid_offsets',
      `data_offsets ${show(offsets)} is not [begin, end] with non-negative integers`,
    );
  const [begin, end] = offsets as [number, number];
  if (end < begin)
    throw fail('invalid_offsets', `data_offsets [${begin}, ${end}] ends before it begins`);
  const dims = (shape as number[]).map((d) => (d === 0 ? 0 : d));
  const size = DTYPES[dtype].size;
  const needed = elementCount(dims) * size;
  if (needed !== end - begin)
    throw new CheckpointError(
      'byte_length_mismatch',
      `tensor ${q(name)}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ${fmtShape(dims)} of ${dtype} (${size} bytes each) needs ${fmtCount(needed)}`,
      { tensor: name },
    );
  return { name, dtype, shape: dims, begin, end };
};

const checkMaxHeader = (maxHeaderBytes: number) => {
  if (!Number.isSafeInteger(maxHeaderBytes) || maxHeaderBytes < 0)
    throw new RangeError(`maxHeaderBytes must be a non-negative integer, got ${maxHeaderBytes}`);
};

/**
 * The header length of a safetensors file of `fileBytes` bytes, from its first 8 bytes (at
 * least): how much more to read before {@link parseSafetensorsHeader}. Throws CheckpointError
 * ('file_too_short', 'header_too_large', 'header_out_of_bounds').
 */
export function safetensorsHeaderLength(
  first: Uint8Array,
  fileBytes: number,
  options: DecodeSafetensorsOptions = {},
): number {
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  checkMaxHeader(maxHeaderBytes);
  if (fileBytes < 8 || first.length < 8)
    throw new CheckpointError(
      'file_too_short',
      `file is ${fileBytes} bytes, shorter than the 8-byte header length`,
    );
  const n64 = new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(maxHeaderBytes))
    throw new CheckpointError(
      'header_too_large',
      `header length ${n64} exceeds the limit of ${maxHeaderBytes} bytes`,
    );
  if (n64 > BigInt(fileBytes - 8))
    throw new CheckpointError(
      'header_out_of_bounds',
      `header length ${n64} runs past the end of the ${fileBytes}-byte file`,
    );
  return Number(n64);
}

/**
 * Parses and checks the header of a safetensors file of `fileBytes` bytes from its first bytes
 * (`prefix`: at least 8 + the header length, see {@link safetensorsHeaderLength}), so a file can
 * be judged before any of its tensor data is read. Checks everything but the data itself (see the
 * file comment); throws CheckpointError.
 */
export function parseSafetensorsHeader(
  prefix: Uint8Array,
  fileBytes: number,
  options: DecodeSafetensorsOptions = {},
): SafetensorsHeader {
  const headerLength = safetensorsHeaderLength(prefix, fileBytes, options);
  if (prefix.length < 8 + headerLength)
    throw new RangeError(
      `parseSafetensorsHeader needs the first ${8 + headerLength} bytes, got ${prefix.length}`,
    );
  const headerBytes = prefix.subarray(8, 8 + headerLength);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (cause) {
    throw new CheckpointError('invalid_utf8', 'header is not valid UTF-8', { cause });
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (cause) {
    throw new CheckpointError(
      'invalid_json',
      `header is not valid JSON (${cause instanceof Error ? cause.message : String(cause)})`,
      { cause },
    );
  }
  if (!isPlainObject(header)) {
    const got =
      header === null ? 'null' : Array.isArray(header) ? 'an array' : `a ${typeof header}`;
    throw new CheckpointError('header_not_object', `header is ${got}, not a JSON object`);
  }
  if (headerBytes[0] !== 0x7b)
    throw new CheckpointError(
      'header_not_object',
      'header must start with "{" (no leading whitespace or byte order mark)',
    );

  const metadata = dict<string>();
  const entries: SafetensorsEntry[] = [];
  for (const key of Object.keys(header)) {
    const value = header[key];
    if (key === METADATA_KEY) {
      if (!isPlainObject(value))
        throw new CheckpointError('invalid_metadata', `${METADATA_KEY} is not a JSON object`);
      for (const k of Object.keys(value)) {
        const v = value[k];
        if (typeof v !== 'string')
          throw new CheckpointError(
            'invalid_metadata',
            `${METADATA_KEY} value ${q(k)} is ${v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`}, not a string`,
          );
        metadata[k] = v;
      }
    } else {
      entries.push(parseEntry(key, value));
    }
  }

  const dataStart = 8 + headerLength;
  const dataLength = fileBytes - dataStart;
  for (const e of entries)
    if (e.end > dataLength)
      throw new CheckpointError(
        'offset_out_of_bounds',
        `tensor ${q(e.name)}: data_offsets [${e.begin}, ${e.end}] run past the ${dataLength}-byte data region`,
        { tensor: e.name },
      );
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: SafetensorsEntry | undefined;
  for (const e of entries) {
    if (e.begin < cursor)
      throw new CheckpointError(
        'overlapping_tensors',
        `tensor ${q(e.name)} at [${e.begin}, ${e.end}] overlaps tensor ${q(previous!.name)} at [${previous!.begin}, ${previous!.end}]`,
        { tensor: e.name },
      );
    if (e.begin > cursor)
      throw new CheckpointError(
        'data_hole',
        `bytes [${cursor}, ${e.begin}) of the data region belong to no tensor (before tensor ${q(e.name)})`,
        { tensor: e.name },
      );
    cursor = e.end;
    previous = e;
  }
  if (cursor !== dataLength)
    throw new CheckpointError(
      'trailing_bytes',
      `${dataLength - cursor} bytes after the last tensor (data region is ${dataLength} bytes, tensors cover ${cursor})`,
    );
  return { dataStart, metadata, entries };
}

/**
 * The tensors of a whole file whose header {@link parseSafetensorsHeader} checked, as fresh,
 * aligned typed arrays (copies).
 */
export function readSafetensorsTensors(
  bytes: Uint8Array,
  header: SafetensorsHeader,
): Record<string, SafetensorsTensor> {
  const { dataStart, entries } = header;
  const tensors = dict<SafetensorsTensor>();
  for (const e of entries) {
    const info = DTYPES[e.dtype];
    const copy = new Uint8Array(e.end - e.begin);
    copy.set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    if (e.dtype === 'BOOL') checkBools(e.name, copy);
    if (!LITTLE_ENDIAN) swapBytes(copy, info.size);
    tensors[e.name] = {
      dtype: e.dtype,
      shape: e.shape,
      data: info.make(copy.buffer),
    } as SafetensorsTensor;
  }
  return tensors;
}

/**
 * Parses and validates safetensors bytes. Throws CheckpointError (see the file comment for
 * what is checked); on success every tensor's data is a fresh, aligned typed array.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  options: DecodeSafetensorsOptions = {},
): DecodedSafetensors {
  checkMaxHeader(options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES);
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decodeSafetensors expects a Uint8Array');
  const header = parseSafetensorsHeader(bytes, bytes.length, options);
  return { tensors: readSafetensorsTensors(bytes, header), metadata: header.metadata };
}

// ---------------------------------------------------------------------------------------
// Half-precision helpers. Conversions to float32 are exact (NaN payloads kept); conversions
// from float32 round to nearest, ties to even, overflow to infinity, and keep NaN a NaN.

/** Widens IEEE half-precision bits (F16) to float32. */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      if (mant === 0) outBits[i] = sign >>> 0;
      else out[i] = (sign ? -1 : 1) * mant * 2 ** -24; // subnormal: exact in float32
    } else if (exp === 0x1f) {
      outBits[i] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      outBits[i] = (sign | ((exp - 15 + 127) << 23) | (mant << 13)) >>> 0;
    }
  }
  return out;
}

/** Widens bfloat16 bits (BF16) to float32: they are its upper 16 bits. */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = (bits[i]! << 16) >>> 0;
  return out;
}

/** Rounds float32 values to IEEE half-precision bits (F16). */
export function float32ToF16(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = inBits[i]!;
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
      continue;
    }
    const he = exp - 127 + 15;
    if (he >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    let h: number;
    if (he <= 0) {
      if (he < -10) {
        out[i] = sign;
        continue;
      }
      const m = mant | 0x800000;
      const shift = 14 - he;
      h = m >>> shift;
      const rem = m & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
    } else {
      h = (he << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // may carry into inf: correct
    }
    out[i] = sign | h;
  }
  return out;
}

/** Rounds float32 values to bfloat16 bits (BF16). */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = inBits[i]!;
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) out[i] = (b >>> 16) | 0x40;
    else out[i] = Math.floor((b + 0x7fff + ((b >>> 16) & 1)) / 0x10000);
  }
  return out;
}
