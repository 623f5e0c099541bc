/**
 * The public HTTP surface against hostile clients, over real sockets: slow and idle connections
 * are cut, event streams are capped, no route answers cross-origin, the admin key is never taken
 * from a URL, and no public read or live message carries a volunteer's address.
 */
import { type ClientRequest, get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EVENTS, recordEvent } from '../../src/lifecycle/events.js';
import { ADMIN_KEY, auth, makeApp, type TestApp } from '../helpers.js';
import { type Harness, startHarness } from '../workers/coordinator-harness.js';
import { hello, TestClient } from '../workers/socket-client.js';

/** A raw socket to the app, with everything it received. */
function rawSocket(
  port: number,
): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const socket = connect(port, '127.0.0.1', () =>
      resolve({ socket, received: () => text, closed }),
    );
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('data', (d) => {
      text += d;
    });
    socket.on('error', reject);
  });
}

/** An SSE stream (or its refusal) on its own socket: its text so far, and when it ended. */
function openStream(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: () => string; ended: Promise<void>; close: () => void }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const request: ClientRequest = get(url, { agent: false, headers }, (response) => {
      response.setEncoding('utf8');
      response.on('data', (d: string) => {
        text += d;
      });
      const ended = new Promise<void>((r) => response.on('end', () => r()));
      resolve({
        status: response.statusCode ?? 0,
        text: () => text,
        ended,
        close: () => request.destroy(),
      });
    });
    request.on('error', reject);
  });
}

describe('slow and idle clients', () => {
  let t: TestApp;
  afterEach(async () => t.close());
  const listen = async () =>
    Number(new URL(await t.app.listen({ port: 0, host: '127.0.0.1' })).port);

  it('a request whose body trickles in past requestTimeoutMs gets 408 and is never handled', async () => {
    t = await makeApp({ requestTimeoutMs: 500 });
    const port = await listen();
    const { socket, received, closed } = await rawSocket(port);
    const body = JSON.stringify({ name: 'slow-loris-token' });
    socket.write(
      `POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < body.length - 1 && socket.writable) socket.write(body[sent++]!);
    }, 100);
    await closed;
    clearInterval(drip);
    expect(received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(sent).toBeLessThan(body.length);
    const tokens = await t.app.inject({ method: 'GET', url: '/api/v1/tokens', headers: auth });
    expect(tokens.json().tokens).toEqual([]);
  });

  it('a connection that sends nothing is closed after connectionTimeoutMs', async () => {
    // The request deadline far away: only the idle timeout can close it.
    t = await makeApp({ connectionTimeoutMs: 300, requestTimeoutMs: 600_000 });
    const { received, closed } = await rawSocket(await listen());
    const outcome = await Promise.race([
      closed.then(() => 'closed'),
      new Promise((r) => setTimeout(() => r('still open'), 20_000)),
    ]);
    expect(outcome).toBe('closed');
    expect(received()).toBe('');
  });
});

describe('event streams', () => {
  let t: TestApp;
  afterEach(async () => t.close());

  it('are capped per client and in all (429 too_many_streams); a closed stream frees its place', async () => {
    t = await makeApp({ maxEventStreams: 3, maxEventStreamsPerClient: 2, trustProxy: true });
    const url = `${await t.app.listen({ port: 0, host: '127.0.0.1' })}/api/v1/live`;
    const as = (client: string) => openStream(url, { 'x-forwarded-for': client });
    const a1 = await as('203.0.113.1');
    const a2 = await as('203.0.113.1');
    expect([a1.status, a2.status]).toEqual([200, 200]);
    const a3 = await as('203.0.113.1');
    expect(a3.status).toBe(429);
    await a3.ended;
    expect(JSON.parse(a3.text()).error.code).toBe('too_many_streams');
    const b1 = await as('198.51.100.2');
    expect(b1.status).toBe(200);
    const c1 = await as('192.0.2.3');
    expect(c1.status).toBe(429);
    a1.close();
    await expect
      .poll(async () => {
        const c = await as('192.0.2.3');
        c.close();
        return c.status;
      })
      .toBe(200);
    for (const s of [a2, b1]) s.close();
  });
});

describe('cross-origin requests and keys in URLs', () => {
  let t: TestApp;
  afterEach(async () => t.close());

  it('no route answers with Access-Control-Allow-Origin (CORS is off), preflights included', async () => {
    t = await makeApp();
    const origin = { origin: 'https://evil.example' };
    const requests = [
      { method: 'GET', url: '/api/v1/runs' },
      { method: 'GET', url: '/api/v1/events' },
      { method: 'GET', url: '/api/v1/keys' },
      { method: 'GET', url: '/api/v1/workers' },
      { method: 'GET', url: '/healthz' },
      { method: 'GET', url: '/' },
      { method: 'GET', url: '/api/v1/tokens', headers: auth },
      { method: 'POST', url: '/api/v1/tokens', headers: auth, payload: { name: 'x' } },
      { method: 'POST', url: `/api/v1/ensembles/ens_${'0'.repeat(32)}/samples`, payload: {} },
      {
        method: 'OPTIONS',
        url: '/api/v1/tokens',
        headers: {
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization',
        },
      },
    ] as const;
    for (const r of requests) {
      const res = await t.app.inject({
        method: r.method,
        url: r.url,
        headers: { ...origin, ...('headers' in r ? r.headers : {}) },
        ...('payload' in r ? { payload: r.payload } : {}),
      });
      const cors = Object.keys(res.headers).filter((h) => h.startsWith('access-control-'));
      expect(cors, `${r.method} ${r.url}`).toEqual([]);
    }
  });

  it('admin routes are decided on the matched route: encoded, absolute-form, doubled-slash and trailing variants never act without the key', async () => {
    t = await makeApp();
    const port = Number(new URL(await t.app.listen({ port: 0, host: '127.0.0.1' })).port);
    const body = JSON.stringify({ name: 'by-a-trick' });
    const post = async (target: string) => {
      const { socket, received, closed } = await rawSocket(port);
      socket.write(
        `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      await closed;
      return Number(/^HTTP\/1\.1 (\d{3})/.exec(received())?.[1] ?? 0);
    };
    for (const target of [
      '/api/v1/tokens',
      '/%61pi/v1/tokens',
      '/api/v1/%74okens',
      `http://127.0.0.1:${port}/api/v1/tokens`,
      '//api/v1/tokens',
      '/api//v1/tokens',
      '/api/v1/tokens/',
      '/api/v1/tokens?',
      '/api/v1/tokens#x',
      '/API/v1/tokens',
    ]) {
      const status = await post(target);
      expect([400, 401, 404], `${target} -> ${status}`).toContain(status);
    }
    const tokens = await t.app.inject({ method: 'GET', url: '/api/v1/tokens', headers: auth });
    expect(tokens.json().tokens).toEqual([]);
  });

  it('the admin key in a query string is never accepted, under any name', async () => {
    t = await makeApp();
    for (const name of ['key', 'apiKey', 'api_key', 'access_token', 'token']) {
      const read = await t.app.inject({
        method: 'GET',
        url: `/api/v1/tokens?${name}=${ADMIN_KEY}`,
      });
      expect(read.statusCode, name).toBe(401);
      const write = await t.app.inject({
        method: 'POST',
        url: `/api/v1/tokens?${name}=${ADMIN_KEY}`,
        payload: { name: 'from-a-url' },
      });
      expect(write.statusCode, name).toBe(401);
      expect(write.json().error.code).toBe('unauthorized');
    }
    const tokens = await t.app.inject({ method: 'GET', url: '/api/v1/tokens', headers: auth });
    expect(tokens.json().tokens).toEqual([]);
  });
});

