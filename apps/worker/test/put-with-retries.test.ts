/**
 * putWithRetries against a real node:http server answering each PUT from a script: which answers
 * are retried on the same URL, which come back at once, and how many attempts each takes.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backoff } from '../src/backoff.js';
import { putWithRetries } from '../src/put-with-retries.js';

describe('putWithRetries', () => {
  let server: Server;
  let url: string;
  /** Statuses of the next PUTs (0: reset the connection); then 200. */
  let script: number[] = [];
  let received: number[] = [];

  beforeAll(async () => {
    server = createServer(async (req, res) => {
      let bytes = 0;
      for await (const c of req) bytes += (c as Buffer).length;
      received.push(bytes);
      const status = script.shift() ?? 200;
      if (status === 0) return req.socket.resetAndDestroy();
      res.writeHead(status, status === 429 ? { 'retry-after': '0' } : {});
      res.end(`answer ${status}`);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/obj`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const put = (statuses: number[], maxAttempts = 5) => {
    script = statuses;
    received = [];
    const retries: string[] = [];
    return putWithRetries(url, {}, new Uint8Array(1000), {
      maxAttempts,
      backoff: new Backoff(1, 5),
      onRetry: ({ reason }) => retries.push(reason),
    }).then((r) => ({ ...r, retries, received }));
  };

  it('retries resets, 5xx and 429 on the same URL until the store takes it', async () => {
    const r = await put([0, 500, 503, 429]);
    expect(r).toMatchObject({ outcome: 'stored', attempts: 5, status: 200 });
    expect(r.retries).toHaveLength(4);
    expect(r.retries[1]).toBe('HTTP 500 answer 500');
    expect(r.received).toEqual([1000, 1000, 1000, 1000, 1000]);
  });

  it('gives up after maxAttempts with the last failure', async () => {
    expect(await put([503, 0, 502], 3)).toMatchObject({
      outcome: 'failed',
      attempts: 3,
      status: 502,
      message: 'HTTP 502 answer 502',
    });
    expect((await put([0], 1)).outcome).toBe('failed');
  });

  it('returns a 403 (expired or closed URL) and other 4xx at once, without retrying', async () => {
    expect(await put([403])).toMatchObject({ outcome: 'closed', attempts: 1, status: 403 });
    expect(await put([400])).toMatchObject({ outcome: 'refused', attempts: 1, status: 400 });
    expect(await put([413])).toMatchObject({ outcome: 'refused', attempts: 1 });
  });

  it('a 412 after a failed attempt means an earlier attempt stored it; on the first, it is not ours', async () => {
    expect(await put([503, 412])).toMatchObject({ outcome: 'exists', attempts: 2, status: 412 });
    expect(await put([412])).toMatchObject({ outcome: 'refused', attempts: 1, status: 412 });
  });
});
