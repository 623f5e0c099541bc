import type { Readable } from 'node:stream';

/** Inclusive byte range, as in an HTTP `Range: bytes=start-end` header. */
export interface ByteRange {
  start: number;
  /** Inclusive end; omitted means "to the end of the object". */
  end?: number;
}

export interface PutOptions {
  contentType?: string;
  /** Expected lowercase hex sha256; the put fails (and stores nothing) when the bytes differ. */
  sha256?: string;
  /**
   * Refuse to replace an existing object: the put throws {@link ObjectExistsError} and the object
   * under the key stays as it was (S3: `If-None-Match: *`).
   */
  createOnly?: boolean;
}

export interface ObjectInfo {
  key: string;
  bytes: number;
  /** Lowercase hex sha256 when the store knows it (it records it on every put it performs). */
  sha256?: string;
  lastModified: Date;
  contentType?: string;
}

export interface PresignGetOptions {
  /** Lifetime of the URL in seconds (1 s to 7 days). */
  ttlSeconds: number;
  /**
   * The sha256 the served bytes must have. The local store signs it into the URL and never
   * completes a response whose bytes hash otherwise; S3 cannot check it (the client must).
   */
  sha256?: string;
}

export interface PresignPutOptions {
  ttlSeconds: number;
  /** Exact size the upload must have, when known in advance (signed into the URL). */
  bytes?: number;
  /** Upper bound on the upload's size. */
  maxBytes?: number;
  contentType?: string;
  /** Expected lowercase hex sha256 of the upload. */
  sha256?: string;
  /**
   * The upload may only create the object, never replace one (local store: refused with
   * `already_exists`; S3: a signed `If-None-Match: *` header, which S3 enforces).
   */
  createOnly?: boolean;
}

export interface PresignedUrl {
  url: string;
  method: 'GET' | 'PUT';
  expiresAt: Date;
  /** Headers the client must send with the request (e.g. content-length, content-type). */
  headers: Record<string, string>;
}

/**
 * One interface over every object store Archipelago writes to.
 *
 * Keys are `/`-separated relative paths (`datasets/ab12/shards/0.bin`); every method validates
 * them (no `..`, no absolute paths, no empty segments) and throws {@link InvalidKeyError}.
 */
export interface ObjectStore {
  /** Human-readable description for logs, e.g. `local:/srv/data/objects` or `s3://bucket/prefix`. */
  readonly description: string;
  /** Store bytes or a stream under `key`, atomically: readers see the whole object or none. */
  put(
    key: string,
    body: Uint8Array | Readable | AsyncIterable<Uint8Array>,
    options?: PutOptions,
  ): Promise<ObjectInfo>;
  /** Stream an object (or a byte range of it). Throws {@link ObjectNotFoundError}. */
  getStream(key: string, range?: ByteRange): Promise<Readable>;
  /** Read an object (or a byte range of it) fully into memory. Throws {@link ObjectNotFoundError}. */
  getBytes(key: string, range?: ByteRange): Promise<Buffer>;
  /** Metadata, or `null` when the object does not exist. */
  head(key: string): Promise<ObjectInfo | null>;
  /** Every object whose key starts with `prefix`, in lexicographic key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Delete one object; deleting a missing object is not an error. */
  delete(key: string): Promise<void>;
  /** Delete every object under `prefix`; returns how many were deleted. */
  deletePrefix(prefix: string): Promise<number>;
  presignGet(key: string, options: PresignGetOptions): Promise<PresignedUrl>;
  presignPut(key: string, options: PresignPutOptions): Promise<PresignedUrl>;
  /** Release sockets/handles. */
  close(): Promise<void>;
}
