/**
 * Errors every `ObjectStore` implementation throws, so callers (the coordinator's HTTP
 * layer, the worker API) can map them to responses without knowing which backend is configured.
 *
 * Each error carries a stable machine-readable `code` next to its human message.
 */
import type { ByteRange } from './object-store.js';

/** Base class; `code` is stable and safe to put in API error bodies. */
export abstract class ObjectStoreError extends Error {
  abstract readonly code: string;
}

/** A key or prefix is not a safe relative `/`-separated path. */
export class InvalidKeyError extends ObjectStoreError {
  readonly code = 'invalid_key';

  constructor(
    readonly key: string,
    readonly problem: string,
  ) {
    super(`Invalid object key ${JSON.stringify(key)}: ${problem}`);
    this.name = 'InvalidKeyError';
  }
}

/** The object does not exist (or vanished while being opened). */
export class ObjectNotFoundError extends ObjectStoreError {
  readonly code = 'not_found';

  constructor(readonly key: string) {
    super(`Object ${JSON.stringify(key)} does not exist`);
    this.name = 'ObjectNotFoundError';
  }
}

/**
 * The bytes of a put do not match what the caller promised (sha256 or size). The store
 * guarantees that nothing was stored under the key when this is thrown.
 */
export class IntegrityError extends ObjectStoreError {
  readonly code = 'integrity';

  constructor(
    readonly key: string,
    readonly check: 'sha256' | 'bytes',
    readonly expected: string | number,
    readonly actual: string | number,
  ) {
    super(
      `Integrity check failed for ${JSON.stringify(key)}: expected ${check} ${expected}, got ${actual}`,
    );
    this.name = 'IntegrityError';
  }
}

/**
 * A create-only put (`createOnly`) found an object under the key already: nothing was written and
 * the existing object is unchanged. Objects Archipelago accepts are never replaced.
 */
export class ObjectExistsError extends ObjectStoreError {
  readonly code = 'already_exists';

  constructor(readonly key: string) {
    super(`Object ${JSON.stringify(key)} already exists; create-only puts never replace one`);
    this.name = 'ObjectExistsError';
  }
}

/**
 * Stored bytes do not hash to the sha256 recorded for them (on disk corruption, tampering): a read
 * that checks fails with this instead of handing them out.
 */
export class CorruptObjectError extends ObjectStoreError {
  readonly code = 'corrupt_object';

  constructor(
    readonly key: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`Object ${JSON.stringify(key)} hashes to ${actual}, not the recorded ${expected}`);
    this.name = 'CorruptObjectError';
  }
}

/** A presigned URL cannot be produced (no public URL configured, TTL or size out of bounds). */
export class PresignError extends ObjectStoreError {
  readonly code = 'presign';

  constructor(message: string) {
    super(message);
    this.name = 'PresignError';
  }
}

/**
 * A byte range is malformed or starts at or beyond the end of the object (HTTP 416). An `end`
 * beyond the object is not an error: like HTTP and S3, the range is clamped to the object.
 */
export class InvalidRangeError extends ObjectStoreError {
  readonly code = 'invalid_range';

  constructor(
    readonly key: string,
    readonly range: ByteRange,
    readonly size?: number,
  ) {
    const where = size === undefined ? '' : ` of a ${size}-byte object`;
    super(
      `Range ${range.start}-${range.end ?? ''} is not satisfiable for ${JSON.stringify(key)}${where}`,
    );
    this.name = 'InvalidRangeError';
  }
}
