/**
 * The binary shard format: one file per cluster and split, holding that shard's images and
 * labels, written by the coordinator and streamed by workers. Byte-by-byte description in
 * `docs/shard-format.md`; in short, a 64-byte little-endian header, the pixels as
 * `[N, H, W, C]` uint8, then the labels as `[N]` int16, each section padded to 8 bytes.
 * A JSON {@link ShardIndex} sits next to each `.bin` with its checksum and provenance.
 */
import { DatasetImportError } from './errors.js';
import { type ImageSet, imageBytes, validateImageSet } from './image-set.js';

/** `ARCHSHD1`. */
export const SHARD_MAGIC = 'ARCHSHD1';
export const SHARD_VERSION = 1;
export const SHARD_HEADER_BYTES = 64;
/** Label dtype codes in header byte 21. */
export const SHARD_LABEL_DTYPES = { int16: 1 } as const;

/** The JSON index stored next to each shard `.bin` (`{k}.json`, `{k}.val.json`). */
export interface ShardIndex {
  format: 'archipelago.shard';
  version: 1;
  /** Cluster number k in [0, K). */
  cluster: number;
  split: 'train' | 'val';
  /** Images in the shard. */
  count: number;
  height: number;
  width: number;
  channels: 1 | 3;
  layout: 'NHWC';
  /** Byte offset of the pixel section (64). */
  pixelOffset: number;
  /** Byte offset of the label section. */
  labelOffset: number;
  labelDtype: 'int16';
  /** Total length of the `.bin` file. */
  bytes: number;
  /** Lowercase hex SHA-256 of the whole `.bin` file. */
  sha256: string;
  /** The dataset's class names; label l in the shard means `classNames[l]`. */
  classNames: string[];
  /** Images per class name in this shard (classes with none are omitted; unlabeled are not counted). */
  classCounts: Record<string, number>;
  /** `[count]` index of each shard image in the source dataset, in shard order. */
  sourceIndices: number[];
}

const pad8 = (x: number): number => Math.ceil(x / 8) * 8;

/** Section layout of a shard of `count` images of `imageSize` bytes. */
export function shardLayout(
  count: number,
  imageSize: number,
): { pixelOffset: number; labelOffset: number; bytes: number } {
  const pixelOffset = SHARD_HEADER_BYTES;
  const labelOffset = pixelOffset + pad8(count * imageSize);
  return { pixelOffset, labelOffset, bytes: labelOffset + pad8(count * 2) };
}

/**
 * Encode an {@link ImageSet} as a shard `.bin`. Labels must fit int16 (-1..32767); class names
 * and sources are not stored in the binary (they live in the {@link ShardIndex}).
 */
