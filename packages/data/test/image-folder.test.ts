import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetImportError } from '../src/errors.js';
import { readImageFolder } from '../src/image-folder.js';

let root: string;

/** A `w x h` RGB image: left half red, right half blue. */
function halves(w: number, h: number): Buffer {
  const buf = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      if (x < w / 2) buf[o] = 255;
      else buf[o + 2] = 255;
    }
  return buf;
}

async function write(rel: string, data: Buffer | string): Promise<void> {
  const file = path.join(root, rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, data);
}

const png = (raw: Buffer, w: number, h: number, channels: 1 | 3 | 4) =>
  sharp(raw, { raw: { width: w, height: h, channels } })
    .png()
    .toBuffer();
const jpeg = (raw: Buffer, w: number, h: number, channels: 1 | 3) =>
  sharp(raw, { raw: { width: w, height: h, channels } })
    .jpeg({ quality: 95 })
    .toBuffer();

/** `[r, g, b]` of pixel (y, x) of an NHWC RGB set's image i. */
function rgb(px: Uint8Array, size: number, i: number, y: number, x: number): number[] {
  const o = i * size * size * 3 + (y * size + x) * 3;
  return [px[o]!, px[o + 1]!, px[o + 2]!];
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'archipelago-data-folder-'));
  // Labeled: cat/, dog/ (with a nested folder), plus OS litter that must be ignored.
  await write('labeled/cat/a.png', await png(halves(40, 20), 40, 20, 3));
  await write('labeled/cat/b.JPG', await jpeg(Buffer.alloc(30 * 30, 128), 30, 30, 1));
  await write('labeled/dog/c.jpeg', await jpeg(halves(32, 32), 32, 32, 3));
  const rgba = Buffer.alloc(8 * 8 * 4, 255);
  for (let p = 0; p < 64; p++) rgba[p * 4 + 3] = 0; // fully transparent white
  await write('labeled/dog/puppies/d.png', await png(rgba, 8, 8, 4));
  await write('labeled/.DS_Store', 'junk');
  await write('labeled/cat/._a.png', 'resource fork');
  await write('labeled/__MACOSX/cat/._b.png', 'zip litter');
  // Flat and mixed folders.
  await write('flat/1.png', await png(halves(10, 10), 10, 10, 3));
  await write('flat/2.png', await png(halves(10, 10), 10, 10, 3));
  await write('mixed/top.png', await png(halves(10, 10), 10, 10, 3));
  await write('mixed/sub/inner.png', await png(halves(10, 10), 10, 10, 3));
  // Broken inputs.
  const good = await png(halves(64, 64), 64, 64, 3);
  await write('corrupt/ok.png', good);
  await write('corrupt/zz/broken.png', good.subarray(0, Math.floor(good.length / 2)));
  const gif = await sharp(halves(4, 4), { raw: { width: 4, height: 4, channels: 3 } })
    .gif()
    .toBuffer();
  await write('gif/a.png', good);
  await write('gif/anim.gif', gif);
  await write('txt/a.png', good);
  await write('txt/notes.txt', 'hello');
  await write('disguised/fake.png', gif);
  await write('empty/.DS_Store', 'junk');
  await mkdir(path.join(root, 'empty/sub'), { recursive: true });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('readImageFolder', () => {
  it('imports PNG and JPEG recursively in sorted order with labels from first-level folders', async () => {
    const progress: [number, number][] = [];
    const set = await readImageFolder(path.join(root, 'labeled'), {
      resolution: 16,
      channels: 3,
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(set.count).toBe(4);
    expect(set.sources).toEqual(['cat/a.png', 'cat/b.JPG', 'dog/c.jpeg', 'dog/puppies/d.png']);
    expect(set.classNames).toEqual(['cat', 'dog']);
    expect([...set.labels]).toEqual([0, 0, 1, 1]);
    expect([set.height, set.width, set.channels]).toEqual([16, 16, 3]);
    expect(set.pixels.length).toBe(4 * 16 * 16 * 3);
    expect(progress.at(-1)).toEqual([4, 4]);
    // a.png (40x20, red | blue) under `cover`: centre crop keeps red left, blue right.
    const [r1, , b1] = rgb(set.pixels, 16, 0, 8, 2);
    const [r2, , b2] = rgb(set.pixels, 16, 0, 8, 13);
    expect(r1).toBeGreaterThan(240);
    expect(b1).toBeLessThan(15);
    expect(r2).toBeLessThan(15);
    expect(b2).toBeGreaterThan(240);
    // The gray JPEG becomes gray RGB; the transparent PNG is flattened onto black.
    for (const v of rgb(set.pixels, 16, 1, 5, 5)) expect(Math.abs(v - 128)).toBeLessThan(4);
    expect(rgb(set.pixels, 16, 3, 4, 4)).toEqual([0, 0, 0]);
  });

  it('converts to grayscale and honours contain and non-square sizes', async () => {
    const gray = await readImageFolder(path.join(root, 'labeled'), {
      resolution: { height: 8, width: 12 },
      channels: 1,
    });
    expect([gray.height, gray.width, gray.channels]).toEqual([8, 12, 1]);
    expect(gray.pixels.length).toBe(4 * 8 * 12);
    expect(Math.abs(gray.pixels[96 + 4 * 12 + 6]! - 128)).toBeLessThan(4);

    const contain = await readImageFolder(path.join(root, 'labeled'), {
      resolution: 16,
      channels: 3,
      fit: 'contain',
    });
    // 40x20 fitted into 16x16 is 16x8, centred: rows 0-3 are black padding.
    expect(rgb(contain.pixels, 16, 0, 1, 8)).toEqual([0, 0, 0]);
    expect(rgb(contain.pixels, 16, 0, 8, 2)[0]).toBeGreaterThan(240);
  });

  it('labels by sub-folder only when the top level holds only folders', async () => {
    const flat = await readImageFolder(path.join(root, 'flat'), { resolution: 4, channels: 1 });
    expect(flat.classNames).toEqual([]);
    expect([...flat.labels]).toEqual([-1, -1]);
    const mixed = await readImageFolder(path.join(root, 'mixed'), { resolution: 4, channels: 1 });
    expect(mixed.sources).toEqual(['sub/inner.png', 'top.png']);
    expect([...mixed.labels]).toEqual([-1, -1]);
    const forced = await readImageFolder(path.join(root, 'mixed'), {
      resolution: 4,
      channels: 1,
      labelsFromSubfolders: true,
    });
    expect(forced.classNames).toEqual(['sub']);
    expect([...forced.labels]).toEqual([0, -1]);
    const off = await readImageFolder(path.join(root, 'labeled'), {
      resolution: 4,
      channels: 1,
      labelsFromSubfolders: false,
    });
    expect(off.classNames).toEqual([]);
  });

  async function importError(folder: string): Promise<DatasetImportError> {
    const err = await readImageFolder(path.join(root, folder), {
      resolution: 8,
      channels: 3,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetImportError);
    return err as DatasetImportError;
  }

  it('rejects a truncated PNG as corrupt_image naming the file', async () => {
    const err = await importError('corrupt');
    expect(err.code).toBe('corrupt_image');
    expect(err.file).toBe('zz/broken.png');
    expect(err.message).toContain('zz/broken.png');
  });

  it('rejects other file types as unsupported_format naming the file', async () => {
    const gif = await importError('gif');
    expect(gif.code).toBe('unsupported_format');
    expect(gif.file).toBe('anim.gif');
    expect(gif.message).toMatch(/anim\.gif.*\.gif/);
    const txt = await importError('txt');
    expect(txt.code).toBe('unsupported_format');
    expect(txt.message).toContain('notes.txt');
    const disguised = await importError('disguised');
    expect(disguised.code).toBe('unsupported_format');
    expect(disguised.message).toMatch(/fake\.png.*gif/);
  });

  it('rejects an empty (or missing) folder as empty_folder', async () => {
    expect((await importError('empty')).code).toBe('empty_folder');
    expect((await importError('does-not-exist')).code).toBe('empty_folder');
  });
});
