/**
 * HTTP side of {@link LocalObjectStore}'s presigned URLs: what S3 does for the S3 store.
 *
 * It works on raw `node:http` objects only, so the coordinator can mount it under any framework.
 * The request body must reach it unread: with Fastify, give the `/store/*` routes a pass-through
 * content-type parser (`addContentTypeParser('*', (_req, _payload, done) => done(null))`, which
 * also lifts `bodyLimit`, since the URL carries its own limits), then `reply.hijack()` and pass
 * `request.raw`/`reply.raw`.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import {
  CorruptObjectError,
  IntegrityError,
  InvalidKeyError,
  ObjectExistsError,
  ObjectNotFoundError,
} from './errors.js';
import { validateKey } from './keys.js';
import type { LocalObjectHandle, LocalObjectStore } from './local-store.js';
import type { LocalPresignGrant } from './local-url-signer.js';
import { verifySha256 } from './sha256.js';

/** Codes of the JSON error bodies this handler sends (`{ error: { code, message } }`). */
export type LocalStoreErrorCode =
  | 'method_not_allowed'
  | 'invalid_key'
  | 'malformed_url'
  | 'bad_signature'
  | 'wrong_method'
  | 'expired'
  | 'not_found'
  | 'invalid_range'
  | 'too_large'
  | 'size_mismatch'
  | 'sha256_mismatch'
  | 'already_exists'
  | 'upload_closed'
  | 'corrupt_object'
  | 'internal';

export interface LocalStoreRequestOptions {
  /**
   * Asked before a PUT whose URL verified: a reason to refuse it (403 `upload_closed`), or null.
   * The coordinator refuses uploads whose lease or checkpoint is no longer open, so a URL dies
   * with its lease rather than at its expiry.
   */
  allowPut?: (grant: LocalPresignGrant) => Promise<string | null> | string | null;
}