describe("volunteers' addresses", () => {
  let h: Harness;
  afterEach(async () => h.close());

  it('appear in no public read and no live message, behind a proxy or not', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 10_000, trustProxy: true });
    const address = '203.0.113.77';
    const stream = await openStream(`${h.base}/api/v1/live`);
    expect(stream.status).toBe(200);
    await expect.poll(() => stream.text()).toMatch(/"type":"hello"/);
    const c = await TestClient.connect(h.base, { headers: { 'x-forwarded-for': address } });
    expect(await c.request(hello(h.token, 'any'))).toMatchObject({ type: 'welcome' });
    await expect.poll(() => stream.text(), { timeout: 10_000 }).toMatch(/worker\.connected/);
    // An event written before addresses were kept out of the log (it named the peer).
    recordEvent(h.server.coordinator.db, EVENTS.workerConnected, {
      data: { name: 'old-worker', remote: '192.0.2.99' },
    });
    await expect.poll(() => stream.text(), { timeout: 10_000 }).toMatch(/old-worker/);
    const reads = await Promise.all(
      ['/api/v1/workers', '/api/v1/events', '/api/v1/events?limit=200'].map(async (path) =>
        JSON.stringify((await h.api('GET', path)).body),
      ),
    );
    for (const text of [stream.text(), ...reads]) {
      expect(text).not.toContain(address);
      expect(text).not.toContain('192.0.2.99');
      expect(text).not.toContain('127.0.0.1');
      expect(text).not.toMatch(/"(remote|ip|address)"/);
    }
    c.close();
    stream.close();
  });
});
