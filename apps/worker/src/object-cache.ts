/**
 * Verified downloads through presigned URLs: every object is checked against the size and sha256
 * the coordinator announced. Shards are kept in `cache/<sha256>.bin` and re-verified on reuse; a
 * file that no longer matches is deleted and fetched again.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { ObjectRef } from '@archipelago/protocol';

export class DownloadError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DownloadError';
  }
}

export interface ObjectCacheOptions {
  /** Attempts per download (network errors, 5xx, a hash mismatch). Default 3. */
  attempts?: number;
  /** Time limit of one download. Default 10 minutes. */
  timeoutMs?: number;
  log?: (message: string) => void;
  /** Write a file atomically (WorkDir.writeAtomic). */
  write: (file: string, data: Uint8Array) => void;
}

export const sha256Hex = (bytes: Uint8Array): string =>
  createHash('sha256').update(bytes).digest('hex');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ObjectCache {
  constructor(
    readonly dir: string,
    private readonly options: ObjectCacheOptions,
  ) {}

  /** Where an object with this sha256 is cached. */
  pathOf(sha256: string): string {
    return path.join(this.dir, `${sha256}.bin`);
  }

  /** A cached copy whose bytes still hash to `sha256`, or null (a corrupt copy is deleted). */
  cached(sha256: string): Uint8Array | null {
    const file = this.pathOf(sha256);
    if (!existsSync(file)) return null;
    const bytes = new Uint8Array(readFileSync(file));
    if (sha256Hex(bytes) === sha256) return bytes;
    this.options.log?.(
      `cached ${path.basename(file)} is corrupt; deleting it and downloading again`,
    );
    rmSync(file, { force: true });
    return null;
  }

  /**
   * The object's bytes: from the cache when `cache` and a verified copy is there, else downloaded
   * and verified (and then cached when `cache`).
   * @throws {DownloadError} when every attempt failed or the bytes never matched
   */
  async get(ref: ObjectRef, what: string, cache: boolean): Promise<Uint8Array> {
    if (cache) {
      const hit = this.cached(ref.sha256);
      if (hit) return hit;
    }
    const bytes = await this.download(ref, what);
    if (cache) this.options.write(this.pathOf(ref.sha256), bytes);
    return bytes;
  }

  private async download(ref: ObjectRef, what: string): Promise<Uint8Array> {
    const attempts = this.options.attempts ?? 3;
    let last = '';
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await sleep(500 * 2 ** i);
      try {
        const res = await fetch(ref.url, {
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 600_000),
        });
        if (!res.ok) {
          last = `HTTP ${res.status} ${(await res.text()).slice(0, 300)}`;
          // 4xx (an expired or bad URL) will not get better by retrying.
          if (res.status >= 400 && res.status < 500) break;
          continue;
        }
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (bytes.byteLength !== ref.bytes) {
          last = `got ${bytes.byteLength} bytes, expected ${ref.bytes}`;
          continue;
        }
        const actual = sha256Hex(bytes);
        if (actual !== ref.sha256) {
          last = `sha256 ${actual} does not match the announced ${ref.sha256}`;
          continue;
        }
        return bytes;
      } catch (err) {
        last = (err as Error).message;
      }
      this.options.log?.(`download of ${what} failed (${last}); retrying`);
    }
    throw new DownloadError(`cannot download ${what}: ${last}`);
  }
}
