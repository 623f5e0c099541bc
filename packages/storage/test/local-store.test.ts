import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CorruptObjectError,
  handleLocalStoreRequest,
  InvalidKeyError,
  LocalObjectStore,
  type LocalPresignGrant,
  PresignError,
  parseRangeHeader,
  sha256Hex,
} from '../src/index.js';
import { collectList, describeObjectStoreContract } from './contract.js';

const SECRET = 'test-secret-at-least-16-bytes';

interface LocalFixture {
  store: LocalObjectStore;
  root: string;
  baseUrl: string;
  /** What the server's `allowPut` answers (null: allowed). */
  allowPut: (grant: LocalPresignGrant) => string | null;
  /** Errors the handler rejected with so far (teardown fails on any left). */
  takeHandlerErrors(): unknown[];
  teardown(): Promise<void>;
}

/** A temp-dir store behind a real node:http server that mounts the handler at /store/*. */
async function startLocal(): Promise<LocalFixture> {
  const root = await mkdtemp(path.join(tmpdir(), 'archipelago-local-store-'));
  let handlerErrors: unknown[] = [];
  let store: LocalObjectStore | undefined;
  let fixture: LocalFixture | undefined;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!store || !url.pathname.startsWith('/store/')) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const key = url.pathname.slice('/store/'.length).split('/').map(decodeURIComponent).join('/');
    handleLocalStoreRequest(store, req, res, key, url.searchParams, {
      allowPut: (grant) => fixture?.allowPut(grant) ?? null,
    }).catch((error: unknown) => {
      handlerErrors.push(error);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}/store`;
  store = new LocalObjectStore({ root, baseUrl, secret: SECRET });
  const ready = store;
  fixture = {
    store: ready,
    root,
    baseUrl,
    allowPut: () => null,
    takeHandlerErrors() {
      const taken = handlerErrors;
      handlerErrors = [];
      return taken;
    },
    async teardown() {
      if (handlerErrors.length > 0) throw new AggregateError(handlerErrors, 'handler rejected');
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await ready.close();
      await rm(root, { recursive: true, force: true });
    },
  };
  return fixture;
}

describeObjectStoreContract('LocalObjectStore', startLocal);

async function errorBody(response: Response): Promise<{ code: string; message: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return body.error;
}

describe('LocalObjectStore specifics', () => {
  let fx: LocalFixture;

  beforeAll(async () => {
    fx = await startLocal();
  });

  afterAll(async () => {
    await fx.teardown();
  });

  it('refuses a tampered signature or tampered constraints with 403 bad_signature', async () => {
    await fx.store.put('t/obj', Buffer.from('secret bytes'));
    const { url } = await fx.store.presignGet('t/obj', { ttlSeconds: 60 });
    const tampered = new URL(url);
    const sig = tampered.searchParams.get('sig') ?? '';
    tampered.searchParams.set('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`);
    const response = await fetch(tampered);
    expect(response.status).toBe(403);
    expect(await errorBody(response)).toMatchObject({ code: 'bad_signature' });

    const otherKey = url.replace('/store/t/obj', '/store/t/other');
    expect(await errorBody(await fetch(otherKey))).toMatchObject({ code: 'bad_signature' });

    const put = await fx.store.presignPut('t/limited', { ttlSeconds: 60, maxBytes: 10 });
    const widened = new URL(put.url);
    widened.searchParams.set('maxBytes', '1000000');
    const widenedResponse = await fetch(widened, { method: 'PUT', body: 'x'.repeat(100) });
    expect(widenedResponse.status).toBe(403);
    expect(await fx.store.head('t/limited')).toBeNull();

    const unsigned = await fetch(`${fx.baseUrl}/t/obj`);
    expect(unsigned.status).toBe(403);
    expect(await errorBody(unsigned)).toMatchObject({ code: 'malformed_url' });
  });

  it('refuses a URL used with another method (403 wrong_method) and unknown methods (405)', async () => {
    const get = await fx.store.presignGet('t/method', { ttlSeconds: 60 });
    const response = await fetch(get.url, { method: 'PUT', body: 'x' });
    expect(response.status).toBe(403);
    expect(await errorBody(response)).toMatchObject({ code: 'wrong_method' });
    expect(await fx.store.head('t/method')).toBeNull();
    const deleted = await fetch(get.url, { method: 'DELETE' });
    expect(deleted.status).toBe(405);
  });

  it('reports expiry with code expired', async () => {
    const { url, expiresAt } = await fx.store.presignGet('t/exp', { ttlSeconds: 1 });
    const query = new URL(url).searchParams;
    expect(fx.store.verifyPresigned('GET', 't/exp', query, expiresAt.getTime()).ok).toBe(true);
    expect(fx.store.verifyPresigned('GET', 't/exp', query, expiresAt.getTime() + 1)).toMatchObject({
      ok: false,
      code: 'expired',
      message: expect.stringContaining(expiresAt.toISOString()),
    });
    expect(fx.store.verifyPresigned('HEAD', 't/exp', query, expiresAt.getTime())).toMatchObject({
      ok: true,
      grant: { method: 'GET', key: 't/exp' },
    });
  });

  it('enforces bytes and maxBytes with 413, before and while streaming, storing nothing', async () => {
    const exact = await fx.store.presignPut('t/exact', { ttlSeconds: 60, bytes: 100 });
    const big = await fetch(exact.url, { method: 'PUT', body: Buffer.alloc(150) });
    expect(big.status).toBe(413);
    expect(await errorBody(big)).toMatchObject({ code: 'too_large' });
    const short = await fetch(exact.url, { method: 'PUT', body: Buffer.alloc(50) });
    expect(short.status).toBe(400);
    expect(await errorBody(short)).toMatchObject({ code: 'size_mismatch' });
    expect(await fx.store.head('t/exact')).toBeNull();

    // Chunked uploads announce no length: the limit is enforced on the bytes as they arrive.
    const capped = await fx.store.presignPut('t/capped', { ttlSeconds: 60, maxBytes: 1000 });
    const streamed = await fetch(capped.url, {
      method: 'PUT',
      body: new Blob([Buffer.alloc(600), Buffer.alloc(600)]).stream(),
      duplex: 'half',
    });
    expect(streamed.status).toBe(413);
    expect(await fx.store.head('t/capped')).toBeNull();

    const shortStream = await fetch(exact.url, {
      method: 'PUT',
      body: new Blob([Buffer.alloc(60)]).stream(),
      duplex: 'half',
    });
    expect(shortStream.status).toBe(400);
    expect(await errorBody(shortStream)).toMatchObject({ code: 'size_mismatch' });
    expect(await fx.store.head('t/exact')).toBeNull();

    const ok = await fetch(capped.url, { method: 'PUT', body: Buffer.alloc(1000, 7) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({
      key: 't/capped',
      bytes: 1000,
      sha256: sha256Hex(Buffer.alloc(1000, 7)),
    });
    expect(await readdir(path.join(fx.root, 'tmp'))).toEqual([]);
  });

  it('refuses a sha256 mismatch with 400, storing nothing', async () => {
    const bytes = randomBytes(500);
    const presigned = await fx.store.presignPut('t/sha', {
      ttlSeconds: 60,
      sha256: sha256Hex(Buffer.from('expected other bytes')),
    });
    const response = await fetch(presigned.url, { method: 'PUT', body: bytes });
    expect(response.status).toBe(400);
    const error = await errorBody(response);
    expect(error.code).toBe('sha256_mismatch');
    expect(error.message).toContain(sha256Hex(bytes));
    expect(await fx.store.head('t/sha')).toBeNull();
    expect(await readdir(path.join(fx.root, 'tmp'))).toEqual([]);
  });

  it('a create-only PUT URL stores once: a replay is refused with 412 already_exists and changes nothing', async () => {
    const bytes = randomBytes(300);
    const presigned = await fx.store.presignPut('t/once', {
      ttlSeconds: 60,
      bytes: bytes.byteLength,
      sha256: sha256Hex(bytes),
      createOnly: true,
    });
    const first = await fetch(presigned.url, {
      method: 'PUT',
      headers: presigned.headers,
      body: bytes,
    });
    expect(first.status).toBe(200);
    const replay = await fetch(presigned.url, {
      method: 'PUT',
      headers: presigned.headers,
      body: bytes,
    });
    expect(replay.status).toBe(412);
    expect(await errorBody(replay)).toMatchObject({ code: 'already_exists' });
    // Another URL for the key, constraints of its own: still no overwrite.
    const evil = randomBytes(300);
    const other = await fx.store.presignPut('t/once', { ttlSeconds: 60, createOnly: true });
    const overwrite = await fetch(other.url, { method: 'PUT', body: evil });
    expect(overwrite.status).toBe(412);
    expect(await fx.store.getBytes('t/once')).toEqual(bytes);
    expect(await fx.store.head('t/once')).toMatchObject({ sha256: sha256Hex(bytes) });
    // Dropping createOnly from the URL breaks its signature.
    const stripped = new URL(presigned.url);
    stripped.searchParams.delete('createOnly');
    const unsigned = await fetch(stripped, {
      method: 'PUT',
      headers: presigned.headers,
      body: evil,
    });
    expect(await errorBody(unsigned)).toMatchObject({ code: 'bad_signature' });
    expect(await fx.store.getBytes('t/once')).toEqual(bytes);
    expect(await readdir(path.join(fx.root, 'tmp'))).toEqual([]);
  });

  it('refuses a verified PUT that allowPut closes (403 upload_closed), storing nothing', async () => {
    const presigned = await fx.store.presignPut('t/closed', { ttlSeconds: 60 });
    const seen: LocalPresignGrant[] = [];
    fx.allowPut = (grant) => {
      seen.push(grant);
      return 'the lease of this upload ended';
    };
    try {
      const response = await fetch(presigned.url, { method: 'PUT', body: 'late bytes' });
      expect(response.status).toBe(403);
      expect(await errorBody(response)).toEqual({
        code: 'upload_closed',
        message: 'the lease of this upload ended',
      });
      expect(seen).toMatchObject([{ method: 'PUT', key: 't/closed' }]);
      expect(await fx.store.head('t/closed')).toBeNull();
    } finally {
      fx.allowPut = () => null;
    }
  });

  it('never completes a GET of bytes that do not hash to the recorded or signed sha256', async () => {
    const bytes = randomBytes(200_000);
    await fx.store.put('t/rot', bytes);
    const signed = await fx.store.presignGet('t/rot', { ttlSeconds: 60, sha256: sha256Hex(bytes) });
    const plain = await fx.store.presignGet('t/rot', { ttlSeconds: 60 });
    expect(Buffer.from(await (await fetch(signed.url)).arrayBuffer())).toEqual(bytes);
    // The bytes on disk change behind the store's back (same size, so its sidecar still applies).
    const rotten = Buffer.from(bytes);
    rotten[150_000] = (rotten[150_000]! + 1) % 256;
    await writeFile(path.join(fx.root, 'objects', 't', 'rot'), rotten);
    for (const url of [signed.url, plain.url]) {
      const response = await fetch(url);
      expect(response.status).toBe(200); // headers go first; the body never completes
      await expect(response.arrayBuffer()).rejects.toThrow();
      const ranged = await fetch(url, { headers: { range: 'bytes=0-99' } });
      expect(ranged.status).toBe(500);
      expect(await errorBody(ranged)).toMatchObject({ code: 'corrupt_object' });
    }
    // A URL signed for other bytes than the stored ones is refused the same way.
    const other = await fx.store.presignGet('t/rot', { ttlSeconds: 60, sha256: sha256Hex(bytes) });
    await fx.store.put('t/rot', Buffer.from('replaced'));
    // (Held back whole, so the connection drops before any header.)
    expect(
      await fetch(other.url)
        .then((r) => r.arrayBuffer())
        .catch(() => null),
    ).toBeNull();
    await new Promise((r) => setTimeout(r, 50));
    const errors = fx.takeHandlerErrors();
    expect(errors.length).toBe(5);
    for (const error of errors) expect(error).toBeInstanceOf(CorruptObjectError);
  });

  it('serves suffix ranges, 416 for unsatisfiable ranges, HEAD and 404', async () => {
    const bytes = randomBytes(64);
    await fx.store.put('t/ranges', bytes, { contentType: 'application/x-shard' });
    const { url } = await fx.store.presignGet('t/ranges', { ttlSeconds: 60 });
    const suffix = await fetch(url, { headers: { range: 'bytes=-8' } });
    expect(suffix.status).toBe(206);
    expect(Buffer.from(await suffix.arrayBuffer())).toEqual(bytes.subarray(56));
    const past = await fetch(url, { headers: { range: 'bytes=64-' } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe('bytes */64');
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('64');
    expect(head.headers.get('content-type')).toBe('application/x-shard');
    expect(head.headers.get('etag')).toBe(`"${sha256Hex(bytes)}"`);
    const missing = await fx.store.presignGet('t/not-there', { ttlSeconds: 60 });
    const notFound = await fetch(missing.url);
    expect(notFound.status).toBe(404);
    expect(await errorBody(notFound)).toMatchObject({ code: 'not_found' });
  });

  it('parses Range headers like RFC 9110', () => {
    expect(parseRangeHeader(undefined, 10)).toBeUndefined();
    expect(parseRangeHeader('bytes=2-4', 10)).toEqual({ start: 2, end: 4 });
    expect(parseRangeHeader('bytes=2-', 10)).toEqual({ start: 2, end: 9 });
    expect(parseRangeHeader('bytes=5-100', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRangeHeader('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
    expect(parseRangeHeader('bytes=-30', 10)).toEqual({ start: 0, end: 9 });
    expect(parseRangeHeader('bytes=10-', 10)).toBe('unsatisfiable');
    expect(parseRangeHeader('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRangeHeader('bytes=4-2', 10)).toBeUndefined();
    expect(parseRangeHeader('bytes=0-1,3-4', 10)).toBeUndefined();
    expect(parseRangeHeader('items=0-1', 10)).toBeUndefined();
  });

  // S3 lists in UTF-8 byte order; s3rver walks directories and would list `a/b` before `a-c`,
  // so this ordering is checked here rather than in the shared contract.
  it('lists in S3 byte order where a plain directory walk would not', async () => {
    const keys = ['order/a0', 'order/a/c/d', 'order/a.txt', 'order/a/b', 'order/a-c'];
    await Promise.all(keys.map((key) => fx.store.put(key, Buffer.from(key))));
    expect((await collectList(fx.store, 'order/')).map((e) => e.key)).toEqual([
      'order/a-c',
      'order/a.txt',
      'order/a/b',
      'order/a/c/d',
      'order/a0',
    ]);
  });

  it('keeps its sidecars and temp files out of listings', async () => {
    await fx.store.put('side/a', Buffer.from('a'), { contentType: 'text/plain' });
    expect((await collectList(fx.store, 'side/')).map((e) => e.key)).toEqual(['side/a']);
    expect((await collectList(fx.store, '')).every((e) => !e.key.startsWith('meta/'))).toBe(true);
    expect(await readdir(fx.root)).toEqual(expect.arrayContaining(['objects', 'meta']));
  });

  it('cannot hold both "a" and "a/b" and says so', async () => {
    await fx.store.put('clash/a', Buffer.from('file'));
    await expect(fx.store.put('clash/a/b', Buffer.from('x'))).rejects.toThrow(InvalidKeyError);
    await fx.store.put('clash/c/d', Buffer.from('x'));
    await expect(fx.store.put('clash/c', Buffer.from('x'))).rejects.toThrow(InvalidKeyError);
    expect(await fx.store.head('clash/c')).toBeNull();
    await fx.store.delete('clash/c'); // a directory of other objects is not an object
    expect(await fx.store.head('clash/c/d')).not.toBeNull();
    expect(await readdir(path.join(fx.root, 'tmp'))).toEqual([]);
  });

  it('needs a baseUrl to presign and a real secret', async () => {
    const bare = new LocalObjectStore({ root: fx.root, secret: SECRET });
    await expect(bare.presignGet('t/x', { ttlSeconds: 60 })).rejects.toThrow(PresignError);
    expect(() => new LocalObjectStore({ root: fx.root, secret: 'short' })).toThrow(/16 bytes/);
    expect(
      () => new LocalObjectStore({ root: fx.root, secret: SECRET, baseUrl: 'not a url' }),
    ).toThrow();
  });
});
