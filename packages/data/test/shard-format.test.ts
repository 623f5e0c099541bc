import { createRng } from '@archipelago/random';
import { describe, expect, it } from 'vitest';
import { DatasetImportError } from '../src/errors.js';
import type { ImageSet } from '../src/image-set.js';
import {
  decodeShard,
  encodeShard,
  readShardHeader,
  SHARD_HEADER_BYTES,
} from '../src/shard-format.js';

function randomSet(count: number, h: number, w: number, c: 1 | 3): ImageSet {
  const rng = createRng(count);
  return {
    height: h,
    width: w,
    channels: c,
    count,
    pixels: Uint8Array.from({ length: count * h * w * c }, () => rng.int(256)),
    labels: Int32Array.from({ length: count }, () => rng.int(4) - 1),
    classNames: ['a', 'b', 'c'],
  };
}

function shardError(buf: Uint8Array): DatasetImportError {
  try {
    decodeShard(buf, { file: '3.bin' });
  } catch (err) {
    expect(err).toBeInstanceOf(DatasetImportError);
    expect((err as DatasetImportError).code).toBe('bad_shard');
    expect((err as Error).message).toContain('3.bin');
    return err as DatasetImportError;
  }
  throw new Error('expected decodeShard to fail');
}

describe('shard format', () => {
  it('round-trips bit-exactly with the documented header', () => {
    for (const [count, h, w, c] of [
      [5, 3, 5, 3],
      [7, 28, 28, 1],
      [0, 4, 4, 1],
    ] as const) {
      const set = randomSet(count, h, w, c);
      const buf = encodeShard(set);
      const size = h * w * c;
      const labelOffset = SHARD_HEADER_BYTES + Math.ceil((count * size) / 8) * 8;
      expect(buf.length).toBe(labelOffset + Math.ceil((count * 2) / 8) * 8);
      expect(buf.length % 8).toBe(0);
      expect(buf.toString('latin1', 0, 8)).toBe('ARCHSHD1');
      expect(readShardHeader(buf)).toEqual({
        version: 1,
        count,
        height: h,
        width: w,
        channels: c,
        labelDtype: 'int16',
        pixelOffset: 64,
        labelOffset,
        bytes: buf.length,
      });
      if (count > 0) expect(buf.readInt16LE(labelOffset)).toBe(set.labels[0]);
      const back = decodeShard(buf, { classNames: set.classNames });
      expect(Buffer.from(back.pixels).equals(set.pixels)).toBe(true);
      expect(back.labels).toEqual(set.labels);
      expect([back.count, back.height, back.width, back.channels]).toEqual([count, h, w, c]);
      expect(back.classNames).toEqual(set.classNames);
      expect(encodeShard(back).equals(buf)).toBe(true);
    }
  });

  it('matches the byte-level example in docs/shard-format.md', () => {
    const buf = encodeShard({
      height: 2,
      width: 2,
      channels: 1,
      count: 2,
      pixels: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
      labels: Int32Array.from([3, -1]),
      classNames: ['a', 'b', 'c', 'd'],
    });
    expect(buf.toString('hex')).toBe(
      [
        '4152434853484431', // ARCHSHD1
        '0100000002000000', // version 1, count 2
        '0200020001010000', // height 2, width 2, channels 1, int16 labels, reserved
        '4000000000000000', // pixelOffset 64
        '4800000000000000', // labelOffset 72
        '5000000000000000', // bytes 80
        '0000000000000000',
        '0000000000000000',
        '0102030405060708', // pixels
        '0300ffff00000000', // labels 3, -1, padding
      ].join(''),
    );
  });

  it('rejects bad magic, version, truncation and size mismatches', () => {
    const buf = encodeShard(randomSet(4, 6, 6, 3));
    const magic = Buffer.from(buf);
    magic.write('PNG', 0, 'latin1');
    expect(shardError(magic).message).toMatch(/magic/);
    const version = Buffer.from(buf);
    version.writeUInt32LE(2, 8);
    expect(shardError(version).message).toMatch(/version 2/);
    expect(shardError(buf.subarray(0, buf.length - 8)).message).toMatch(/truncated/);
    expect(shardError(buf.subarray(0, 40)).message).toMatch(/header/);
    expect(shardError(Buffer.concat([buf, Buffer.alloc(8)])).message).toMatch(/trailing/);
    const count = Buffer.from(buf);
    count.writeUInt32LE(5, 12);
    expect(shardError(count).message).toMatch(/do not match 5 images|need/);
    const channels = Buffer.from(buf);
    channels.writeUInt8(4, 20);
    expect(shardError(channels).message).toMatch(/channels is 4/);
  });

  it('rejects labels outside the class list', () => {
    const set = randomSet(3, 2, 2, 1);
    set.labels[1] = 2;
    const buf = encodeShard(set);
    expect(() => decodeShard(buf, { classNames: ['a', 'b'] })).toThrow(/label 2/);
  });
});