/** The upload grew past what its URL allows; thrown inside the body stream to abort the put. */
class UploadTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Upload exceeds the ${limit}-byte limit of this URL`);
    this.name = 'UploadTooLargeError';
  }
}

function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  code: LocalStoreErrorCode,
  message: string,
): void {
  if (!req.complete) {
    // Refusing mid-upload: drain what is in flight and drop the connection rather than leave
    // unread body bytes on a keep-alive socket.
    res.setHeader('connection', 'close');
    req.resume();
  }
  sendJson(res, status, { error: { code, message } });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(payload));
  res.setHeader('cache-control', 'no-store');
  res.end(payload);
}

/**
 * A single `Range: bytes=…` against an object of `size` bytes: the inclusive range to serve,
 * `'unsatisfiable'` (416), or `undefined` to serve the whole object (no header, several ranges
 * or a syntax error, which RFC 9110 says to ignore).
 */
export function parseRangeHeader(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header === undefined ? null : /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!match) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? Number.POSITIVE_INFINITY : Number(last);
  if (end < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}

/** The sha256 of a whole object, read through once. */
async function hashObject(store: LocalObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await store.getStream(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * GET/HEAD. Bytes are checked against `expected` (the URL's signed sha256, else the one the store
 * recorded): a whole-object response never completes when they differ (its last chunk is held
 * back and the connection dropped); a range is only served after the whole object checked out.
 */
async function serveGet(
  store: LocalObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
  signedSha256: string | undefined,
): Promise<void> {
  let handle: LocalObjectHandle;
  try {
    handle = await store.openObject(key);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) {
      return sendError(req, res, 404, 'not_found', error.message);
    }
    throw error;
  }
  const { info } = handle;
  const expected = signedSha256 ?? info.sha256;
  const range = parseRangeHeader(req.headers.range, info.bytes);
  if (range === 'unsatisfiable') {
    await handle.close();
    res.setHeader('content-range', `bytes */${info.bytes}`);
    return sendError(
      req,
      res,
      416,
      'invalid_range',
      `Range ${req.headers.range} is not satisfiable for a ${info.bytes}-byte object`,
    );
  }
  res.statusCode = range ? 206 : 200;
  res.setHeader('content-type', info.contentType ?? 'application/octet-stream');
  // Uploaded bytes are served from the coordinator's origin: never let a browser sniff them.
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('accept-ranges', 'bytes');
  res.setHeader('last-modified', info.lastModified.toUTCString());
  if (info.sha256 !== undefined) res.setHeader('etag', `"${info.sha256}"`);
  if (range) {
    res.setHeader('content-range', `bytes ${range.start}-${range.end}/${info.bytes}`);
    res.setHeader('content-length', range.end - range.start + 1);
  } else {
    res.setHeader('content-length', info.bytes);
  }
  const head = req.method?.toUpperCase() === 'HEAD';
  if (!head && range && expected !== undefined) {
    const actual = await hashObject(store, key).catch(async (error: unknown) => {
      await handle.close();
      throw error;
    });
    if (actual !== expected) {
      await handle.close();
      throw new CorruptObjectError(key, expected, actual);
    }
  }
  if (head) {
    await handle.close();
    res.end();
    return;
  }
  if (range || expected === undefined) {
    await pipeline(handle.stream(range), res);
  } else {
    await pipeline(handle.stream(), verifySha256(key, expected), res);
  }
}

/**
 * The request body, cut off with {@link UploadTooLargeError} as soon as it passes `limit`, and
 * failing with {@link IntegrityError} when it ends short of an exact `bytes`. Throwing from here
 * makes `store.put` discard its temp file, so a refused upload stores nothing.
 */
async function* limitedBody(
  req: IncomingMessage,
  key: string,
  limit: number | undefined,
  exact: number | undefined,
): AsyncGenerator<Uint8Array> {
  let received = 0;
  // destroyOnReturn: false keeps the socket usable for the error response.
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    const bytes: Buffer = chunk;
    received += bytes.byteLength;
    if (limit !== undefined && received > limit) throw new UploadTooLargeError(limit);
    yield bytes;
  }
  if (exact !== undefined && received !== exact) {
    throw new IntegrityError(key, 'bytes', exact, received);
  }
}

async function servePut(
  store: LocalObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
  grant: LocalPresignGrant,
): Promise<void> {
  const limits = [grant.bytes, grant.maxBytes].filter((n): n is number => n !== undefined);
  const limit = limits.length > 0 ? Math.min(...limits) : undefined;
  const header = req.headers['content-length'];
  const declared = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
  if (limit !== undefined && declared !== undefined && declared > limit) {
    return sendError(
      req,
      res,
      413,
      'too_large',
      `Upload of ${declared} bytes exceeds the ${limit}-byte limit of this URL`,
    );
  }
  if (grant.bytes !== undefined && declared !== undefined && declared !== grant.bytes) {
    return sendError(
      req,
      res,
      400,
      'size_mismatch',
      `Upload of ${declared} bytes does not match the ${grant.bytes} bytes this URL was signed for`,
    );
  }
  try {
    const info = await store.put(grant.key, limitedBody(req, grant.key, limit, grant.bytes), {
      ...(grant.sha256 === undefined ? {} : { sha256: grant.sha256 }),
      ...(grant.contentType === undefined ? {} : { contentType: grant.contentType }),
      ...(grant.createOnly ? { createOnly: true } : {}),
    });
    sendJson(res, 200, { key: info.key, bytes: info.bytes, sha256: info.sha256 });
  } catch (error) {
    if (error instanceof UploadTooLargeError) {
      return sendError(req, res, 413, 'too_large', error.message);
    }
    if (error instanceof IntegrityError) {
      const code = error.check === 'sha256' ? 'sha256_mismatch' : 'size_mismatch';
      return sendError(req, res, 400, code, error.message);
    }
    if (error instanceof ObjectExistsError) {
      return sendError(req, res, 412, 'already_exists', error.message);
    }
    throw error;
  }
}

/**
 * Serve one request for a presigned local-store URL: GET/HEAD (with single-range support, bytes
 * checked against their sha256) or PUT (streamed into `store.put`, enforcing the URL's `bytes`,
 * `maxBytes`, `sha256` and `createOnly`, after `options.allowPut`).
 *
 * `key` is the percent-decoded path below the mount point (`/store/a/b%20c` → `a/b c`); `query`
 * the URL's query string. Client errors become JSON responses `{ error: { code, message } }`
 * (400 bad key or size/sha256 mismatch, 403 expired/bad signature/wrong method/upload closed,
 * 404, 405, 412 already exists, 413, 416) and the promise resolves. For an unexpected failure
 * (disk full, I/O error, stored bytes that do not hash right) it answers 500 when it still can
 * (else drops the connection), then rejects with the error so the caller can log it. A client
 * that hangs up is not an error.
 */
export async function handleLocalStoreRequest(
  store: LocalObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
  key: string,
  query: URLSearchParams,
  options: LocalStoreRequestOptions = {},
): Promise<void> {
  try {
    const method = req.method?.toUpperCase() ?? '';
    if (method !== 'GET' && method !== 'HEAD' && method !== 'PUT') {
      res.setHeader('allow', 'GET, HEAD, PUT');
      return sendError(req, res, 405, 'method_not_allowed', `Method ${method} is not allowed`);
    }
    try {
      validateKey(key);
    } catch (error) {
      if (error instanceof InvalidKeyError) {
        return sendError(req, res, 400, 'invalid_key', error.message);
      }
      throw error;
    }
    const verification = store.verifyPresigned(method, key, query);
    if (!verification.ok) {
      return sendError(req, res, 403, verification.code, verification.message);
    }
    if (method === 'PUT') {
      const refusal = await options.allowPut?.(verification.grant);
      if (refusal) return sendError(req, res, 403, 'upload_closed', refusal);
      await servePut(store, req, res, verification.grant);
    } else {
      await serveGet(store, req, res, key, verification.grant.sha256);
    }
  } catch (error) {
    const corrupt = error instanceof CorruptObjectError;
    // The client went away mid-transfer: nobody to answer, nothing to report.
    if (req.socket.destroyed && !corrupt) return;
    if (res.headersSent) {
      res.destroy();
    } else if (corrupt) {
      sendError(req, res, 500, 'corrupt_object', error.message);
    } else {
      sendError(req, res, 500, 'internal', 'Internal storage error');
    }
    throw error;
  }
}
