import type { Hello } from '@archipelago/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { Backoff } from '../src/backoff.js';
import {
  Connection,
  type CoordinatorRefusedError,
  RequestError,
  socketUrl,
} from '../src/connection.js';

const hello: Hello = {
  type: 'hello',
  protocols: [1],
  token: 'wt_0123456789',
  name: 'test',
  objective: 'ddpm',
  backend: 'cpu',
  hardware: { cpus: 1, memoryBytes: 0, threads: 1 },
  version: '0.0.0',
};
const welcome = {
  type: 'welcome',
  protocol: 1,
  workerId: 'wk_000000000001',
  heartbeatMs: 1000,
  leaseTtlMs: 3000,
  maxFrameBytes: 65536,
};

/** A fake coordinator: answers each frame with `reply(frame)` (or nothing). */
async function fakeCoordinator(reply: (frame: Record<string, unknown>, n: number) => unknown) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  let connections = 0;
  wss.on('connection', (ws) => {
    const n = ++connections;
    ws.on('message', (data) => {
      const out = reply(JSON.parse(String(data)), n);
      if (out === 'drop') ws.terminate();
      else if (out) ws.send(JSON.stringify(out));
    });
  });
  const port = (wss.address() as { port: number }).port;
  const close = () =>
    new Promise((r) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close(r);
    });
  return { wss, close, url: `http://127.0.0.1:${port}`, connections: () => connections };
}

describe('Connection', () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  const connect = (
    url: string,
    extra: Partial<ConstructorParameters<typeof Connection>[0]> = {},
  ) => {
    const logs: string[] = [];
    const c = new Connection({
      coordinator: url,
      hello: () => hello,
      onWelcome: () => {},
      onMessage: () => {},
      onRefused: () => {},
      log: (m) => logs.push(m),
      backoff: new Backoff(20, 100),
      ...extra,
    });
    cleanup.push(() => c.close());
    c.start();
    return { c, logs };
  };

  it('maps a coordinator URL to its worker socket', () => {
    expect(socketUrl('http://h:8080')).toBe('ws://h:8080/api/v1/workers/socket');
    expect(socketUrl('https://h/prefix/')).toBe('wss://h/prefix/api/v1/workers/socket');
    expect(() => socketUrl('ftp://h')).toThrow(/must start with http/);
  });

  it('matches replies to requests, reports error frames, and reconnects after a drop', async () => {
    const fake = await fakeCoordinator((f, n) => {
      if (f.type === 'hello') return welcome;
      if (f.type === 'lease.request')
        return n === 1 ? 'drop' : { type: 'lease.none', retryAfterMs: 5, reason: 'idle' };
      if (f.type === 'heartbeat')
        return {
          type: 'error',
          code: 'lease_expired',
          message: 'gone',
          fatal: false,
          inReplyTo: 'heartbeat',
        };
      return null;
    });
    cleanup.push(fake.close);
    const { c, logs } = connect(fake.url);
    await c.waitReady();
    // The first connection drops before answering: the request fails, the worker reconnects.
    await expect(
      c.request({ type: 'lease.request' }, ['lease.grant', 'lease.none']),
    ).rejects.toThrow(/closed before the reply to lease.request/);
    await c.waitReady();
    expect(fake.connections()).toBe(2);
    expect(logs.join('\n')).toMatch(/lost the connection[\s\S]*reconnected/);
    expect(await c.request({ type: 'lease.request' }, ['lease.grant', 'lease.none'])).toMatchObject(
      {
        type: 'lease.none',
      },
    );
    const err = await c
      .request(
        { type: 'heartbeat', leaseId: 'ls_000000000001', step: 1, loss: null, imagesPerSec: 0 },
        ['heartbeat.ack'],
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).code).toBe('lease_expired');
  });

  it('gives up for good when the token is refused', async () => {
    const fake = await fakeCoordinator(() => ({
      type: 'error',
      code: 'unauthorized',
      message: 'unknown worker token',
      fatal: true,
      inReplyTo: 'hello',
    }));
    cleanup.push(fake.close);
    const refused = new Promise<CoordinatorRefusedError>((resolve) =>
      connect(fake.url, { onRefused: resolve }),
    );
    const err = await refused;
    expect(err.code).toBe('unauthorized');
    expect(err.message).toBe('unknown worker token');
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.connections()).toBe(1);
  });

  it('keeps retrying an unreachable coordinator with backoff', async () => {
    const fake = await fakeCoordinator(() => null);
    const url = fake.url;
    await fake.close();
    const { c, logs } = connect(url);
    await new Promise((r) => setTimeout(r, 400));
    expect(c.ready).toBe(false);
    expect(logs[0]).toMatch(
      /cannot reach the coordinator at ws:\/\/127\.0\.0\.1:\d+\/api\/v1\/workers\/socket: .*; retrying in/,
    );
  });
});
