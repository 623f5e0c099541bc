/**
 * Presigned URLs for the local store: an HMAC-SHA256 over the method, key, expiry and upload
 * constraints, carried in the URL's query. {@link LocalObjectStore} issues them and
 * {@link handleLocalStoreRequest} checks them, so a worker holds a URL, never the secret.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { PresignedUrl } from './object-store.js';

/** What a verified presigned URL allows. */
export interface LocalPresignGrant {
  method: 'GET' | 'PUT';
  key: string;
  expiresAt: Date;
  /** PUT only: exact size the upload must have. */
  bytes?: number;
  /** PUT only: upper bound on the upload's size. */
  maxBytes?: number;
  /** PUT: the sha256 the upload must have; GET: the sha256 the served bytes must have. */
  sha256?: string;
  /** PUT only: content type to record for the object. */
  contentType?: string;
  /** PUT only: the upload may create the object, never replace one. */
  createOnly?: boolean;
}

/** Why a presigned URL was refused (all map to HTTP 403). */
export type LocalPresignFailure = 'malformed_url' | 'bad_signature' | 'wrong_method' | 'expired';

export type LocalPresignVerification =
  | { ok: true; grant: LocalPresignGrant }
  | { ok: false; code: LocalPresignFailure; message: string };

/** Upload constraints a PUT URL signs; the request handler enforces them while streaming. */
export type LocalPresignConstraints = Pick<
  LocalPresignGrant,
  'bytes' | 'maxBytes' | 'sha256' | 'contentType' | 'createOnly'
>;

const SIGNATURE_VERSION = 'archipelago-local-v1';
const MIN_SECRET_BYTES = 16;
const DECIMAL = /^(0|[1-9][0-9]*)$/;

function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** The string the HMAC covers; every field comes verbatim from the URL's query. */
function canonicalRequest(key: string, query: URLSearchParams): string {
  return [
    SIGNATURE_VERSION,
    query.get('method') ?? '',
    key,
    query.get('expires') ?? '',
    query.get('bytes') ?? '',
    query.get('maxBytes') ?? '',
    query.get('sha256') ?? '',
    query.get('contentType') ?? '',
    query.get('createOnly') ?? '',
  ].join('\n');
}

function optionalInteger(query: URLSearchParams, name: string): number | undefined | null {
  const raw = query.get(name);
  if (raw === null) return undefined;
  return DECIMAL.test(raw) ? Number(raw) : null;
}

export class LocalUrlSigner {
  readonly #secret: Buffer;

  /** @param secret - HMAC key, at least 16 bytes; keep it stable across restarts. */
  constructor(secret: Buffer | string) {
    this.#secret = Buffer.isBuffer(secret) ? Buffer.from(secret) : Buffer.from(secret, 'utf8');
    if (this.#secret.length < MIN_SECRET_BYTES) {
      throw new TypeError(
        `LocalObjectStore secret must be at least ${MIN_SECRET_BYTES} bytes (it signs upload URLs)`,
      );
    }
  }

  /**
   * A URL for `key` under `baseUrl` that allows `method` for at least `ttlSeconds` (the expiry is
   * rounded up to whole seconds) within `constraints`.
   */
  sign(
    baseUrl: string,
    method: 'GET' | 'PUT',
    key: string,
    ttlSeconds: number,
    constraints: LocalPresignConstraints = {},
    now: number = Date.now(),
  ): PresignedUrl {
    const expires = Math.ceil(now / 1000) + ttlSeconds;
    const query = new URLSearchParams({ method, expires: String(expires) });
    if (constraints.bytes !== undefined) query.set('bytes', String(constraints.bytes));
    if (constraints.maxBytes !== undefined) query.set('maxBytes', String(constraints.maxBytes));
    if (constraints.sha256 !== undefined) query.set('sha256', constraints.sha256);
    if (constraints.contentType !== undefined) query.set('contentType', constraints.contentType);
    if (constraints.createOnly) query.set('createOnly', '1');
    query.set('sig', this.#mac(key, query).toString('base64url'));
    return {
      url: `${baseUrl}/${encodeKeyPath(key)}?${query}`,
      method,
      expiresAt: new Date(expires * 1000),
      headers: {},
    };
  }

  /**
   * Check a presigned URL's signature (constant-time), method and expiry. `method` is the HTTP
   * method of the request (`HEAD` counts as `GET`); `key` the decoded object key from its path.
   */
  verify(
    method: string,
    key: string,
    query: URLSearchParams,
    now: number = Date.now(),
  ): LocalPresignVerification {
    const signedMethod = query.get('method');
    const expires = optionalInteger(query, 'expires');
    const sig = query.get('sig');
    if (signedMethod === null || expires === undefined || sig === null) {
      return {
        ok: false,
        code: 'malformed_url',
        message: 'Not a presigned URL: method, expires and sig are required',
      };
    }
    const expected = this.#mac(key, query);
    const provided = Buffer.from(sig, 'base64url');
    if (provided.length !== expected.length || !timingSafeEqual(provided, expected)) {
      return {
        ok: false,
        code: 'bad_signature',
        message: `Signature does not match the URL for ${JSON.stringify(key)}`,
      };
    }
    const requested = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
    if (requested !== signedMethod) {
      return {
        ok: false,
        code: 'wrong_method',
        message: `URL was signed for ${signedMethod}, not ${method.toUpperCase()}`,
      };
    }
    const bytes = optionalInteger(query, 'bytes');
    const maxBytes = optionalInteger(query, 'maxBytes');
    // Only reachable with a leaked secret: we never sign non-decimal numbers.
    if (expires === null || bytes === null || maxBytes === null) {
      return { ok: false, code: 'malformed_url', message: 'Numeric URL parameters are malformed' };
    }
    const expiresAt = new Date(expires * 1000);
    if (now > expiresAt.getTime()) {
      return {
        ok: false,
        code: 'expired',
        message: `URL expired at ${expiresAt.toISOString()}`,
      };
    }
    const sha256 = query.get('sha256');
    const contentType = query.get('contentType');
    return {
      ok: true,
      grant: {
        method: signedMethod === 'PUT' ? 'PUT' : 'GET',
        key,
        expiresAt,
        ...(bytes === undefined ? {} : { bytes }),
        ...(maxBytes === undefined ? {} : { maxBytes }),
        ...(sha256 === null ? {} : { sha256 }),
        ...(contentType === null ? {} : { contentType }),
        ...(query.get('createOnly') === '1' ? { createOnly: true } : {}),
      },
    };
  }

  #mac(key: string, query: URLSearchParams): Buffer {
    return createHmac('sha256', this.#secret).update(canonicalRequest(key, query)).digest();
  }
}
