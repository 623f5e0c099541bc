/**
 * The keys a consumer pins to verify manifests against (`sample --public-key`,
 * `--public-key-file`): raw 32-byte Ed25519 public keys, base64url, as `GET /api/v1/keys` lists
 * them. A key file holds one of:
 *
 * - the JSON of `GET /api/v1/keys` (`{"keys": [{"publicKey": …}, …]}`) or one of its entries;
 * - PEM SubjectPublicKeyInfo blocks (the `pem` field of that answer);
 * - keys one per line (blank lines and lines starting with `#` are skipped).
 *
 * Every key in the file is trusted.
 */
import { createPublicKey } from 'node:crypto';
import { readFileBounded } from './bounded-fetch.js';
import { ManifestError } from './manifest.js';
import { rawPublicKey } from './signing-key.js';

/** A key file is small; anything larger is not one. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

const clip = (s: string) => (s.length > 60 ? `${s.slice(0, 57)}...` : s);

/**
 * `value` as a raw Ed25519 public key in canonical base64url.
 * @throws {ManifestError} `bad_public_key`
 */
export function checkPublicKey(value: string, source: string): string {
  const v = value.trim().replace(/=+$/, '');
  const raw = /^[A-Za-z0-9_-]+$/.test(v) ? Buffer.from(v, 'base64url') : Buffer.alloc(0);
  if (raw.length !== 32)
    throw new ManifestError(
      'bad_public_key',
      `${source}: ${JSON.stringify(clip(value.trim()))} is not an Ed25519 public key (32 raw bytes, base64url, as GET /api/v1/keys lists them)`,
    );
  return raw.toString('base64url');
}

function fromPem(pem: string, source: string): string {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new ManifestError(
      'bad_public_key',
      `${source}: unreadable PEM: ${(err as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new ManifestError(
      'bad_public_key',
      `${source}: holds a ${key.asymmetricKeyType} key, not an Ed25519 one`,
    );
  return rawPublicKey(key).toString('base64url');
}

/**
 * Every key in the key file `file`.
 * @throws {ManifestError} `bad_public_key` when it cannot be read, holds no key or a bad one
 */
export async function readKeyFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = Buffer.from(
      await readFileBounded(file, 'the key file', MAX_KEY_FILE_BYTES, 'invalid_manifest'),
    ).toString('utf8');
  } catch (err) {
    throw new ManifestError('bad_public_key', (err as Error).message);
  }
  const trimmed = text.trim();
  let keys: string[];
  if (trimmed.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      throw new ManifestError('bad_public_key', `${file} is not JSON: ${(err as Error).message}`);
    }
    const entries = Array.isArray((value as { keys?: unknown }).keys)
      ? ((value as { keys: unknown[] }).keys as unknown[])
      : [value];
    keys = entries.map((e, i) => {
      const publicKey = (e as { publicKey?: unknown } | null)?.publicKey;
      if (typeof publicKey !== 'string')
        throw new ManifestError(
          'bad_public_key',
          `${file}: key ${i} has no publicKey (expected the JSON of GET /api/v1/keys)`,
        );
      return checkPublicKey(publicKey, file);
    });
  } else if (trimmed.includes('-----BEGIN')) {
    const blocks = trimmed.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g);
    keys = (blocks ?? []).map((pem) => fromPem(pem, file));
  } else {
    keys = trimmed
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => checkPublicKey(l, file));
  }
  if (keys.length === 0) throw new ManifestError('bad_public_key', `${file} holds no public key`);
  return keys;
}
