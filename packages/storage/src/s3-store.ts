/**
 * Object store on S3 or any S3-compatible service (MinIO, R2, Ceph RGW, s3rver in tests), for
 * coordinators whose checkpoints outgrow one disk or that want workers to talk to storage
 * directly: workers receive SigV4 presigned URLs, never credentials.
 */
import { Readable } from 'node:stream';
import {
  type BucketLocationConstraint,
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { validateRange } from './byte-range.js';
import {
  IntegrityError,
  InvalidRangeError,
  ObjectExistsError,
  ObjectNotFoundError,
} from './errors.js';
import { validateKey, validatePrefix } from './keys.js';
import type {
  ByteRange,
  ObjectInfo,
  ObjectStore,
  PresignedUrl,
  PresignGetOptions,
  PresignPutOptions,
  PutOptions,
} from './object-store.js';
import { validatePresignGetOptions, validatePresignPutOptions } from './presign-options.js';
import { readAll } from './read-all.js';
import { assertSha256Hex, Sha256Meter, sha256Hex, sha256HexToBase64 } from './sha256.js';

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Key prefix inside the bucket (e.g. `archipelago/prod`); keys are relative to it. */
  prefix?: string;
  /** Endpoint of an S3-compatible service, e.g. `http://127.0.0.1:9000`; AWS when omitted. */
  endpoint?: string;
  /** Defaults to `us-east-1`. */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most self-hosted S3-compatible services. */
  forcePathStyle?: boolean;
  /** Explicit credentials; otherwise the SDK's default chain (AWS_ACCESS_KEY_ID, profiles, IMDS…). */
  credentials?: S3ClientConfig['credentials'];
  /** ListObjectsV2 page size (1–1000, default 1000); small values exercise pagination in tests. */
  listPageSize?: number;
}

/** Part size of multipart uploads: 8 MiB, above S3's 5 MiB minimum, 2 parts in flight. */
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
/** CopyObject's limit; larger objects keep no sha256 metadata when none was given up front. */
const MAX_COPY_BYTES = 5 * 1024 ** 3;
const MAX_BATCH = 1000;
/** Metadata name; S3 sends it as `x-amz-meta-sha256`. */
const SHA256_METADATA = 'sha256';

function httpStatus(error: unknown): number | undefined {
  return error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
}

function isS3Error(error: unknown, ...names: string[]): boolean {
  return error instanceof S3ServiceException && names.includes(error.name);
}

function encodeCopySource(bucket: string, key: string): string {
  return [bucket, ...key.split('/')].map(encodeURIComponent).join('/');
}

