/**
 * Import a folder of PNG/JPEG images into an {@link ImageSet}.
 *
 * The walk is recursive and sorted by code point at every level, so the same folder always gives
 * the same image order (and therefore the same clusters and shards for a seed). Anything that is
 * not an image is an error rather than silently skipped, so a user never trains on a dataset
 * that is quietly missing files; only hidden files (`.DS_Store`, `._*`), `__MACOSX` folders from
 * macOS zips and Windows' `Thumbs.db`/`desktop.ini` are ignored.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { mapWithConcurrency } from './concurrency.js';
import { DatasetImportError } from './errors.js';
import type { ImageSet } from './image-set.js';
import { type FitMode, type Resolution, resizeOptions, resolveResolution } from './resize.js';

/** File extensions we import (compared case-insensitively). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

const IGNORED_NAMES = new Set(['Thumbs.db', 'desktop.ini', '__MACOSX']);

export interface ImageFolderOptions {
  /** Output size: a side length or `{height, width}`. */
  resolution: Resolution;
  /** 1 = grayscale (converted by sharp), 3 = RGB. */
  channels: 1 | 3;
  /**
   * Label each image by its first-level sub-folder (`dir/cat/x.png` is class `cat`). Default:
   * true when the top level holds only sub-folders. Images directly in `dir` get label -1.
   */
  labelsFromSubfolders?: boolean;
  /** `cover` (default): resize to fill and crop the centre; `contain`: fit inside, pad black. */
  fit?: FitMode;
  /** Images decoded at once (default 4; sharp itself also uses a thread per core). */
  concurrency?: number;
  /** Called after each decoded image with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const isIgnored = (name: string): boolean => name.startsWith('.') || IGNORED_NAMES.has(name);

/** Relative POSIX paths of all non-ignored files under `dir`, in sorted walk order. */
async function walk(dir: string, rel: string, out: string[], seen: Set<string>): Promise<void> {
  const entries = (await readdir(path.join(dir, rel), { withFileTypes: true }))
    .filter((e) => !isIgnored(e.name))
    .sort((a, b) => byCodePoint(a.name, b.name));
  for (const e of entries) {
    const relPath = rel ? `${rel}/${e.name}` : e.name;
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) {
      const target = await stat(path.join(dir, relPath)).catch(() => null);
      if (!target)
        throw new DatasetImportError('corrupt_image', `${relPath} is a broken link`, relPath);
      isDir = target.isDirectory();
    }
    if (isDir) {
      // Guard against symlink cycles by the directory's identity.
      const s = await stat(path.join(dir, relPath));
      const id = `${s.dev}:${s.ino}`;
      if (seen.has(id)) continue;
      seen.add(id);
      await walk(dir, relPath, out, seen);
    } else {
      out.push(relPath);
    }
  }
}

/**
 * The files {@link readImageFolder} reads under `dir`: relative POSIX paths of every non-ignored
 * file, in its sorted walk order (whatever their type: reading checks that). Copying these files
 * to another folder at the same relative paths gives a folder that reads the same.
 *
 * @throws {DatasetImportError} `empty_folder` when `dir` is not a folder; `corrupt_image` for a
 *   broken link.
 */
export async function listImageFolder(dir: string): Promise<string[]> {
  const rootStat = await stat(dir).catch(() => null);
  if (!rootStat?.isDirectory())
    throw new DatasetImportError('empty_folder', `${dir} does not exist or is not a folder`);
  const files: string[] = [];
  await walk(dir, '', files, new Set([`${rootStat.dev}:${rootStat.ino}`]));
  return files;
}

/**
 * Read every PNG/JPEG under `dir` (recursively) into one {@link ImageSet}, resized to
 * `resolution` with `channels` channels. Alpha is flattened onto black; EXIF orientation is
 * applied; 16-bit images are reduced to 8 bits.
 *
 * `sources[i]` is image i's path relative to `dir` with `/` separators. `classNames` are the
 * first-level sub-folder names that contain images, sorted by code point; labels index them.
 *
 * @throws {DatasetImportError} `empty_folder` when there are no images; `unsupported_format`
 *   naming the first file that is not a PNG/JPEG (checked before decoding anything) or whose
 *   content is another format; `corrupt_image` naming a file that cannot be read or decoded.
 */
