/**
 * Signing and verifying ensemble manifests (the scheme is documented in
 * packages/protocol/src/ensembles.ts): content-addressed id, Ed25519 signature over the canonical
 * JSON of the body plus its id.
 */
import { createHash, sign, verify } from 'node:crypto';
import {
  canonicalJson,
  EnsembleManifest,
  type ManifestBody,
  type ManifestFile,
} from '@archipelago/protocol';
import { Value } from 'typebox/value';
import { keyIdOf, publicKeyFromRaw, type SigningKey } from './signing-key.js';

export class ManifestError extends Error {
  constructor(
    readonly code:
      | 'invalid_manifest'
      | 'id_mismatch'
      | 'bad_signature'
      | 'untrusted_key'
      | 'checkpoint_mismatch'
      | 'checkpoint_unavailable'
      // Where a manifest and its files may come from (`sample --manifest`, manifest-source.ts).
      /** No key to verify against was given, and `--insecure` was not. */
      | 'public_key_required'
      /** A key (or a key file) that is not a raw 32-byte Ed25519 public key. */
      | 'bad_public_key'
      /** A URL on another origin than the manifest's that `--allow-origin` does not name. */
      | 'origin_not_allowed'
      /** A redirect to another origin (or too many). */
      | 'redirect_refused'
      /** A manifest or file larger than its cap (Content-Length, counted bytes or declared size). */
      | 'download_too_large',
    message: string,
  ) {
    super(message);
    this.name = 'ManifestError';
  }
}

/** `ens_` + the first 32 hex digits of sha256(canonicalJson(body)). */
export function manifestId(body: ManifestBody): string {
  return `ens_${createHash('sha256').update(canonicalJson(body)).digest('hex').slice(0, 32)}`;
}

function bodyOf(manifest: EnsembleManifest): ManifestBody {
  const { id: _id, signature: _signature, ...body } = manifest;
  return body;
}

export function signManifest(body: ManifestBody, key: SigningKey): EnsembleManifest {
  const id = manifestId(body);
  const value = sign(null, Buffer.from(canonicalJson({ ...body, id })), key.privateKey);
  return {
    ...body,
    id,
    signature: {
      alg: 'ed25519',
      keyId: key.keyId,
      publicKey: key.publicKeyRaw,
      value: value.toString('base64url'),
    },
  };
}

/** Parse JSON text as a manifest, checking it against the v1 and v2 schemas; names the first problem. */
export function parseManifest(text: string, source = 'manifest'): EnsembleManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ManifestError('invalid_manifest', `${source} is not JSON: ${(err as Error).message}`);
  }
  if (!Value.Check(EnsembleManifest, value)) {
    const first = Value.Errors(EnsembleManifest, value)[0];
    throw new ManifestError(
      'invalid_manifest',
      `${source} is not an ensemble manifest v1 or v2: ${first ? `${first.instancePath || '/'} ${first.message}` : 'schema mismatch'}`,
    );
  }
  return value as EnsembleManifest;
}

export interface VerifyOptions {
  /** Raw base64url public keys to trust; by default the key the manifest carries. */
  trustedKeys?: string[];
}

/**
 * Checks the id (content address) and the Ed25519 signature.
 * @throws {ManifestError} naming what does not match
 */
export function verifyManifest(manifest: EnsembleManifest, options: VerifyOptions = {}): void {
  const body = bodyOf(manifest);
  const id = manifestId(body);
  if (id !== manifest.id) {
    throw new ManifestError(
      'id_mismatch',
      `manifest id ${manifest.id} does not match its content (${id}): it was modified after publishing`,
    );
  }
  const { signature } = manifest;
  if (options.trustedKeys && !options.trustedKeys.includes(signature.publicKey)) {
    throw new ManifestError(
      'untrusted_key',
      `manifest is signed by key ${signature.keyId}, which is not among the trusted keys`,
    );
  }
  const raw = Buffer.from(signature.publicKey, 'base64url');
  if (keyIdOf(raw) !== signature.keyId) {
    throw new ManifestError(
      'bad_signature',
      `signature keyId ${signature.keyId} does not match its public key`,
    );
  }
  let ok = false;
  try {
    ok = verify(
      null,
      Buffer.from(canonicalJson({ ...body, id: manifest.id })),
      publicKeyFromRaw(signature.publicKey),
      Buffer.from(signature.value, 'base64url'),
    );
  } catch {
    ok = false;
  }
  if (!ok)
    throw new ManifestError(
      'bad_signature',
      `the Ed25519 signature of manifest ${manifest.id} does not verify`,
    );
}

/** Every file a manifest points at, named for messages. */
export function manifestFiles(manifest: EnsembleManifest): { name: string; file: ManifestFile }[] {
  return [
    ...manifest.experts.map((e) => ({ name: `expert ${e.cluster}`, file: e.checkpoint })),
    { name: 'router', file: manifest.router.checkpoint },
  ];
}

/** Throws unless `bytes` are the file the manifest describes. */
export function checkFile(name: string, file: ManifestFile, bytes: Uint8Array): void {
  if (bytes.byteLength !== file.bytes) {
    throw new ManifestError(
      'checkpoint_mismatch',
      `${name} checkpoint (${file.uri}) has ${bytes.byteLength} bytes, the manifest says ${file.bytes}`,
    );
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== file.sha256) {
    throw new ManifestError(
      'checkpoint_mismatch',
      `${name} checkpoint (${file.uri}) has sha256 ${sha}, the manifest says ${file.sha256}`,
    );
  }
}
