/**
 * NumPy `.npy` files, the format users will most likely hand us embeddings in
 * (`np.save('embeddings.npy', feats.astype('<f4'))`).
 *
 * Format (numpy/lib/format.py, NEP 1): magic `\x93NUMPY`, u8 major, u8 minor, header length
 * (u16 LE in v1.0, u32 LE in v2.0 and v3.0), then an ASCII (v1/v2) or UTF-8 (v3) Python dict
 * literal `{'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }` padded with spaces and a
 * newline so the data starts on a 64-byte boundary, then the raw array bytes.
 */
import { DatasetImportError } from './errors.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** A parsed `.npy` file. The data is not interpreted: its meaning depends on `dtype`. */
export interface NpyArray {
  /** The numpy type string, e.g. `<f4` (float32 LE), `<f8`, `|u1`. */
  dtype: string;
  /** Array shape; `[]` for a scalar. */
  shape: number[];
  /** True when the data is stored column-major (Fortran order). */
  fortranOrder: boolean;
  /** The raw bytes of the array, `product(shape) * itemsize` long (a view into the input). */
  data: Uint8Array;
  /** Format version `[major, minor]`. */
  version: [number, number];
}

const DTYPE_NAMES: Record<string, string> = {
  f2: 'float16',
  f4: 'float32',
  f8: 'float64',
  i1: 'int8',
  i2: 'int16',
  i4: 'int32',
  i8: 'int64',
  u1: 'uint8',
  u2: 'uint16',
  u4: 'uint32',
  u8: 'uint64',
  b1: 'bool',
};

/** `<f8 (float64)`: a dtype with its common name, for messages. */
function describeDtype(dtype: string): string {
  const name = DTYPE_NAMES[dtype.slice(1)];
  const order = dtype[0] === '>' ? ', big-endian' : '';
  return name ? `${dtype} (${name}${order})` : dtype;
}

type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

