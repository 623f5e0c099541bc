import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function writeSecretFile(file: string, contents: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // `wx`: never overwrite a secret another process created meanwhile.
  writeFileSync(file, contents, { mode: 0o600, flag: 'wx' });
}

export interface AdminKey {
  /** Constant-time check of a presented key. */
  verify(presented: string | undefined): boolean;
  /** The plaintext key when it was generated just now (print it once), else undefined. */
  generated?: string;
  /** Where the key's hash is kept, when it is not configured. */
  file?: string;
}

/**
 * The admin API key: the configured one, else the one generated on first start. Only its sha256
 * is stored (`<dataDir>/secrets/admin-key.sha256`), so the plaintext is shown exactly once.
 */
export function loadAdminKey(dataDir: string, configured?: string): AdminKey {
  const verifyAgainst = (hash: Buffer) => (presented: string | undefined) =>
    presented !== undefined && timingSafeEqual(sha256(presented), hash);
  if (configured) return { verify: verifyAgainst(sha256(configured)) };
  const file = path.join(dataDir, 'secrets', 'admin-key.sha256');
  if (existsSync(file)) {
    const hex = readFileSync(file, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/.test(hex)) {
      throw new Error(`${file} is not a sha256 hex digest; delete it to generate a new admin key`);
    }
    return { verify: verifyAgainst(Buffer.from(hex, 'hex')), file };
  }
  const generated = newAdminKey();
  writeSecretFile(file, `${sha256(generated).toString('hex')}\n`);
  return { verify: verifyAgainst(sha256(generated)), generated, file };
}

/** Replace the stored admin key hash with a new key's; returns the new plaintext key. */
export function rotateAdminKey(dataDir: string): string {
  const file = path.join(dataDir, 'secrets', 'admin-key.sha256');
  const key = newAdminKey();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${sha256(key).toString('hex')}\n`, { mode: 0o600 });
  return key;
}

function newAdminKey(): string {
  return `ak_${randomBytes(24).toString('base64url')}`;
}

/** A random secret kept in `<dataDir>/secrets/<name>`, created on first use. */
export function loadOrCreateSecret(dataDir: string, name: string, bytes = 32): Buffer {
  const file = path.join(dataDir, 'secrets', name);
  if (!existsSync(file)) {
    try {
      writeSecretFile(file, randomBytes(bytes).toString('hex'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
}
