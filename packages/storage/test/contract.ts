/**
 * The behaviour every ObjectStore must share, run against each implementation with a real
 * backend (a temp directory behind a real HTTP server; a real s3rver), never a mock.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IntegrityError,
  InvalidKeyError,
  InvalidRangeError,
  ObjectExistsError,
  type ObjectInfo,
  ObjectNotFoundError,
  type ObjectStore,
  PresignError,
  sha256Hex,
} from '../src/index.js';

export interface ContractFixture {
  store: ObjectStore;
  teardown(): Promise<void>;
}

const MiB = 1024 * 1024;

/** Bigger than one 8 MiB part, so the S3 store does a real multipart upload. */
const LARGE = randomBytes(9 * MiB + 12345);

function chunked(bytes: Uint8Array, size = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size);
    })(),
  );
}

export async function collectList(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const entries: ObjectInfo[] = [];
  for await (const entry of store.list(prefix)) entries.push(entry);
  return entries;
}

async function sha256OfStream(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

/** Wait until a presigned URL is past its expiry by a safe margin. */
export async function waitUntilExpired(expiresAt: Date): Promise<void> {
  const wait = expiresAt.getTime() - Date.now() + 300;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

export function describeObjectStoreContract(
  name: string,
  setup: () => Promise<ContractFixture>,
): void {
  describe(`${name}: ObjectStore contract`, () => {
    let fixture: ContractFixture;
    const store = (): ObjectStore => fixture.store;

    beforeAll(async () => {
      fixture = await setup();
    });

    afterAll(async () => {
      await fixture?.teardown();
    });

    it('round-trips bytes with size, sha256 and content type', async () => {
      const bytes = randomBytes(1000);
      const info = await store().put('roundtrip/a.bin', bytes, {
        contentType: 'application/x-test',
      });
      expect(info).toMatchObject({ key: 'roundtrip/a.bin', bytes: 1000, sha256: sha256Hex(bytes) });
      expect(info.lastModified).toBeInstanceOf(Date);
      expect(await store().getBytes('roundtrip/a.bin')).toEqual(bytes);
      expect(await store().head('roundtrip/a.bin')).toMatchObject({
        bytes: 1000,
        sha256: sha256Hex(bytes),
        contentType: 'application/x-test',
      });
      const empty = await store().put('roundtrip/empty', new Uint8Array(0));
      expect(empty.bytes).toBe(0);
      expect((await store().getBytes('roundtrip/empty')).byteLength).toBe(0);
    });

    it('overwrites an existing object', async () => {
      await store().put('overwrite/x', Buffer.from('first'));
      await store().put('overwrite/x', Buffer.from('second version'));
      expect((await store().getBytes('overwrite/x')).toString()).toBe('second version');
      expect((await store().head('overwrite/x'))?.sha256).toBe(
        sha256Hex(Buffer.from('second version')),
      );
    });

    it('refuses a create-only put over an existing object (already_exists), which stays as it was', async () => {
      const first = Buffer.from('accepted bytes');
      const info = await store().put('create-only/x', first, {
        createOnly: true,
        sha256: sha256Hex(first),
      });
      expect(info.sha256).toBe(sha256Hex(first));
      const attempts: [string, () => Promise<unknown>][] = [
        ['bytes', () => store().put('create-only/x', Buffer.from('evil'), { createOnly: true })],
        [
          'stream',
          () => store().put('create-only/x', chunked(Buffer.from('evil'), 2), { createOnly: true }),
        ],
        ['multipart', () => store().put('create-only/x', chunked(LARGE), { createOnly: true })],
      ];
      for (const [what, attempt] of attempts) {
        const error = await attempt().catch((e: unknown) => e);
        expect(error, what).toBeInstanceOf(ObjectExistsError);
        expect((error as ObjectExistsError).code).toBe('already_exists');
      }
      expect(await store().getBytes('create-only/x')).toEqual(first);
      expect(await store().head('create-only/x')).toMatchObject({ sha256: sha256Hex(first) });
      // A plain put still replaces; create-only is per call.
      await store().put('create-only/x', Buffer.from('replaced'));
      expect((await store().getBytes('create-only/x')).toString()).toBe('replaced');
    });

    it('streams a multi-MiB Readable in and out with equal hashes', async () => {
      const expected = sha256Hex(LARGE);
      const info = await store().put('stream/large.bin', chunked(LARGE));
      expect(info).toMatchObject({ bytes: LARGE.byteLength, sha256: expected });
      expect(await sha256OfStream(await store().getStream('stream/large.bin'))).toBe(expected);
      expect(await store().head('stream/large.bin')).toMatchObject({
        bytes: LARGE.byteLength,
        sha256: expected,
      });
    });

    it('accepts a plain AsyncIterable body', async () => {
      async function* parts(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('hello ');
        yield new TextEncoder().encode('world');
      }
      const info = await store().put('stream/iterable.txt', parts(), { contentType: 'text/plain' });
      expect(info.sha256).toBe(sha256Hex(Buffer.from('hello world')));
      expect((await store().getBytes('stream/iterable.txt')).toString()).toBe('hello world');
    });

    it('serves byte ranges (start-end, start-to-end, clamped end) and refuses ranges past the end', async () => {
      const bytes = randomBytes(100);
      await store().put('range/obj', bytes);
      expect(await store().getBytes('range/obj', { start: 10, end: 19 })).toEqual(
        bytes.subarray(10, 20),
      );
      expect(await store().getBytes('range/obj', { start: 90 })).toEqual(bytes.subarray(90));
      expect(await store().getBytes('range/obj', { start: 1, end: 1 })).toEqual(
        bytes.subarray(1, 2),
      );
      expect(await store().getBytes('range/obj', { start: 95, end: 1000 })).toEqual(
        bytes.subarray(95),
      );
      const stream = await store().getStream('range/obj', { start: 50, end: 59 });
      expect(await sha256OfStream(stream)).toBe(sha256Hex(bytes.subarray(50, 60)));
      await expect(store().getBytes('range/obj', { start: 100 })).rejects.toThrow(
        InvalidRangeError,
      );
      await expect(store().getBytes('range/obj', { start: 5, end: 4 })).rejects.toThrow(
        InvalidRangeError,
      );
      await expect(store().getBytes('range/obj', { start: -1 })).rejects.toThrow(InvalidRangeError);
    });

    it('heads existing objects and returns null for missing ones', async () => {
      const bytes = Buffer.from('head me');
      await store().put('head/present', bytes);
      const info = await store().head('head/present');
      expect(info).toMatchObject({ key: 'head/present', bytes: 7, sha256: sha256Hex(bytes) });
      expect(info?.lastModified.getTime()).toBeGreaterThan(Date.now() - 60_000);
      expect(await store().head('head/missing')).toBeNull();
      expect(await store().head('head/present/below')).toBeNull();
    });

    it('throws ObjectNotFoundError naming the key for missing objects', async () => {
      await expect(store().getBytes('missing/object')).rejects.toThrow(ObjectNotFoundError);
      await expect(store().getStream('missing/object')).rejects.toThrow(/missing\/object/);
      await expect(store().getBytes('missing/object', { start: 0 })).rejects.toThrow(
        ObjectNotFoundError,
      );
    });

    it('lists by string prefix in byte order, across pages, with sizes', async () => {
      const keys = [
        'list/a/b',
        'list/a/c/d',
        'list/ab',
        'list/b',
        'list/Z',
        'list/z/zz/zzz',
        ...Array.from({ length: 24 }, (_, i) => `list/n/${String(i).padStart(3, '0')}`),
      ];
      await Promise.all(keys.map((key, i) => store().put(key, Buffer.alloc(i + 1))));
      await store().put('listing/outside', Buffer.from('x'));
      const sorted = [...keys].sort();
      const all = await collectList(store(), 'list/');
      expect(all.map((e) => e.key)).toEqual(sorted);
      for (const entry of all) {
        expect(entry.bytes).toBe(keys.indexOf(entry.key) + 1);
        expect(entry.lastModified).toBeInstanceOf(Date);
      }
      expect((await collectList(store(), 'list/a')).map((e) => e.key)).toEqual([
        'list/a/b',
        'list/a/c/d',
        'list/ab',
      ]);
      expect((await collectList(store(), 'list/n/01')).map((e) => e.key)).toEqual(
        sorted.filter((key) => key.startsWith('list/n/01')),
      );
      expect((await collectList(store(), 'list')).map((e) => e.key)).toEqual(
        [...sorted, 'listing/outside'].sort(),
      );
      expect(await collectList(store(), 'list/nothing-here/')).toEqual([]);
      expect(await collectList(store(), 'no-such-prefix')).toEqual([]);
    });

    it('deletes objects and prefixes, counting what it removed', async () => {
      await store().put('del/one', Buffer.from('1'));
      await store().delete('del/one');
      expect(await store().head('del/one')).toBeNull();
      await store().delete('del/one'); // deleting a missing object is fine
      await store().delete('del/never/existed');

      const keys = Array.from({ length: 12 }, (_, i) => `dp/${i % 2 ? 'x' : 'y/deep'}/${i}`);
      await Promise.all(keys.map((key) => store().put(key, Buffer.from(key))));
      await store().put('dpz/keep', Buffer.from('keep'));
      expect(await store().deletePrefix('dp/')).toBe(12);
      expect(await collectList(store(), 'dp/')).toEqual([]);
      expect(await store().head('dpz/keep')).not.toBeNull();
      expect(await store().deletePrefix('dp/')).toBe(0);
      // The now empty "directories" can hold objects again.
      await store().put('dp/x/again', Buffer.from('again'));
      expect((await store().getBytes('dp/x/again')).toString()).toBe('again');
    });

    it('rejects unsafe keys and prefixes in every method with InvalidKeyError', async () => {
      const badKeys = ['../x', 'a/../../x', '/abs', 'a//b', 'a\\b', '', 'a/', './a', 'x\u0000y'];
      const badPrefixes = ['../x', '/abs', 'a//b', 'a\\b', 'a/../b/'];
      for (const key of badKeys) {
        const calls: [string, () => Promise<unknown>][] = [
          ['put', () => store().put(key, Buffer.from('x'))],
          ['getStream', () => store().getStream(key)],
          ['getBytes', () => store().getBytes(key)],
          ['head', () => store().head(key)],
          ['delete', () => store().delete(key)],
          ['presignGet', () => store().presignGet(key, { ttlSeconds: 60 })],
          ['presignPut', () => store().presignPut(key, { ttlSeconds: 60 })],
        ];
        for (const [method, call] of calls) {
          await expect(call(), `${method}(${JSON.stringify(key)})`).rejects.toThrow(
            InvalidKeyError,
          );
        }
      }
      for (const prefix of badPrefixes) {
        await expect(collectList(store(), prefix)).rejects.toThrow(InvalidKeyError);
        await expect(store().deletePrefix(prefix)).rejects.toThrow(InvalidKeyError);
      }
      await expect(store().put('../escape', Buffer.from('x'))).rejects.toThrow(/\.\./);
    });

    it('refuses a put whose sha256 differs, storing nothing and keeping the old object', async () => {
      const wrong = sha256Hex(Buffer.from('something else'));
      const bytes = Buffer.from('actual bytes');
      await expect(store().put('integrity/bytes', bytes, { sha256: wrong })).rejects.toThrow(
        IntegrityError,
      );
      expect(await store().head('integrity/bytes')).toBeNull();

      await expect(
        store().put('integrity/stream', chunked(bytes, 3), { sha256: wrong }),
      ).rejects.toThrow(IntegrityError);
      expect(await store().head('integrity/stream')).toBeNull();

      // Multipart-sized: the mismatch is only known at the very end of the stream.
      await expect(
        store().put('integrity/large', chunked(LARGE), { sha256: wrong }),
      ).rejects.toThrow(IntegrityError);
      expect(await store().head('integrity/large')).toBeNull();

      await store().put('integrity/keep', Buffer.from('v1'));
      const error = await store()
        .put('integrity/keep', chunked(Buffer.from('v2 is different')), { sha256: wrong })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IntegrityError);
      expect(String(error)).toContain(wrong);
      expect((await store().getBytes('integrity/keep')).toString()).toBe('v1');

      const right = await store().put('integrity/ok', bytes, { sha256: sha256Hex(bytes) });
      expect(right.sha256).toBe(sha256Hex(bytes));
    });

    it('stores nothing when the body stream fails midway', async () => {
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield Buffer.alloc(1024, 1);
        throw new Error('worker went away');
      }
      await expect(store().put('broken/upload', failing())).rejects.toThrow('worker went away');
      expect(await store().head('broken/upload')).toBeNull();
    });

    it('validates presign TTLs and sizes', async () => {
      for (const ttlSeconds of [0, -1, 1.5, 7 * 24 * 3600 + 1]) {
        await expect(store().presignGet('presign/x', { ttlSeconds })).rejects.toThrow(PresignError);
        await expect(store().presignPut('presign/x', { ttlSeconds })).rejects.toThrow(PresignError);
      }
      await expect(
        store().presignPut('presign/x', { ttlSeconds: 60, bytes: 10, maxBytes: 5 }),
      ).rejects.toThrow(PresignError);
      await expect(
        store().presignPut('presign/x', { ttlSeconds: 60, sha256: 'ABC' }),
      ).rejects.toThrow(PresignError);
      await expect(
        store().presignGet('presign/x', { ttlSeconds: 60, sha256: 'ABC' }),
      ).rejects.toThrow(PresignError);
      const week = await store().presignGet('presign/x', { ttlSeconds: 7 * 24 * 3600 });
      expect(week.expiresAt.getTime()).toBeGreaterThan(Date.now() + 7 * 24 * 3600_000 - 5000);
    });

    it('serves a presigned GET to fetch(), including a Range request', async () => {
      const bytes = randomBytes(4096);
      await store().put('presign/get.bin', bytes);
      const presigned = await store().presignGet('presign/get.bin', { ttlSeconds: 60 });
      expect(presigned.method).toBe('GET');
      expect(presigned.expiresAt.getTime()).toBeGreaterThan(Date.now() + 55_000);
      const response = await fetch(presigned.url, { headers: presigned.headers });
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer())).toEqual(bytes);

      const ranged = await fetch(presigned.url, { headers: { range: 'bytes=100-199' } });
      expect(ranged.status).toBe(206);
      expect(ranged.headers.get('content-range')).toBe('bytes 100-199/4096');
      expect(Buffer.from(await ranged.arrayBuffer())).toEqual(bytes.subarray(100, 200));

      // Keys are percent-encoded into the URL path and must come back out intact.
      const odd = 'presign/with space/ünï+%.bin';
      await store().put(odd, Buffer.from('odd key'));
      const oddUrl = await store().presignGet(odd, { ttlSeconds: 60 });
      const oddResponse = await fetch(oddUrl.url);
      expect(oddResponse.status).toBe(200);
      expect(await oddResponse.text()).toBe('odd key');
    });

    it('accepts a presigned PUT from fetch()', async () => {
      const bytes = randomBytes(3000);
      const sha256 = sha256Hex(bytes);
      const presigned = await store().presignPut('presign/put.bin', {
        ttlSeconds: 60,
        bytes: bytes.byteLength,
        sha256,
        contentType: 'application/octet-stream',
      });
      expect(presigned.method).toBe('PUT');
      expect(presigned.headers['content-length']).toBe('3000');
      const response = await fetch(presigned.url, {
        method: 'PUT',
        headers: presigned.headers,
        body: bytes,
      });
      expect(response.status).toBe(200);
      expect(await store().getBytes('presign/put.bin')).toEqual(bytes);
      expect(await store().head('presign/put.bin')).toMatchObject({ bytes: 3000, sha256 });

      const free = await store().presignPut('presign/free.bin', { ttlSeconds: 60 });
      const freeResponse = await fetch(free.url, { method: 'PUT', body: 'no constraints' });
      expect(freeResponse.status).toBe(200);
      expect((await store().getBytes('presign/free.bin')).toString()).toBe('no constraints');
    });

    it('rejects expired presigned URLs', async () => {
      await store().put('presign/expiring', Buffer.from('soon gone'));
      const get = await store().presignGet('presign/expiring', { ttlSeconds: 1 });
      const put = await store().presignPut('presign/expired-put', { ttlSeconds: 1 });
      expect(get.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 2000);
      await waitUntilExpired(new Date(Math.max(get.expiresAt.getTime(), put.expiresAt.getTime())));
      const getResponse = await fetch(get.url);
      expect(getResponse.status).toBe(403);
      expect(await getResponse.text()).toMatch(/expired/i);
      const putResponse = await fetch(put.url, { method: 'PUT', body: 'late' });
      expect(putResponse.status).toBe(403);
      expect(await store().head('presign/expired-put')).toBeNull();
    });
  });
}
