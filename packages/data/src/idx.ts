/**
 * The idx format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/): a big-endian
 * header `0x00 0x00 <type> <ndim>`, then `ndim` u32 BE dimension sizes, then the data. Images
 * are `ubyte` (type 0x08) with 3 dimensions `[N, rows, cols]`, labels `ubyte` with 1 dimension.
 * Gzipped files (`*.gz`, as Fashion-MNIST ships) are detected by their magic and inflated.
 */
import { gunzipSync } from 'node:zlib';
import { DatasetImportError } from './errors.js';

function inflate(bytes: Uint8Array): Uint8Array {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
}

function parseIdx(
  raw: Uint8Array,
  ndim: number,
  file: string,
): { dims: number[]; data: Uint8Array } {
  const bytes = inflate(raw);
  const bad = (why: string): never => {
    throw new DatasetImportError('bad_idx', `${file} is not a valid idx file: ${why}`, file);
  };
  if (bytes.length < 4 + 4 * ndim) bad('file is shorter than its header');
  if (bytes[0] !== 0 || bytes[1] !== 0) bad('magic does not start with two zero bytes');
  if (bytes[2] !== 0x08) bad(`element type 0x${bytes[2]?.toString(16)} is not unsigned byte`);
  if (bytes[3] !== ndim) bad(`has ${bytes[3]} dimensions, expected ${ndim}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndim }, (_, k) => view.getUint32(4 + 4 * k, false));
  const start = 4 + 4 * ndim;
  const need = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - start < need)
    bad(`dimensions ${dims.join('x')} need ${need} bytes, file has ${bytes.length - start}`);
  return { dims, data: bytes.subarray(start, start + need) };
}

/**
 * Read an idx3-ubyte image file (optionally gzipped).
 *
 * @returns `count` images of `height x width`, `pixels` `[N, H, W]` uint8 (a view into the
 *   inflated input).
 */
export function readIdxImages(
  bytes: Uint8Array,
  file = 'images-idx3-ubyte',
): { count: number; height: number; width: number; pixels: Uint8Array } {
  const { dims, data } = parseIdx(bytes, 3, file);
  const [count, height, width] = dims as [number, number, number];
  return { count, height, width, pixels: data };
}

/** Read an idx1-ubyte label file (optionally gzipped) into `[N]` int32 labels. */
export function readIdxLabels(bytes: Uint8Array, file = 'labels-idx1-ubyte'): Int32Array {
  const { data } = parseIdx(bytes, 1, file);
  return Int32Array.from(data);
}
