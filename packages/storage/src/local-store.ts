/**
 * The embedded object store: a directory on the coordinator's disk. It is the default so a
 * single coordinator runs with no external services; workers still never touch the disk, they
 * get URLs signed by {@link LocalUrlSigner} and served by {@link handleLocalStoreRequest} (same
 * contract as S3 presigned URLs, so worker code does not care which store is configured).
 *
 * Layout under `root`:
 * - `objects/<key>`: the object bytes, one file per key, path segments = key segments;
 * - `meta/<key>`: a JSON sidecar with the sha256 and content type (same tree shape as `objects/`,
 *   so it adds no new name clashes);
 * - `tmp/`: uploads in progress, renamed into `objects/` only once complete and verified.
 *
 * Being a filesystem, it cannot hold both `a` and `a/b` (S3 can); such a put throws
 * {@link InvalidKeyError}. Archipelago's layout never does this.
 */
import { randomUUID } from 'node:crypto';
import type { Stats } from 'node:fs';
import { createWriteStream } from 'node:fs';
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resolveRange } from './byte-range.js';
import {
  IntegrityError,
  InvalidKeyError,
  ObjectExistsError,
  ObjectNotFoundError,
  PresignError,
} from './errors.js';
import { validateKey, validatePrefix } from './keys.js';
import {
  type LocalPresignConstraints,
  type LocalPresignVerification,
  LocalUrlSigner,
} from './local-url-signer.js';
import type {
  ByteRange,
  ObjectInfo,
  ObjectStore,
  PresignedUrl,
  PresignGetOptions,
  PresignPutOptions,
  PutOptions,
} from './object-store.js';
import { validatePresignGetOptions, validatePresignPutOptions } from './presign-options.js';
import { readAll } from './read-all.js';
import { assertSha256Hex, Sha256Meter } from './sha256.js';

export interface LocalObjectStoreOptions {
  /** Directory that holds everything; created on first put. */
  root: string;
  /**
   * Public URL prefix under which the coordinator mounts {@link handleLocalStoreRequest}, e.g.
   * `http://127.0.0.1:8080/store`. Without it the store works but cannot presign.
   */
  baseUrl?: string;
  /** HMAC key for presigned URLs (at least 16 bytes); keep it stable across restarts. */
  secret: Buffer | string;
}

/**
 * An open object: size and metadata are read from the same file handle the bytes come from, so
 * they agree even when a concurrent put replaces the object.
 */
export interface LocalObjectHandle {
  readonly info: ObjectInfo;
  /**
   * Stream the object or a range of it; call at most once. The stream closes the handle when it
   * ends or is destroyed. Throws {@link InvalidRangeError} (handle still open) for a bad range.
   */
  stream(range?: ByteRange): Readable;
  /** Close the handle when {@link LocalObjectHandle.stream} was not called. */
  close(): Promise<void>;
}

interface Sidecar {
  sha256: string;
  contentType?: string;
  /** Inode and size of the data file this sidecar describes, to detect a stale sidecar. */
  ino: number;
  size: number;
}

function errorCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

function hasCode(error: unknown, ...codes: string[]): boolean {
  const code = errorCode(error);
  return code !== undefined && codes.includes(code);
}

/**
 * Filesystem errors that mean `a` and `a/b` would both be objects, which a directory tree cannot
 * represent, as {@link InvalidKeyError}; any other error unchanged.
 */
