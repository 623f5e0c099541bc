/**
 * Where a manifest and its files come from when sampling offline: an http(s) URL (files resolve
 * against it, as the coordinator serves them) or a file on disk (files resolve against its
 * directory, e.g. the `checkpoints/` folder the demo writes next to `manifest.json`).
 *
 * What it will fetch (docs/security.md "Manifest verification by consumers"):
 *
 * - Origins. A manifest fetched from a URL may name files on that URL's origin only; a manifest
 *   read from a file may name files in its directory only. Any other http(s) origin must be
 *   allowed by name (`allowOrigins`, `sample --allow-origin`); other schemes never are.
 * - Redirects are followed by hand within the origin of the URL asked for, at most 5 hops; a
 *   redirect to another origin is refused (bounded-fetch.ts), allowed origins included.
 * - Sizes. The manifest is at most `maxManifestBytes` (1 MiB). A file is at most the size the
 *   manifest declares for it, which must itself be no more than `maxDownloadBytes` (1 GiB) and no
 *   more than a checkpoint of the manifest's architecture can be (`checkpointSizeBounds`, for the
 *   experts' DiT and the router); both are checked before a byte is fetched, the declared size
 *   while it streams.
 */
import path from 'node:path';
import { checkpointSizeBounds, type NetworkSpec, paramShapesOf } from '@archipelago/models';
import type { EnsembleManifest, ManifestFile } from '@archipelago/protocol';
import { fetchBounded, readFileBounded, showBytes } from './bounded-fetch.js';
import type { FetchFile } from './loaded-ensemble.js';
import {
  checkFile,
  ManifestError,
  manifestFiles,
  parseManifest,
  type VerifyOptions,
  verifyManifest,
} from './manifest.js';

/** The default cap on a manifest's size. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** The default cap on any one file a manifest names, whatever its architecture allows. */
export const MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024;

export interface ManifestSource {
  manifest: EnsembleManifest;
  /** The manifest's own location, for messages. */
  location: string;
  /** The origin of the manifest's URL (after same-origin redirects); null for a file. */
  origin: string | null;
  fetchFile: FetchFile;
}

