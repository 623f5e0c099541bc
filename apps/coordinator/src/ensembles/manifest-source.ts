/**
 * Where a manifest and its files come from when sampling offline: an http(s) URL (files resolve
 * against it, as the coordinator serves them) or a file on disk (files resolve against its
 * directory, e.g. the `checkpoints/` folder the demo writes next to `manifest.json`).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { EnsembleManifest, ManifestFile } from '@archipelago/protocol';
import type { FetchFile } from './loaded-ensemble.js';
import {
  checkFile,
  ManifestError,
  manifestFiles,
  parseManifest,
  type VerifyOptions,
  verifyManifest,
} from './manifest.js';

export interface ManifestSource {
  manifest: EnsembleManifest;
  /** The manifest's own location, for messages. */
  location: string;
  fetchFile: FetchFile;
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

async function fetchBytes(url: string, what: string): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new ManifestError(
      'checkpoint_unavailable',
      `cannot fetch ${what} from ${url}: ${(err as Error).message}`,
    );
  }
  if (!res.ok)
    throw new ManifestError('checkpoint_unavailable', `${what}: GET ${url} answered ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

export async function openManifest(location: string): Promise<ManifestSource> {
  if (isUrl(location)) {
    const bytes = await fetchBytes(location, 'the manifest');
    // `/api/v1/runs/:id/manifest.json` names the immutable location in Content-Location.
    const manifest = parseManifest(Buffer.from(bytes).toString('utf8'), location);
    const base = new URL(`/api/v1/ensembles/${manifest.id}/`, location);
    const resolveBase = /\/ensembles\/ens_[0-9a-f]{32}\/manifest\.json$/.test(
      new URL(location).pathname,
    )
      ? new URL('.', location)
      : base;
    return {
      manifest,
      location,
      fetchFile: (file: ManifestFile, name: string) =>
        fetchBytes(new URL(file.uri, resolveBase).href, `${name} checkpoint`),
    };
  }
  let text: string;
  try {
    text = await readFile(location, 'utf8');
  } catch (err) {
    throw new ManifestError(
      'invalid_manifest',
      `cannot read ${location}: ${(err as Error).message}`,
    );
  }
  const manifest = parseManifest(text, location);
  const dir = path.dirname(path.resolve(location));
  return {
    manifest,
    location,
    fetchFile: async (file: ManifestFile, name: string) => {
      if (isUrl(file.uri)) return fetchBytes(file.uri, `${name} checkpoint`);
      const p = path.resolve(dir, file.uri);
      if (!p.startsWith(dir + path.sep))
        throw new ManifestError(
          'invalid_manifest',
          `${name}: uri ${file.uri} points outside ${dir}`,
        );
      try {
        return new Uint8Array(await readFile(p));
      } catch (err) {
        throw new ManifestError(
          'checkpoint_unavailable',
          `${name} checkpoint: cannot read ${p}: ${(err as Error).message}`,
        );
      }
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