function keyConflict(key: string, error: unknown): unknown {
  return hasCode(error, 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY')
    ? new InvalidKeyError(
        key,
        'conflicts with an existing object (a local store cannot hold both "a" and "a/b")',
      )
    : error;
}

export class LocalObjectStore implements ObjectStore {
  readonly description: string;
  readonly root: string;
  readonly #objects: string;
  readonly #meta: string;
  readonly #tmp: string;
  #baseUrl: string | undefined;
  readonly #signer: LocalUrlSigner;

  constructor(options: LocalObjectStoreOptions) {
    this.root = path.resolve(options.root);
    this.#objects = path.join(this.root, 'objects');
    this.#meta = path.join(this.root, 'meta');
    this.#tmp = path.join(this.root, 'tmp');
    this.description = `local:${this.root}`;
    if (options.baseUrl !== undefined) this.setBaseUrl(options.baseUrl);
    this.#signer = new LocalUrlSigner(options.secret);
  }

  #objectPath(key: string): string {
    return path.join(this.#objects, ...key.split('/'));
  }

  #metaPath(key: string): string {
    return path.join(this.#meta, ...key.split('/'));
  }

  /**
   * Set the public URL prefix of presigned URLs. A coordinator listening on port 0 knows its URL
   * only after it listens, which is after the store was made.
   */
  setBaseUrl(baseUrl: string): void {
    // Throws on a malformed URL now rather than on the first presign.
    new URL(baseUrl);
    this.#baseUrl = baseUrl.replace(/\/+$/, '');
  }
  async put(
    key: string,
    body: Uint8Array | Readable | AsyncIterable<Uint8Array>,
    options: PutOptions = {},
  ): Promise<ObjectInfo> {
    validateKey(key);
    if (options.sha256 !== undefined) assertSha256Hex(options.sha256, 'PutOptions.sha256');
    // Refuse before reading the body; the link below decides atomically.
    if (options.createOnly && (await this.head(key))) throw new ObjectExistsError(key);
    await mkdir(this.#tmp, { recursive: true });
    const tmp = path.join(this.#tmp, `${randomUUID()}.part`);
    const meter = new Sha256Meter();
    let committed = false;
    // Opened before the body is read: a stream that opens its file itself may create it after a
    // body refused at its first chunk has failed the pipeline and the rm below has run, leaving
    // the temp file behind.
    const handle = await open(tmp, 'wx');
    try {
      const source = body instanceof Uint8Array ? [body] : body;
      // `flush` fsyncs before close: the rename below must never expose a file whose bytes are
      // still only in the page cache.
      await pipeline(meter.measure(source), createWriteStream(tmp, { fd: handle, flush: true }));
      const sha256 = meter.digest();
      if (options.sha256 !== undefined && sha256 !== options.sha256) {
        throw new IntegrityError(key, 'sha256', options.sha256, sha256);
      }
      const stats = await stat(tmp);
      const target = this.#objectPath(key);
      await this.#ensureParent(key, target);
      const sidecar: Sidecar = {
        sha256,
        ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
        ino: stats.ino,
        size: stats.size,
      };
      if (options.createOnly) {
        // Claim the key first (link fails on an existing name), then describe it: the sidecar of
        // an object that is already there is never replaced.
        await this.#commit(key, tmp, target, true);
        await this.#writeSidecar(key, sidecar);
      } else {
        await this.#writeSidecar(key, sidecar);
        await this.#commit(key, tmp, target);
      }
      committed = true;
      return {
        key,
        bytes: stats.size,
        sha256,
        lastModified: stats.mtime,
        ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
      };
    } finally {
      // The stream closes the handle when it ends or is destroyed; closing again is harmless.
      await handle.close().catch(() => {});
      if (!committed) await rm(tmp, { force: true });
    }
  }

  async #ensureParent(key: string, target: string): Promise<void> {
    try {
      await mkdir(path.dirname(target), { recursive: true });
    } catch (error) {
      throw keyConflict(key, error);
    }
  }

  async #writeSidecar(key: string, sidecar: Sidecar): Promise<void> {
    const target = this.#metaPath(key);
    await this.#ensureParent(key, target);
    const tmp = path.join(this.#tmp, `${randomUUID()}.meta`);
    try {
      await writeFile(tmp, JSON.stringify(sidecar), { flag: 'wx' });
      await rename(tmp, target);
    } catch (error) {
      throw keyConflict(key, error);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Atomically move the verified temp file into place and make the rename durable. `createOnly`
   * links instead of renaming, which fails rather than replace an existing object.
   */
  async #commit(key: string, tmp: string, target: string, createOnly = false): Promise<void> {
    // A concurrent deletePrefix may prune the freshly created parent; recreate and retry.
    for (let attempt = 1; ; attempt++) {
      try {
        if (createOnly) {
          await link(tmp, target);
          await rm(tmp, { force: true });
        } else {
          await rename(tmp, target);
        }
        break;
      } catch (error) {
        if (hasCode(error, 'ENOENT') && attempt < 3) {
          await this.#ensureParent(key, target);
          continue;
        }
        if (createOnly && hasCode(error, 'EEXIST')) {
          const existing = await stat(target).catch(() => null);
          if (existing?.isFile()) throw new ObjectExistsError(key);
        }
        throw keyConflict(key, error);
      }
    }
    const dir = await open(path.dirname(target), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async #readSidecar(key: string, stats: Stats): Promise<Sidecar | null> {
    try {
      const sidecar = JSON.parse(await readFile(this.#metaPath(key), 'utf8')) as Sidecar;
      // A sidecar left by a crash or an interleaved put describes another file: ignore it.
      return sidecar.ino === stats.ino && sidecar.size === stats.size ? sidecar : null;
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR', 'EISDIR') || error instanceof SyntaxError) {
        return null;
      }
      throw error;
    }
  }

  async #info(key: string, stats: Stats): Promise<ObjectInfo> {
    const sidecar = await this.#readSidecar(key, stats);
    return {
      key,
      bytes: stats.size,
      lastModified: stats.mtime,
      ...(sidecar ? { sha256: sidecar.sha256 } : {}),
      ...(sidecar?.contentType === undefined ? {} : { contentType: sidecar.contentType }),
    };
  }

  /** Open an object for reading. Throws {@link ObjectNotFoundError}. */
  async openObject(key: string): Promise<LocalObjectHandle> {
    validateKey(key);
    let handle: FileHandle;
    try {
      handle = await open(this.#objectPath(key), 'r');
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR')) throw new ObjectNotFoundError(key);
      throw error;
    }
    let info: ObjectInfo;
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new ObjectNotFoundError(key);
      info = await this.#info(key, stats);
    } catch (error) {
      await handle.close();
      throw error;
    }
    let taken = false;
    return {
      info,
      stream(range?: ByteRange): Readable {
        if (taken) throw new Error(`The handle for ${JSON.stringify(key)} was already used`);
        const resolved = range === undefined ? {} : resolveRange(key, range, info.bytes);
        taken = true;
        return handle.createReadStream(resolved);
      },
      async close(): Promise<void> {
        if (taken) return;
        taken = true;
        await handle.close();
      },
    };
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    const handle = await this.openObject(key);
    try {
      return handle.stream(range);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async getBytes(key: string, range?: ByteRange): Promise<Buffer> {
    return readAll(await this.getStream(key, range));
  }

  async head(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    let stats: Stats;
    try {
      stats = await stat(this.#objectPath(key));
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR')) return null;
      throw error;
    }
    return stats.isFile() ? this.#info(key, stats) : null;
  }

  /**
   * Entries carry key, size and mtime only (like S3's ListObjectsV2); use {@link head} for the
   * sha256. Keys are in UTF-8 byte order, which is S3's order.
   */
  list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    return this.#walk(slash === -1 ? '' : prefix.slice(0, slash), prefix);
  }

  /**
   * Depth-first walk that yields keys in global byte order: a directory `d` sorts as `d/`, and
   * every key beneath it starts with `d/`, so sorting each directory that way is enough.
   */
  async *#walk(dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    const dir = dirKey === '' ? this.#objects : path.join(this.#objects, ...dirKey.split('/'));
    let entries: { name: string; isDir: boolean; sortKey: Buffer }[];
    try {
      entries = (await readdir(dir, { withFileTypes: true }))
        .filter((entry) => entry.isFile() || entry.isDirectory())
        .map((entry) => ({
          name: entry.name,
          isDir: entry.isDirectory(),
          sortKey: Buffer.from(entry.isDirectory() ? `${entry.name}/` : entry.name),
        }))
        .sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
    } catch (error) {
      if (hasCode(error, 'ENOENT', 'ENOTDIR')) return;
      throw error;
    }
    for (const entry of entries) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDir) {
        const asPrefix = `${key}/`;
        if (asPrefix.startsWith(prefix) || prefix.startsWith(asPrefix)) {
          yield* this.#walk(key, prefix);
        }
      } else if (key.startsWith(prefix)) {
        let stats: Stats;
        try {
          stats = await stat(path.join(dir, entry.name));
        } catch (error) {
          if (hasCode(error, 'ENOENT')) continue; // deleted while listing
          throw error;
        }
        yield { key, bytes: stats.size, lastModified: stats.mtime };
      }
    }
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    await this.#deleteOne(key);
  }

  async deletePrefix(prefix: string): Promise<number> {
    validatePrefix(prefix);
    const keys: string[] = [];
    for await (const { key } of this.list(prefix)) keys.push(key);
    let deleted = 0;
    for (const key of keys) {
      if (await this.#deleteOne(key)) deleted++;
    }
    return deleted;
  }

  async #deleteOne(key: string): Promise<boolean> {
    const target = this.#objectPath(key);
    let existed = true;
    try {
      await rm(target);
    } catch (error) {
      // ERR_FS_EISDIR: `key` is only a directory of other objects, so it is not an object.
      if (!hasCode(error, 'ENOENT', 'ENOTDIR', 'ERR_FS_EISDIR')) throw error;
      existed = false;
    }
    const meta = this.#metaPath(key);
    await rm(meta, { force: true }).catch((error: unknown) => {
      if (!hasCode(error, 'ENOTDIR', 'ERR_FS_EISDIR')) throw error;
    });
    await pruneEmptyDirs(this.#objects, path.dirname(target));
    await pruneEmptyDirs(this.#meta, path.dirname(meta));
    return existed;
  }

  async presignGet(key: string, options: PresignGetOptions): Promise<PresignedUrl> {
    validateKey(key);
    validatePresignGetOptions(options);
    return this.#presign(
      'GET',
      key,
      options.ttlSeconds,
      options.sha256 === undefined ? {} : { sha256: options.sha256 },
    );
  }

  /**
   * The URL carries (and signs) `bytes`, `maxBytes`, `sha256`, `contentType` and `createOnly`;
   * {@link handleLocalStoreRequest} enforces all of them while streaming, so unlike S3 an
   * oversized upload is refused before it is stored.
   */
  async presignPut(key: string, options: PresignPutOptions): Promise<PresignedUrl> {
    validateKey(key);
    validatePresignPutOptions(options);
    const presigned = await this.#presign('PUT', key, options.ttlSeconds, options);
    if (options.bytes !== undefined) presigned.headers['content-length'] = String(options.bytes);
    if (options.contentType !== undefined) presigned.headers['content-type'] = options.contentType;
    return presigned;
  }

  async #presign(
    method: 'GET' | 'PUT',
    key: string,
    ttlSeconds: number,
    constraints?: LocalPresignConstraints,
  ): Promise<PresignedUrl> {
    if (this.#baseUrl === undefined) {
      throw new PresignError(
        `${this.description} has no baseUrl, so it cannot presign URLs; configure the public URL where the coordinator serves /store`,
      );
    }
    return this.#signer.sign(this.#baseUrl, method, key, ttlSeconds, constraints);
  }

  /** {@link LocalUrlSigner.verify} with this store's secret. */
  verifyPresigned(
    method: string,
    key: string,
    query: URLSearchParams,
    now: number = Date.now(),
  ): LocalPresignVerification {
    return this.#signer.verify(method, key, query, now);
  }

  async close(): Promise<void> {}
}

/** Remove `dir` and its ancestors while they are empty, never `stopAt` itself. */
async function pruneEmptyDirs(stopAt: string, dir: string): Promise<void> {
  let current = dir;
  while (current.startsWith(`${stopAt}${path.sep}`)) {
    try {
      await rmdir(current);
    } catch (error) {
      if (hasCode(error, 'ENOTEMPTY', 'EEXIST', 'ENOENT', 'ENOTDIR')) return;
      throw error;
    }
    current = path.dirname(current);
  }
}