export async function readImageFolder(dir: string, options: ImageFolderOptions): Promise<ImageSet> {
  const { height, width } = resolveResolution(options.resolution);
  const channels = options.channels;
  if (channels !== 1 && channels !== 3)
    throw new RangeError(`channels must be 1 or 3, got ${String(channels)}`);
  const fit = options.fit ?? 'cover';
  if (fit !== 'cover' && fit !== 'contain')
    throw new RangeError(`fit must be 'cover' or 'contain', got ${String(fit)}`);

  const files = await listImageFolder(dir);

  for (const file of files) {
    const ext = path.extname(file).toLowerCase();
    if (!(IMAGE_EXTENSIONS as readonly string[]).includes(ext))
      throw new DatasetImportError(
        'unsupported_format',
        `${file}: unsupported file type ${ext ? `"${ext}"` : '(no extension)'}; ` +
          `only ${IMAGE_EXTENSIONS.join(', ')} images are accepted (remove or convert it)`,
        file,
      );
  }
  if (files.length === 0)
    throw new DatasetImportError(
      'empty_folder',
      `${path.basename(dir) || dir} contains no images (${IMAGE_EXTENSIONS.join(', ')})`,
    );

  const topLevelFiles = files.some((f) => !f.includes('/'));
  const useLabels = options.labelsFromSubfolders ?? !topLevelFiles;
  const folderOf = (f: string): string | null =>
    f.includes('/') ? f.slice(0, f.indexOf('/')) : null;
  const classNames = useLabels
    ? [...new Set(files.map(folderOf).filter((c): c is string => c !== null))].sort(byCodePoint)
    : [];
  const classIndex = new Map(classNames.map((c, i) => [c, i]));
  const labels = Int32Array.from(files, (f) => {
    const c = folderOf(f);
    return useLabels && c !== null ? classIndex.get(c)! : -1;
  });

  const size = height * width * channels;
  const pixels = new Uint8Array(files.length * size);
  let done = 0;
  await mapWithConcurrency(files.length, options.concurrency ?? 4, async (i) => {
    const file = files[i];
    const data = await decodeImage(path.join(dir, file), file, height, width, channels, fit);
    pixels.set(data, i * size);
    options.onProgress?.(++done, files.length);
  });
  return {
    height,
    width,
    channels,
    count: files.length,
    pixels,
    labels,
    classNames,
    sources: files,
  };
}

async function decodeImage(
  absPath: string,
  file: string,
  height: number,
  width: number,
  channels: 1 | 3,
  fit: FitMode,
): Promise<Uint8Array> {
  let bytes: Buffer;
  try {
    bytes = await readFile(absPath);
  } catch (err) {
    throw new DatasetImportError(
      'corrupt_image',
      `${file}: cannot read file (${(err as Error).message})`,
      file,
      { cause: err },
    );
  }
  // Sniff the signature instead of asking sharp (a second decoder call per file).
  const isPng = bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47;
  const isJpeg = bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  if (!isPng && !isJpeg) {
    const format = await sharp(bytes)
      .metadata()
      .then((m) => m.format)
      .catch(() => undefined);
    if (format === undefined) throw corrupt(file, new Error('not a PNG or JPEG signature'));
    throw new DatasetImportError(
      'unsupported_format',
      `${file}: the file's content is ${format}, not PNG or JPEG; convert it`,
      file,
    );
  }
  try {
    // failOn 'error': reject truncated and damaged files instead of importing half an image.
    let img = sharp(bytes, { failOn: 'error' })
      .autoOrient()
      .flatten({ background: { r: 0, g: 0, b: 0 } });
    img = channels === 1 ? img.grayscale() : img.toColourspace('srgb');
    const { data, info } = await img
      .resize(resizeOptions(height, width, fit))
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== channels || info.width !== width || info.height !== height)
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
    return data;
  } catch (err) {
    throw corrupt(file, err);
  }
}

function corrupt(file: string, err: unknown): DatasetImportError {
  const reason = (err as Error).message?.split('\n')[0] ?? String(err);
  return new DatasetImportError(
    'corrupt_image',
    `${file}: cannot decode image (${reason}); the file is damaged or truncated`,
    file,
    { cause: err },
  );
}
