import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DownloadError, ObjectCache, sha256Hex } from '../src/object-cache.js';

describe('ObjectCache', () => {
  let server: Server;
  let base: string;
  let dir: string;
  let hits = 0;
  const body = new Uint8Array(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
  const ref = (over: Record<string, unknown> = {}) => ({
    url: `${base}/shard.bin`,
    sha256: sha256Hex(body),
    bytes: body.byteLength,
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
    ...over,
  });
  const cache = () =>
    new ObjectCache(dir, { attempts: 2, write: (file, data) => writeFileSync(file, data) });

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'arch-cache-'));
    server = createServer((req, res) => {
      hits++;
      if (req.url === '/shard.bin') res.end(body);
      else res.writeHead(404).end('no such object');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('downloads and verifies once, reuses the verified copy, and re-fetches a corrupt one', async () => {
    hits = 0;
    const c = cache();
    expect(await c.get(ref(), 'the shard', true)).toEqual(body);
    expect(hits).toBe(1);
    expect(readFileSync(c.pathOf(ref().sha256))).toEqual(Buffer.from(body));
    expect(await c.get(ref(), 'the shard', true)).toEqual(body);
    expect(hits).toBe(1);
    writeFileSync(c.pathOf(ref().sha256), 'corrupted');
    expect(await c.get(ref(), 'the shard', true)).toEqual(body);
    expect(hits).toBe(2);
  });

  it('refuses bytes that do not match the announced hash or size, and a missing object', async () => {
    const c = cache();
    await expect(c.get(ref({ sha256: 'a'.repeat(64) }), 'the shard', true)).rejects.toThrow(
      /cannot download the shard: sha256 [0-9a-f]{64} does not match the announced a{64}/,
    );
    await expect(c.get(ref({ bytes: 12 }), 'the shard', false)).rejects.toThrow(
      /got 5000 bytes, expected 12/,
    );
    await expect(c.get(ref({ url: `${base}/gone` }), 'the shard', false)).rejects.toThrow(
      DownloadError,
    );
    expect(c.cached('a'.repeat(64))).toBeNull();
  });
});