export interface SourceOptions {
  /** Origins (`https://host:port`) besides the manifest's own that files may be fetched from. */
  allowOrigins?: readonly string[];
  maxManifestBytes?: number;
  maxDownloadBytes?: number;
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/** The origin of `value` (a URL or a bare origin), as `--allow-origin` takes it. */
export function parseOrigin(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ManifestError('origin_not_allowed', `${JSON.stringify(value)} is not an origin`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ManifestError(
      'origin_not_allowed',
      `${JSON.stringify(value)} is not an http(s) origin`,
    );
  return url.origin;
}

/** The largest checkpoint of `architecture` ({kind, ...config}), or null when it is not one. */
function architectureMaxBytes(architecture: Record<string, unknown>): number | null {
  try {
    const { kind, ...config } = architecture;
    const { maxBytes } = checkpointSizeBounds(
      paramShapesOf({ kind, config } as unknown as NetworkSpec),
    );
    return Number.isSafeInteger(maxBytes) && maxBytes > 0 ? maxBytes : null;
  } catch {
    return null;
  }
}

/**
 * Refuses `file` before anything is fetched when the manifest declares it larger than the caps;
 * returns the declared size, which is the most that is read.
 */
function byteLimit(
  manifest: EnsembleManifest,
  file: ManifestFile,
  name: string,
  maxDownloadBytes: number,
): number {
  if (file.bytes > maxDownloadBytes)
    throw new ManifestError(
      'download_too_large',
      `${name}: the manifest says its checkpoint has ${file.bytes} bytes, more than the ${showBytes(maxDownloadBytes)} allowed (--max-download-bytes)`,
    );
  const architecture =
    file === manifest.router.checkpoint
      ? manifest.router.architecture
      : manifest.model.architecture;
  const archMax = architectureMaxBytes(architecture);
  if (archMax !== null && file.bytes > archMax)
    throw new ManifestError(
      'download_too_large',
      `${name}: the manifest says its checkpoint has ${file.bytes} bytes; a checkpoint of its architecture has at most ${archMax}`,
    );
  return file.bytes;
}

/** Refuses a URL a manifest names unless it is http(s) on the manifest's or an allowed origin. */
function checkOrigin(url: URL, name: string, origin: string | null, allowed: Set<string>): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ManifestError('origin_not_allowed', `${name}: ${url.href} is not an http(s) URL`);
  if (url.origin === origin || allowed.has(url.origin)) return;
  throw new ManifestError(
    'origin_not_allowed',
    `${name}: ${url.href} is on ${url.origin}, ${origin ? `not the manifest's origin ${origin}` : 'and the manifest was read from a file'}; --allow-origin ${url.origin} lets it be fetched`,
  );
}

export async function openManifest(
  location: string,
  options: SourceOptions = {},
): Promise<ManifestSource> {
  const allowed = new Set((options.allowOrigins ?? []).map(parseOrigin));
  const maxManifestBytes = options.maxManifestBytes ?? MAX_MANIFEST_BYTES;
  const maxDownloadBytes = options.maxDownloadBytes ?? MAX_DOWNLOAD_BYTES;
  if (isUrl(location)) {
    const { bytes, url: finalUrl } = await fetchBounded(location, 'the manifest', maxManifestBytes);
    // `/api/v1/runs/:id/manifest.json` names the immutable location in Content-Location.
    const manifest = parseManifest(Buffer.from(bytes).toString('utf8'), location);
    const origin = new URL(finalUrl).origin;
    const base = new URL(`/api/v1/ensembles/${manifest.id}/`, finalUrl);
    const resolveBase = /\/ensembles\/ens_[0-9a-f]{32}\/manifest\.json$/.test(
      new URL(finalUrl).pathname,
    )
      ? new URL('.', finalUrl)
      : base;
    return {
      manifest,
      location,
      origin,
      fetchFile: async (file: ManifestFile, name: string) => {
        const limit = byteLimit(manifest, file, name, maxDownloadBytes);
        let url: URL;
        try {
          url = new URL(file.uri, resolveBase);
        } catch {
          throw new ManifestError('invalid_manifest', `${name}: uri ${file.uri} is not a URL`);
        }
        checkOrigin(url, name, origin, allowed);
        return (await fetchBounded(url.href, `${name} checkpoint`, limit)).bytes;
      },
    };
  }
  const text = Buffer.from(
    await readFileBounded(location, 'the manifest', maxManifestBytes, 'invalid_manifest'),
  ).toString('utf8');
  const manifest = parseManifest(text, location);
  const dir = path.dirname(path.resolve(location));
  return {
    manifest,
    location,
    origin: null,
    fetchFile: async (file: ManifestFile, name: string) => {
      const limit = byteLimit(manifest, file, name, maxDownloadBytes);
      if (isUrl(file.uri)) {
        const url = new URL(file.uri);
        checkOrigin(url, name, null, allowed);
        return (await fetchBounded(url.href, `${name} checkpoint`, limit)).bytes;
      }
      const p = path.resolve(dir, file.uri);
      if (!p.startsWith(dir + path.sep))
        throw new ManifestError(
          'invalid_manifest',
          `${name}: uri ${file.uri} points outside ${dir}`,
        );
      return readFileBounded(p, `${name} checkpoint`, limit, 'checkpoint_unavailable');
    },
  };
}

/**
 * Verify a manifest (id, signature, trusted key) and every file it names (size and sha256);
 * returns the files' bytes by name so a sampler does not download them twice.
 * @throws {ManifestError} naming the first problem
 */
export async function verifyEnsemble(
  source: ManifestSource,
  options: VerifyOptions = {},
  onFile: (name: string, bytes: number) => void = () => {},
): Promise<Map<string, Uint8Array>> {
  verifyManifest(source.manifest, options);
  const files = new Map<string, Uint8Array>();
  for (const { name, file } of manifestFiles(source.manifest)) {
    const bytes = await source.fetchFile(file, name);
    checkFile(name, file, bytes);
    files.set(file.uri, bytes);
    onFile(name, bytes.byteLength);
  }
  return files;
}