/** A parser for the small subset of Python literals numpy writes in `.npy` headers. */
function parsePythonLiteral(src: string): PyValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at character ${i} of header ${JSON.stringify(src)}`);
  };
  const ws = (): void => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  const value = (): PyValue => {
    ws();
    const ch = src[i];
    if (ch === '{' || ch === '(' || ch === '[') {
      const close = ch === '{' ? '}' : ch === '(' ? ')' : ']';
      i++;
      const items: PyValue[] = [];
      const dict: Record<string, PyValue> = {};
      for (;;) {
        ws();
        if (src[i] === close) {
          i++;
          break;
        }
        if (ch === '{') {
          const key = value();
          if (typeof key !== 'string') fail('dict key is not a string');
          ws();
          if (src[i] !== ':') fail("expected ':'");
          i++;
          dict[key as string] = value();
        } else {
          items.push(value());
        }
        ws();
        if (src[i] === ',') i++;
        else if (src[i] !== close) fail(`expected ',' or '${close}'`);
      }
      return ch === '{' ? dict : items;
    }
    if (ch === "'" || ch === '"') {
      const end = src.indexOf(ch, i + 1);
      if (end < 0) fail('unterminated string');
      const s = src.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    const m = /^(True|False|None|-?\d+L?)/.exec(src.slice(i));
    if (!m) return fail('unexpected token');
    i += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    return Number.parseInt(m[0], 10);
  };
  const v = value();
  ws();
  if (i !== src.length) fail('trailing characters');
  return v;
}

/**
 * Parse a `.npy` file (format versions 1.0, 2.0 and 3.0).
 *
 * @param bytes - the whole file.
 * @param file - name used in error messages.
 * @throws {DatasetImportError} `bad_npy` for a bad magic, an unreadable header, an unsupported
 *   (structured or object) dtype, or fewer data bytes than the shape needs.
 */
export function parseNpy(bytes: Uint8Array, file = 'array.npy'): NpyArray {
  const bad = (why: string): never => {
    throw new DatasetImportError('bad_npy', `${file} is not a valid .npy file: ${why}`, file);
  };
  if (bytes.length < 10 || MAGIC.some((b, k) => bytes[k] !== b))
    bad('it does not start with the \\x93NUMPY magic (save it with numpy.save)');
  const major = bytes[6];
  const minor = bytes[7];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number;
  let headerLen: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) bad('truncated header');
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    return bad(`format version ${major}.${minor} is not supported (1.0, 2.0 and 3.0 are)`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.length) bad(`header claims ${headerLen} bytes but the file is shorter`);
  const headerBytes = bytes.subarray(headerStart, dataStart);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(headerBytes).trim();
  let dict: PyValue;
  try {
    dict = parsePythonLiteral(header);
  } catch (err) {
    return bad(`cannot parse header: ${(err as Error).message}`);
  }
  if (typeof dict !== 'object' || dict === null || Array.isArray(dict))
    return bad('header is not a dict');
  const { descr, fortran_order: fortran, shape } = dict as Record<string, PyValue>;
  if (typeof descr !== 'string')
    return bad('structured (record) dtypes are not supported; save a plain numeric array');
  if (typeof fortran !== 'boolean') return bad("header has no boolean 'fortran_order'");
  if (
    !Array.isArray(shape) ||
    !shape.every((s): s is number => typeof s === 'number' && Number.isInteger(s) && s >= 0)
  )
    return bad("header has no valid 'shape' tuple");
  const m = /^[<>|=]([fiub])(\d+)$/.exec(descr);
  if (!m)
    return bad(`dtype ${describeDtype(descr)} is not supported (only numeric dtypes are read)`);
  const itemSize = Number(m[2]);
  const count = shape.reduce((a, b) => a * b, 1);
  const need = count * itemSize;
  if (bytes.length - dataStart < need)
    bad(
      `shape (${shape.join(', ')}) of ${describeDtype(descr)} needs ${need} data bytes but the file has ${bytes.length - dataStart} (truncated?)`,
    );
  return {
    dtype: descr,
    shape,
    fortranOrder: fortran,
    data: bytes.subarray(dataStart, dataStart + need),
    version: [major, minor],
  };
}

/** Embeddings read from a `.npy` file: `data` is `[rows, dim]` row-major float32. */
export interface Embeddings {
  data: Float32Array;
  rows: number;
  dim: number;
}

/**
 * Read user-supplied image embeddings (one row per image, in dataset order) from a `.npy` file.
 *
 * Requirements, each with its own error: dtype `<f4` (float32 little-endian; `embeddings_dtype`),
 * 2-D C-ordered (`embeddings_mismatch` / `bad_npy`), `rows === expectedRows`
 * (`embeddings_mismatch`), at least one column, and no NaN or infinity (`embeddings_nonfinite`).
 *
 * @param bytes - the `.npy` file contents.
 * @param expectedRows - number of images in the dataset.
 * @param file - file name used in error messages (default `embeddings.npy`).
 * @returns a copy of the data as `[rows, dim]` float32 (aligned, independent of `bytes`).
 */
export function readEmbeddings(
  bytes: Uint8Array,
  expectedRows: number,
  file = 'embeddings.npy',
): Embeddings {
  const arr = parseNpy(bytes, file);
  if (arr.dtype !== '<f4')
    throw new DatasetImportError(
      'embeddings_dtype',
      `${file} has dtype ${describeDtype(arr.dtype)}; need <f4 float32 (little-endian). ` +
        `Convert with numpy.save('${file}', x.astype('<f4'))`,
      file,
    );
  if (arr.shape.length !== 2)
    throw new DatasetImportError(
      'embeddings_mismatch',
      `${file} has shape (${arr.shape.join(', ')}); need a 2-D array (images, dimensions)`,
      file,
    );
  if (arr.fortranOrder)
    throw new DatasetImportError(
      'bad_npy',
      `${file} is stored in Fortran (column-major) order; save it C-ordered with ` +
        `numpy.save('${file}', numpy.ascontiguousarray(x))`,
      file,
    );
  const [rows, dim] = arr.shape as [number, number];
  if (rows !== expectedRows)
    throw new DatasetImportError(
      'embeddings_mismatch',
      `${file} has ${rows} rows, dataset has ${expectedRows} images; need one row per image, in dataset order`,
      file,
    );
  if (dim < 1) throw new DatasetImportError('embeddings_mismatch', `${file} has 0 columns`, file);
  // Copy into a fresh, 4-byte-aligned buffer (the data offset in the file need not be aligned
  // in the caller's Buffer) and read as little-endian regardless of the host.
  const data = new Float32Array(rows * dim);
  const view = new DataView(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength);
  for (let i = 0; i < data.length; i++) {
    const v = view.getFloat32(i * 4, true);
    if (!Number.isFinite(v)) {
      throw new DatasetImportError(
        'embeddings_nonfinite',
        `${file} row ${Math.floor(i / dim)}, column ${i % dim} is ${v}; embeddings must be finite`,
        file,
      );
    }
    data[i] = v;
  }
  return { data, rows, dim };
}

/**
 * Encode a float32 array as a version 1.0 `.npy` file (`<f4`, C order), readable by
 * `numpy.load`. The header is padded so the data starts on a 64-byte boundary, as numpy does.
 *
 * @param data - row-major values, length `product(shape)`.
 * @param shape - array shape, e.g. `[rows, dim]`.
 */
export function encodeNpy(data: Float32Array, shape: number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length)
    throw new RangeError(
      `shape (${shape.join(', ')}) holds ${count} values, data has ${data.length}`,
    );
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const unpadded = 10 + header.length + 1;
  header += `${' '.repeat((64 - (unpadded % 64)) % 64)}\n`;
  const headerLen = header.length;
  if (headerLen > 0xffff) throw new RangeError('shape too long for a version 1.0 header');
  const out = new Uint8Array(10 + headerLen + data.length * 4);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, headerLen, true);
  for (let k = 0; k < headerLen; k++) out[10 + k] = header.charCodeAt(k);
  const base = 10 + headerLen;
  for (let i = 0; i < data.length; i++) view.setFloat32(base + i * 4, data[i], true);
  return out;
}
