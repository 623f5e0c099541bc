/**
 * Validation of presign options shared by both stores, so a TTL or size that one store refuses
 * is refused by the other and tests against the local store predict production on S3.
 */
import { PresignError } from './errors.js';
import type { PresignGetOptions, PresignPutOptions } from './object-store.js';
import { isSha256Hex } from './sha256.js';

/** Shortest URL lifetime. */
export const MIN_PRESIGN_TTL_SECONDS = 1;
/** Longest URL lifetime: S3 SigV4 refuses anything longer than 7 days. */
export const MAX_PRESIGN_TTL_SECONDS = 7 * 24 * 60 * 60;

const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

function validateTtl(ttlSeconds: number): void {
  if (
    !Number.isInteger(ttlSeconds) ||
    ttlSeconds < MIN_PRESIGN_TTL_SECONDS ||
    ttlSeconds > MAX_PRESIGN_TTL_SECONDS
  ) {
    throw new PresignError(
      `ttlSeconds must be an integer from ${MIN_PRESIGN_TTL_SECONDS} to ${MAX_PRESIGN_TTL_SECONDS} (7 days), got ${ttlSeconds}`,
    );
  }
}

function validateSize(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new PresignError(`${name} must be a non-negative integer, got ${value}`);
  }
}

function validateSha256(sha256: string | undefined): void {
  if (sha256 !== undefined && !isSha256Hex(sha256)) {
    throw new PresignError(
      `sha256 must be 64 lowercase hex characters, got ${JSON.stringify(sha256)}`,
    );
  }
}

/** Throw {@link PresignError} unless the options are usable by every store. */
export function validatePresignGetOptions(options: PresignGetOptions): void {
  validateTtl(options.ttlSeconds);
  validateSha256(options.sha256);
}

/** Throw {@link PresignError} unless the options are usable by every store. */
export function validatePresignPutOptions(options: PresignPutOptions): void {
  validateTtl(options.ttlSeconds);
  validateSize('bytes', options.bytes);
  validateSize('maxBytes', options.maxBytes);
  if (
    options.bytes !== undefined &&
    options.maxBytes !== undefined &&
    options.bytes > options.maxBytes
  ) {
    throw new PresignError(`bytes (${options.bytes}) exceeds maxBytes (${options.maxBytes})`);
  }
  validateSha256(options.sha256);
  if (options.contentType !== undefined && !PRINTABLE_ASCII.test(options.contentType)) {
    throw new PresignError(
      `contentType must be printable ASCII, got ${JSON.stringify(options.contentType)}`,
    );
  }
}
