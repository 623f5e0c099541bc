/**
 * Downloads for the offline `sample` command, which reads manifests and checkpoints from hosts
 * it has no reason to trust: every body is capped while it streams (a Content-Length over the
 * cap is refused before any byte is read, and the bytes are counted whether or not one is sent),
 * and redirects are followed by hand, only to the origin of the URL that was asked for, at most
 * {@link MAX_REDIRECTS} hops. A redirect to any other origin is refused, whatever the origins the
 * caller allows for the first URL.
 */
import { open } from 'node:fs/promises';
import { ManifestError } from './manifest.js';

/** Same-origin redirects followed before giving up. */
export const MAX_REDIRECTS = 5;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** `bytes` as a short figure for messages. */
export const showBytes = (bytes: number) =>
  bytes >= 1024 * 1024
    ? `${bytes} bytes (${(bytes / 1024 / 1024).toFixed(1)} MiB)`
    : `${bytes} bytes`;

export interface BoundedResponse {
  bytes: Uint8Array;
  /** Where the bytes came from after any same-origin redirects. */
  url: string;
}

/**
 * GET `url` and return its body, at most `maxBytes` of it.
 * @throws {ManifestError} `download_too_large` (Content-Length or the counted bytes exceed
 *   `maxBytes`), `redirect_refused` (a redirect to another origin, without a Location, or more
 *   than {@link MAX_REDIRECTS}), `checkpoint_unavailable` (network error or a non-2xx status)
 */
export async function fetchBounded(
  url: string,
  what: string,
  maxBytes: number,
): Promise<BoundedResponse> {
  const origin = new URL(url).origin;
  let current = url;
  for (let hop = 0; ; hop++) {
    let res: Response;
    try {
      res = await fetch(current, { redirect: 'manual' });
    } catch (err) {
      throw new ManifestError(
        'checkpoint_unavailable',
        `cannot fetch ${what} from ${current}: ${(err as Error).message}`,
      );
    }
    if (REDIRECTS.has(res.status)) {
      await res.body?.cancel();
      const location = res.headers.get('location');
      if (!location)
        throw new ManifestError(
          'redirect_refused',
          `${what}: GET ${current} answered ${res.status} with no Location`,
        );
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new ManifestError(
          'redirect_refused',
          `${what}: GET ${current} redirects to an invalid URL ${JSON.stringify(location)}`,
        );
      }
      if (next.origin !== origin)
        throw new ManifestError(
          'redirect_refused',
          `${what}: GET ${current} redirects to ${next.href}, on another origin than ${origin}; redirects are followed only within one origin`,
        );
      if (hop + 1 > MAX_REDIRECTS)
        throw new ManifestError(
          'redirect_refused',
          `${what}: more than ${MAX_REDIRECTS} redirects from ${url}`,
        );
      current = next.href;
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new ManifestError(
        'checkpoint_unavailable',
        `${what}: GET ${current} answered ${res.status}`,
      );
    }
    const announced = res.headers.get('content-length');
    if (announced !== null && /^\d+$/.test(announced.trim()) && Number(announced) > maxBytes) {
      await res.body?.cancel();
      throw new ManifestError(
        'download_too_large',
        `${what}: GET ${current} announces ${announced} bytes (Content-Length), more than the ${showBytes(maxBytes)} allowed`,
      );
    }
    return { bytes: await readCapped(res, current, what, maxBytes), url: current };
  }
}

async function readCapped(
  res: Response,
  url: string,
  what: string,
  maxBytes: number,
): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel();
        throw new ManifestError(
          'download_too_large',
          `${what}: GET ${url} sent more than the ${showBytes(maxBytes)} allowed`,
        );
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof ManifestError) throw err;
    throw new ManifestError(
      'checkpoint_unavailable',
      `${what}: GET ${url} failed while reading: ${(err as Error).message}`,
    );
  }
  return concat(chunks, total);
}

/** The chunks in one fresh array (offset 0, its own buffer: parsers may view `.buffer`). */
function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * A file's bytes, at most `maxBytes` of them: its size is looked at first and the bytes counted
 * as they are read (a file that grows meanwhile is refused too).
 * @throws {ManifestError} `download_too_large`, or `unreadable` as the caller names it
 */
export async function readFileBounded(
  file: string,
  what: string,
  maxBytes: number,
  unreadable: 'invalid_manifest' | 'checkpoint_unavailable',
): Promise<Uint8Array> {
  const tooLarge = (size: string) =>
    new ManifestError(
      'download_too_large',
      `${what}: ${file} has ${size}, more than the ${showBytes(maxBytes)} allowed`,
    );
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new ManifestError(unreadable, `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) throw tooLarge(`${size} bytes`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const chunk = new Uint8Array(Math.min(maxBytes + 1 - total, 1024 * 1024));
      const { bytesRead } = await handle.read(chunk, 0, chunk.byteLength, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge('more bytes');
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return concat(chunks, total);
  } catch (err) {
    if (err instanceof ManifestError) throw err;
    throw new ManifestError(unreadable, `cannot read ${file}: ${(err as Error).message}`);
  } finally {
    await handle.close();
  }
}
