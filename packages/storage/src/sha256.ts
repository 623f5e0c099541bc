/**
 * SHA-256 helpers. Archipelago identifies shards and checkpoints by lowercase hex sha256 so
 * that a worker, the coordinator and any store agree on "the same bytes" without trusting one
 * another; every put computes it while the bytes stream past, never in a second pass.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform } from 'node:stream';
import { CorruptObjectError } from './errors.js';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Lowercase hex sha256 of `bytes`. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Whether `value` is a lowercase hex sha256 (the only spelling the stores accept). */
export function isSha256Hex(value: string): boolean {
  return SHA256_HEX.test(value);
}

/** Throw a `TypeError` naming `what` unless `value` is a lowercase hex sha256. */
export function assertSha256Hex(value: string, what: string): void {
  if (!isSha256Hex(value)) {
    throw new TypeError(
      `${what} must be 64 lowercase hex characters, got ${JSON.stringify(value)}`,
    );
  }
}

/** Hex sha256 to the base64 spelling S3 uses in `x-amz-checksum-sha256`. */
export function sha256HexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/**
 * Counts and hashes bytes as they flow through {@link Sha256Meter.measure}, so a streamed put
 * knows size and digest once the stream ends.
 */
export class Sha256Meter {
  /** Bytes seen so far. */
  bytes = 0;
  readonly #hash: Hash = createHash('sha256');
  #digest: string | undefined;

  /**
   * Yield every chunk of `source` unchanged while hashing it. Chunks must be bytes (a `Readable`
   * in object or string mode is rejected rather than silently re-encoded).
   */
  async *measure(
    source: AsyncIterable<unknown> | Iterable<unknown>,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of source) {
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError(`put() body must yield Uint8Array chunks, got ${typeof chunk}`);
      }
      this.#hash.update(chunk);
      this.bytes += chunk.byteLength;
      yield chunk;
    }
  }

  /** Lowercase hex digest of everything measured; call once the source is exhausted. */
  digest(): string {
    this.#digest ??= this.#hash.digest('hex');
    return this.#digest;
  }
}

/**
 * A pass-through that hashes what flows and holds back the last chunk until the end: when the
 * digest is not `expected` it fails with {@link CorruptObjectError} instead of passing that chunk
 * on, so a reader never receives the whole of an object whose bytes are not what was recorded.
 */
export function verifySha256(key: string, expected: string): Transform {
  const hash = createHash('sha256');
  let held: Buffer | null = null;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      if (held) this.push(held);
      held = chunk;
      done();
    },
    flush(done) {
      const actual = hash.digest('hex');
      if (actual !== expected) return done(new CorruptObjectError(key, expected, actual));
      if (held) this.push(held);
      done();
    },
  });
}