/** SigV4 dates have whole seconds; sign with one so `expiresAt` is exactly what S3 enforces. */
function wholeSecondNow(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000);
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly bucket: string;
  /** Normalized prefix without leading/trailing `/`; `''` for the bucket root. */
  readonly prefix: string;
  readonly #client: S3Client;
  /**
   * Presigning uses its own client that adds checksums only when an operation requires them:
   * with the SDK's default (`WHEN_SUPPORTED`) a presigned PutObject would carry the CRC32 of
   * an empty body, and S3 would reject every real upload with BadDigest.
   */
  readonly #presignClient: S3Client;
  readonly #listPageSize: number;

  constructor(options: S3ObjectStoreOptions) {
    if (!options.bucket) throw new TypeError('S3ObjectStore needs a bucket');
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (this.prefix !== '') validateKey(this.prefix);
    this.#listPageSize = options.listPageSize ?? MAX_BATCH;
    if (
      !Number.isInteger(this.#listPageSize) ||
      this.#listPageSize < 1 ||
      this.#listPageSize > MAX_BATCH
    ) {
      throw new TypeError(`listPageSize must be an integer from 1 to ${MAX_BATCH}`);
    }
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.forcePathStyle === undefined ? {} : { forcePathStyle: options.forcePathStyle }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    };
    this.#client = new S3Client(config);
    this.#presignClient = new S3Client({
      ...config,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const where = this.prefix === '' ? this.bucket : `${this.bucket}/${this.prefix}`;
    this.description = `s3://${where}${options.endpoint === undefined ? '' : ` at ${options.endpoint}`}`;
  }

  #objectKey(key: string): string {
    validateKey(key);
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  #relativeKey(objectKey: string): string {
    return this.prefix === '' ? objectKey : objectKey.slice(this.prefix.length + 1);
  }

  /** Create the bucket when it does not exist yet (first start, tests); a no-op otherwise. */
  async ensureBucket(): Promise<void> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (error) {
      if (httpStatus(error) !== 404) throw error;
    }
    const region = await this.#client.config.region();
    try {
      await this.#client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          // us-east-1 is the one region that must not be named here.
          ...(region === 'us-east-1'
            ? {}
            : // The SDK's enum is a snapshot of AWS regions; S3-compatible services have others.
              {
                CreateBucketConfiguration: {
                  LocationConstraint: region as BucketLocationConstraint,
                },
              }),
        }),
      );
    } catch (error) {
      // Another coordinator (or test) created it in the meantime.
      if (!isS3Error(error, 'BucketAlreadyOwnedByYou')) throw error;
    }
  }

  /**
   * Streams through `@aws-sdk/lib-storage` (multipart above 8 MiB) while hashing. An expected
   * sha256 is checked as the stream ends, before the upload is completed, so a mismatch aborts
   * the multipart upload and neither creates nor overwrites the object. Without an expected
   * sha256, a streamed body's digest is only known at the end; it is then recorded by copying
   * the object onto itself with new metadata (conditional on the ETag just written; skipped above
   * CopyObject's 5 GiB limit, where head() reports no sha256). `lastModified` in the result is
   * the client's clock at completion.
   *
   * `createOnly` sends `If-None-Match: *` with the PutObject (or CompleteMultipartUpload), which
   * S3 and MinIO enforce atomically (412); it also checks with a HEAD first, which is all that
   * protects on services that ignore the condition (s3rver does) and is not atomic there.
   */
  async put(
    key: string,
    body: Uint8Array | Readable | AsyncIterable<Uint8Array>,
    options: PutOptions = {},
  ): Promise<ObjectInfo> {
    const objectKey = this.#objectKey(key);
    const expected = options.sha256;
    if (expected !== undefined) assertSha256Hex(expected, 'PutOptions.sha256');
    const contentType = options.contentType;
    const createOnly = options.createOnly === true;
    if (createOnly && (await this.head(key))) throw new ObjectExistsError(key);
    let bytes: number;
    let sha256: string;
    if (body instanceof Uint8Array) {
      sha256 = sha256Hex(body);
      if (expected !== undefined && sha256 !== expected) {
        throw new IntegrityError(key, 'sha256', expected, sha256);
      }
      bytes = body.byteLength;
      await this.#upload(key, body, sha256, contentType, createOnly);
    } else {
      const meter = new Sha256Meter();
      // The body's own failure (an IntegrityError included) is the error to report, even when
      // lib-storage then fails to abort the multipart upload and rejects with that instead.
      let bodyError: unknown;
      async function* verified(): AsyncGenerator<Uint8Array> {
        try {
          yield* meter.measure(body);
          if (expected !== undefined && meter.digest() !== expected) {
            throw new IntegrityError(key, 'sha256', expected, meter.digest());
          }
        } catch (error) {
          bodyError = error;
          throw error;
        }
      }
      const stream = Readable.from(verified());
      let etag: string | undefined;
      try {
        etag = await this.#upload(key, stream, expected, contentType, createOnly);
      } catch (error) {
        throw bodyError ?? error;
      } finally {
        stream.destroy();
      }
      bytes = meter.bytes;
      sha256 = meter.digest();
      if (expected === undefined && etag !== undefined && bytes <= MAX_COPY_BYTES) {
        await this.#recordSha256(objectKey, etag, sha256, contentType);
      }
    }
    return {
      key,
      bytes,
      sha256,
      lastModified: new Date(),
      ...(contentType === undefined ? {} : { contentType }),
    };
  }

  /** Upload (multipart when large); returns the new object's ETag. */
  async #upload(
    key: string,
    body: Uint8Array | Readable,
    sha256: string | undefined,
    contentType: string | undefined,
    createOnly: boolean,
  ): Promise<string | undefined> {
    const upload = new Upload({
      client: this.#client,
      params: {
        Bucket: this.bucket,
        Key: this.#objectKey(key),
        Body: body,
        ...(contentType === undefined ? {} : { ContentType: contentType }),
        ...(sha256 === undefined ? {} : { Metadata: { [SHA256_METADATA]: sha256 } }),
        // lib-storage passes it to PutObject and to CompleteMultipartUpload.
        ...(createOnly ? { IfNoneMatch: '*' } : {}),
      },
      partSize: PART_SIZE,
      queueSize: QUEUE_SIZE,
      leavePartsOnError: false,
    });
    try {
      const result = await upload.done();
      return result.ETag;
    } catch (error) {
      if (createOnly && httpStatus(error) === 412) throw new ObjectExistsError(key);
      throw error;
    }
  }

  async #recordSha256(
    objectKey: string,
    etag: string,
    sha256: string,
    contentType: string | undefined,
  ): Promise<void> {
    try {
      await this.#client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          CopySource: encodeCopySource(this.bucket, objectKey),
          // Never stamp our digest onto bytes a concurrent put wrote in the meantime.
          CopySourceIfMatch: etag,
          MetadataDirective: 'REPLACE',
          Metadata: { [SHA256_METADATA]: sha256 },
          ...(contentType === undefined ? {} : { ContentType: contentType }),
        }),
      );
    } catch (error) {
      if (httpStatus(error) !== 412) throw error;
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    const objectKey = this.#objectKey(key);
    if (range !== undefined) validateRange(key, range);
    try {
      const response = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end ?? ''}` }),
        }),
      );
      const body = response.Body;
      if (!(body instanceof Readable)) {
        throw new TypeError('S3 GetObject returned a body that is not a Node.js Readable');
      }
      return body;
    } catch (error) {
      if (isS3Error(error, 'NoSuchKey')) throw new ObjectNotFoundError(key);
      if (range !== undefined && (isS3Error(error, 'InvalidRange') || httpStatus(error) === 416)) {
        throw new InvalidRangeError(key, range);
      }
      throw error;
    }
  }

  async getBytes(key: string, range?: ByteRange): Promise<Buffer> {
    return readAll(await this.getStream(key, range));
  }

  /**
   * `null` on 404. HEAD responses have no body, so a missing bucket also reads as a missing
   * object; {@link ensureBucket} at startup rules that out.
   */
  async head(key: string): Promise<ObjectInfo | null> {
    const objectKey = this.#objectKey(key);
    try {
      const response = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }),
      );
      const sha256 = response.Metadata?.[SHA256_METADATA];
      return {
        key,
        bytes: response.ContentLength ?? 0,
        lastModified: response.LastModified ?? new Date(0),
        ...(sha256 === undefined ? {} : { sha256 }),
        ...(response.ContentType === undefined ? {} : { contentType: response.ContentType }),
      };
    } catch (error) {
      if (httpStatus(error) === 404) return null;
      throw error;
    }
  }

  /** Entries carry key, size and mtime only (ListObjectsV2 returns no metadata); use head(). */
  list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    return this.#list(prefix);
  }

  async *#list(prefix: string): AsyncGenerator<ObjectInfo> {
    for await (const object of this.#listObjects(prefix)) {
      yield {
        key: this.#relativeKey(object.objectKey),
        bytes: object.bytes,
        lastModified: object.lastModified,
      };
    }
  }

  /** ListObjectsV2 pages, with full bucket keys. */
  async *#listObjects(
    prefix: string,
  ): AsyncGenerator<{ objectKey: string; bytes: number; lastModified: Date }> {
    const fullPrefix = this.prefix === '' ? prefix : `${this.prefix}/${prefix}`;
    let continuationToken: string | undefined;
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: fullPrefix,
          MaxKeys: this.#listPageSize,
          ...(continuationToken === undefined ? {} : { ContinuationToken: continuationToken }),
        }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield {
          objectKey: object.Key,
          bytes: object.Size ?? 0,
          lastModified: object.LastModified ?? new Date(0),
        };
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
  }

  async delete(key: string): Promise<void> {
    const objectKey = this.#objectKey(key);
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }));
  }

  async deletePrefix(prefix: string): Promise<number> {
    validatePrefix(prefix);
    let deleted = 0;
    let batch: string[] = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      const response = await this.#client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
      );
      const errors = response.Errors ?? [];
      if (errors.length > 0) {
        const [first] = errors;
        throw new Error(
          `S3 could not delete ${errors.length} of ${batch.length} objects under ${JSON.stringify(prefix)}, first ${first?.Key}: ${first?.Code} ${first?.Message}`,
        );
      }
      deleted += batch.length;
      batch = [];
    };
    for await (const { objectKey } of this.#listObjects(prefix)) {
      batch.push(objectKey);
      if (batch.length === MAX_BATCH) await flush();
    }
    await flush();
    return deleted;
  }

  async presignGet(key: string, options: PresignGetOptions): Promise<PresignedUrl> {
    const objectKey = this.#objectKey(key);
    validatePresignGetOptions(options);
    const signingDate = wholeSecondNow();
    const url = await getSignedUrl(
      this.#presignClient,
      new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }),
      { expiresIn: options.ttlSeconds, signingDate },
    );
    return {
      url,
      method: 'GET',
      expiresAt: new Date(signingDate.getTime() + options.ttlSeconds * 1000),
      headers: {},
    };
  }

  /**
   * A SigV4 presigned PutObject URL. With `bytes`, `content-length` is a signed header, so S3
   * refuses any other size. With `sha256`, `x-amz-checksum-sha256` is a signed header (S3
   * verifies the body against it) and the digest is stored as `x-amz-meta-sha256` via the signed
   * query. The client must send exactly the returned `headers`.
   *
   * `maxBytes` without `bytes` cannot be enforced by a presigned PUT (only POST policies can
   * bound a size): the URL is returned without that bound, and the caller must check the size
   * with head() when the worker commits, deleting oversized objects.
   * `contentType` is never signed by S3 presigning; it is returned as a header to send.
   * `createOnly` signs `if-none-match: *`: S3 refuses the PUT (412) once the key exists, and a
   * client that leaves the header out breaks the signature. (s3rver checks neither; a presigned
   * URL also cannot be revoked before its expiry: the caller must give it a short TTL and verify
   * what was stored.)
   */
  async presignPut(key: string, options: PresignPutOptions): Promise<PresignedUrl> {
    const objectKey = this.#objectKey(key);
    validatePresignPutOptions(options);
    const headers: Record<string, string> = {};
    const signableHeaders = new Set<string>();
    const unhoistableHeaders = new Set<string>();
    if (options.bytes !== undefined) {
      headers['content-length'] = String(options.bytes);
      signableHeaders.add('content-length');
    }
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    if (options.sha256 !== undefined) {
      headers['x-amz-checksum-sha256'] = sha256HexToBase64(options.sha256);
      // Kept as a header (not hoisted into the query) so S3 checks the body against it.
      unhoistableHeaders.add('x-amz-checksum-sha256');
    }
    if (options.createOnly) {
      headers['if-none-match'] = '*';
      signableHeaders.add('if-none-match');
    }
    const signingDate = wholeSecondNow();
    const url = await getSignedUrl(
      this.#presignClient,
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: objectKey,
        ...(options.bytes === undefined ? {} : { ContentLength: options.bytes }),
        ...(options.contentType === undefined ? {} : { ContentType: options.contentType }),
        ...(options.createOnly ? { IfNoneMatch: '*' } : {}),
        ...(options.sha256 === undefined
          ? {}
          : {
              Metadata: { [SHA256_METADATA]: options.sha256 },
              ChecksumSHA256: headers['x-amz-checksum-sha256'],
            }),
      }),
      { expiresIn: options.ttlSeconds, signingDate, signableHeaders, unhoistableHeaders },
    );
    return {
      url,
      method: 'PUT',
      expiresAt: new Date(signingDate.getTime() + options.ttlSeconds * 1000),
      headers,
    };
  }

  async close(): Promise<void> {
    this.#client.destroy();
    this.#presignClient.destroy();
  }
}
