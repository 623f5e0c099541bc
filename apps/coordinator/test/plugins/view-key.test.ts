import { get as httpGet, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ADMIN_KEY, auth, makeApp, type TestApp } from '../helpers.js';

const VIEW_KEY = 'view-key-for-tests';

describe('view key', () => {
  let t: TestApp;
  let base: string;
  beforeAll(async () => {
    t = await makeApp({ viewKey: VIEW_KEY });
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => t.close());

  const get = (url: string, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'GET', url, headers });

  it('closes every read under /api/v1 to requests without the view or admin key', async () => {
    for (const url of ['/api/v1/runs', '/api/v1/workers', '/api/v1/events', '/api/v1/datasets']) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer');
      expect(res.json().error.code).toBe('view_key_required');
    }
    expect((await get('/api/v1/runs', { authorization: `Bearer ${VIEW_KEY}` })).statusCode).toBe(
      200,
    );
    expect((await get('/api/v1/runs', { 'x-api-key': VIEW_KEY })).statusCode).toBe(200);
    expect((await get('/api/v1/runs', auth)).statusCode).toBe(200);
    const wrong = await get('/api/v1/runs', { authorization: 'Bearer wrong-key-000' });
    expect(wrong.statusCode).toBe(403);
    // Unknown routes do not tell anything either.
    expect((await get('/api/v1/nothing-here')).statusCode).toBe(401);
  });

  it('takes the key from ?key= (for what a browser loads by itself), beside other parameters', async () => {
    const res = await get(`/api/v1/runs?limit=5&key=${VIEW_KEY}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ runs: [] });
    expect((await get('/api/v1/runs?key=wrong-key-000')).statusCode).toBe(403);
    // The live stream: refused without the key, streams with it.
    expect((await get('/api/v1/live')).statusCode).toBe(401);
    const live = await new Promise<IncomingMessage>((resolve, reject) =>
      httpGet(`${base}/api/v1/live?key=${VIEW_KEY}`, { agent: false }, resolve).on('error', reject),
    );
    expect(live.statusCode).toBe(200);
    expect(live.headers['content-type']).toMatch(/^text\/event-stream/);
    live.destroy();
  });

  it('leaves health, metrics, docs, the dashboard and the worker socket open; admin routes still need the admin key', async () => {
    for (const url of ['/healthz', '/readyz', '/metrics', '/docs/json', '/']) {
      expect((await get(url)).statusCode, url).toBe(200);
    }
    // The worker socket answers a plain GET (no upgrade) itself, not with the view-key 401.
    expect((await get('/api/v1/workers/socket')).statusCode).not.toBe(401);
    const asViewer = await t.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: { authorization: `Bearer ${VIEW_KEY}` },
      payload: { name: 'x' },
    });
    expect(asViewer.statusCode).toBe(403);
    const asAdmin = await t.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
      payload: { name: 'x' },
    });
    expect(asAdmin.statusCode).toBe(201);
  });
});

describe('without a view key', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp();
  });
  afterAll(async () => t.close());

  it('reads are open', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/api/v1/runs' })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/api/v1/events' })).statusCode).toBe(200);
  });
});

describe('view key configuration', () => {
  it('comes from ARCHIPELAGO_VIEW_KEY or the viewKey flag, at least 8 characters', () => {
    expect(loadConfig({}, { ARCHIPELAGO_VIEW_KEY: 'abcdefgh' }).viewKey).toBe('abcdefgh');
    expect(
      loadConfig({ viewKey: 'from-flag-1' }, { ARCHIPELAGO_VIEW_KEY: 'abcdefgh' }).viewKey,
    ).toBe('from-flag-1');
    expect(loadConfig({}, {}).viewKey).toBeUndefined();
    expect(() => loadConfig({}, { ARCHIPELAGO_VIEW_KEY: 'short' })).toThrow(ConfigError);
    expect(() => loadConfig({}, { ARCHIPELAGO_VIEW_KEY: 'short' })).toThrow(/ARCHIPELAGO_VIEW_KEY/);
  });
});

describe('view key against path tricks, over a real socket', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await makeApp({ viewKey: VIEW_KEY });
    port = Number(new URL(await t.app.listen({ port: 0, host: '127.0.0.1' })).port);
  });
  afterAll(async () => t.close());

  /** One raw HTTP/1.1 request (no client normalises the target); the status code. */
  const raw = (target: string, headers = '') =>
    new Promise<number>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(
          `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}\r\n`,
        ),
      );
      let text = '';
      socket.on('data', (d) => {
        text += d;
      });
      socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
      socket.on('error', reject);
    });

  it('decides on the served route: encoded, absolute-form, doubled-slash and trailing variants never read without the key', async () => {
    const variants = [
      '/api/v1/events',
      '/%61pi/v1/events',
      '/api/v1/%65vents',
      '/api%2Fv1/events',
      `http://127.0.0.1:${port}/api/v1/events`,
      '//api/v1/events',
      '/api//v1/events',
      '/api/v1/events/',
      '/api/v1/events?',
      '/API/v1/events',
    ];
    for (const target of variants) {
      const status = await raw(target);
      // 401: the key is asked for; 403/404: nothing served at all.
      expect([401, 403, 404], `${target} -> ${status}`).toContain(status);
    }
    // The served variants do read with the key.
    expect(await raw('/%61pi/v1/events', `Authorization: Bearer ${VIEW_KEY}\r\n`)).toBe(200);
  });

  it('takes only the view key from a query string, never the admin key', async () => {
    expect(await raw(`/api/v1/runs?key=${VIEW_KEY}`)).toBe(200);
    expect(await raw(`/api/v1/runs?key=${ADMIN_KEY}`)).toBe(403);
    expect(await raw('/api/v1/runs', `Authorization: Bearer ${ADMIN_KEY}\r\n`)).toBe(200);
  });
});