export function encodeShard(set: ImageSet): Buffer {
  validateImageSet(set);
  if (set.classNames.length > 32767)
    throw new RangeError(`${set.classNames.length} classes do not fit int16 labels`);
  const size = imageBytes(set);
  const { pixelOffset, labelOffset, bytes } = shardLayout(set.count, size);
  if (set.count > 0xffffffff) throw new RangeError('too many images for one shard');
  const buf = Buffer.alloc(bytes); // zero-filled: reserved bytes and padding are 0
  buf.write(SHARD_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(SHARD_VERSION, 8);
  buf.writeUInt32LE(set.count, 12);
  buf.writeUInt16LE(set.height, 16);
  buf.writeUInt16LE(set.width, 18);
  buf.writeUInt8(set.channels, 20);
  buf.writeUInt8(SHARD_LABEL_DTYPES.int16, 21);
  buf.writeBigUInt64LE(BigInt(pixelOffset), 24);
  buf.writeBigUInt64LE(BigInt(labelOffset), 32);
  buf.writeBigUInt64LE(BigInt(bytes), 40);
  buf.set(set.pixels, pixelOffset);
  for (let i = 0; i < set.count; i++) buf.writeInt16LE(set.labels[i], labelOffset + 2 * i);
  return buf;
}

/** Header fields of a shard `.bin`. */
export interface ShardHeader {
  version: number;
  count: number;
  height: number;
  width: number;
  channels: 1 | 3;
  labelDtype: 'int16';
  pixelOffset: number;
  labelOffset: number;
  bytes: number;
}

/**
 * Read and check a shard header: magic, version, sizes, and that the section offsets and total
 * length agree with each other and with `buf.length`.
 *
 * @throws {DatasetImportError} `bad_shard` saying what is wrong.
 */
export function readShardHeader(buf: Uint8Array, file = 'shard.bin'): ShardHeader {
  const bad = (why: string): never => {
    throw new DatasetImportError('bad_shard', `${file} is not a valid shard: ${why}`, file);
  };
  if (buf.length < SHARD_HEADER_BYTES)
    bad(`${buf.length} bytes is shorter than the ${SHARD_HEADER_BYTES}-byte header (truncated)`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = b.toString('latin1', 0, 8);
  if (magic !== SHARD_MAGIC) bad(`magic is ${JSON.stringify(magic)}, expected "${SHARD_MAGIC}"`);
  const version = b.readUInt32LE(8);
  if (version !== SHARD_VERSION)
    bad(`format version ${version} is not supported (this reader knows ${SHARD_VERSION})`);
  const count = b.readUInt32LE(12);
  const height = b.readUInt16LE(16);
  const width = b.readUInt16LE(18);
  const channels = b.readUInt8(20);
  const dtype = b.readUInt8(21);
  if (height < 1 || width < 1) bad(`image size ${height}x${width} is empty`);
  if (channels !== 1 && channels !== 3) return bad(`channels is ${channels}, expected 1 or 3`);
  if (dtype !== SHARD_LABEL_DTYPES.int16) bad(`label dtype code ${dtype} is unknown (1 = int16)`);
  const pixelOffset = Number(b.readBigUInt64LE(24));
  const labelOffset = Number(b.readBigUInt64LE(32));
  const bytes = Number(b.readBigUInt64LE(40));
  const expected = shardLayout(count, height * width * channels);
  if (pixelOffset !== expected.pixelOffset || labelOffset !== expected.labelOffset)
    bad(
      `section offsets ${pixelOffset}/${labelOffset} do not match ${count} images of ` +
        `${height}x${width}x${channels} (expected ${expected.pixelOffset}/${expected.labelOffset})`,
    );
  if (bytes !== expected.bytes)
    bad(`header says ${bytes} bytes, ${count} images need ${expected.bytes}`);
  if (buf.length < bytes) bad(`file has ${buf.length} bytes, header says ${bytes} (truncated)`);
  if (buf.length > bytes) bad(`file has ${buf.length} bytes, header says ${bytes} (trailing data)`);
  return {
    version,
    count,
    height,
    width,
    channels,
    labelDtype: 'int16',
    pixelOffset,
    labelOffset,
    bytes,
  };
}

/**
 * Decode a shard `.bin` into an {@link ImageSet} (pixels copied). Pass the dataset's class
 * names (from the {@link ShardIndex}) to get them back; labels are checked against them.
 *
 * @throws {DatasetImportError} `bad_shard` on a bad magic, version, header, length, or label.
 */
export function decodeShard(
  buf: Uint8Array,
  options: { classNames?: string[]; file?: string } = {},
): ImageSet {
  const file = options.file ?? 'shard.bin';
  const h = readShardHeader(buf, file);
  const size = h.height * h.width * h.channels;
  const pixels = Uint8Array.from(buf.subarray(h.pixelOffset, h.pixelOffset + h.count * size));
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const labels = new Int32Array(h.count);
  const classNames = options.classNames ?? [];
  for (let i = 0; i < h.count; i++) {
    const l = view.getInt16(h.labelOffset + 2 * i, true);
    if (l < -1 || (options.classNames && l >= classNames.length))
      throw new DatasetImportError(
        'bad_shard',
        `${file} is not a valid shard: image ${i} has label ${l}, outside [-1, ${options.classNames ? classNames.length : 32767})`,
        file,
      );
    labels[i] = l;
  }
  return {
    height: h.height,
    width: h.width,
    channels: h.channels,
    count: h.count,
    pixels,
    labels,
    classNames: [...classNames],
  };
}
