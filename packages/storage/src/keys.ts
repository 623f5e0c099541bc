/**
 * Key validation shared by every store.
 *
 * Keys come from the coordinator's own layout (`runs/{runId}/experts/{k}/ckpt-{step}.safetensors`)
 * but some parts (ids, file names) originate from workers, and the local store maps keys straight
 * to file paths. So a key must be a plain relative path that cannot escape the store root, means
 * the same thing on a filesystem and in S3, and is safe to print in logs.
 */
import { InvalidKeyError } from './errors.js';

/** S3's limit (in UTF-8 bytes); we apply it everywhere so both stores accept the same keys. */
export const MAX_KEY_BYTES = 1024;

// Control characters (C0, DEL, C1), lone surrogates, and line/paragraph separators: none of them
// is printable, several break log lines or HTTP headers, and lone surrogates cannot be UTF-8.
const UNPRINTABLE = /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}]/u;

function problemWith(value: string, allowTrailingSlash: boolean): string | null {
  if (Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES) {
    return `longer than ${MAX_KEY_BYTES} bytes`;
  }
  const unprintable = UNPRINTABLE.exec(value);
  if (unprintable) {
    const code = unprintable[0].codePointAt(0) ?? 0;
    return `contains the unprintable character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  if (value.includes('\\')) return 'contains a backslash (use "/" as the separator)';
  if (value.startsWith('/')) return 'starts with "/" (keys are relative)';
  const segments = value.split('/');
  if (allowTrailingSlash && segments.length > 1 && segments.at(-1) === '') segments.pop();
  for (const segment of segments) {
    if (segment === '') return 'contains an empty path segment';
    if (segment === '..') return 'contains a ".." segment';
    if (segment === '.') return 'contains a "." segment';
  }
  return null;
}

/**
 * Throw {@link InvalidKeyError} unless `key` is a non-empty relative `/`-separated path with no
 * `.`/`..`/empty segments, no backslashes, no unprintable characters, at most 1024 UTF-8 bytes.
 */
export function validateKey(key: string): void {
  if (typeof key !== 'string') throw new InvalidKeyError(String(key), 'is not a string');
  if (key === '') throw new InvalidKeyError(key, 'is empty');
  const problem = problemWith(key, false);
  if (problem) throw new InvalidKeyError(key, problem);
}

/**
 * Like {@link validateKey}, for a listing prefix: it may be empty (everything) and may end with
 * `/` (`datasets/ab12/`); a partial last segment (`datasets/ab`) is a plain string prefix.
 */
export function validatePrefix(prefix: string): void {
  if (typeof prefix !== 'string') throw new InvalidKeyError(String(prefix), 'is not a string');
  if (prefix === '') return;
  const problem = problemWith(prefix, true);
  if (problem) throw new InvalidKeyError(prefix, problem);
}
