/**
 * Per-client limits over real requests: failed authentications (admin key, view key, worker
 * token, counted together), worker socket connection attempts and sampling requests; keyed on the
 * peer, or with `trustProxy` on the client X-Forwarded-For names. Each refusal is 429
 * `rate_limited` and changes nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_KEY, makeApp, type TestApp } from '../helpers.js';
import { hello, TestClient } from '../workers/socket-client.js';

const VIEW_KEY = 'view-key-for-tests';

describe('per-client limits', () => {
  let t: TestApp;
  let base: string;
  afterEach(async () => t.close());
  const start = async (overrides: Parameters<typeof makeApp>[0]) => {
    t = await makeApp(overrides);
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  };
  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { headers });
  const code = async (res: Response) =>
    ((await res.json()) as { error?: { code: string } }).error?.code;
  const tokenCount = async () =>
    (
      (await (await get('/api/v1/tokens', { authorization: `Bearer ${ADMIN_KEY}` })).json()) as {
        tokens: unknown[];
      }
    ).tokens.length;

  it('without trustProxy, a client is its socket peer: X-Forwarded-For changes nothing, and a locked-out client is refused even with the right key', async () => {
    await start({ authFailureLimit: 3 });
    for (let i = 0; i < 3; i++) {
      const res = await get('/api/v1/tokens', {
        authorization: 'Bearer wrong-admin-key-0000',
        'x-forwarded-for': `203.0.113.${i}`,
      });
      expect(res.status).toBe(403);
    }
    const locked = await get('/api/v1/tokens', {
      authorization: `Bearer ${ADMIN_KEY}`,
      'x-forwarded-for': '198.51.100.1',
    });
    expect(locked.status).toBe(429);
    expect(await code(locked)).toBe('rate_limited');
    const create = await fetch(`${base}/api/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x' }),
    });
    expect(create.status).toBe(429);
    // The coordinator itself still knows no token: nothing was created meanwhile.
    expect(t.coordinator.db.query.workerTokens.findMany().sync()).toHaveLength(0);
  });

  it('with trustProxy, failed keys, view keys and worker tokens count together per X-Forwarded-For client; other clients are not affected', async () => {
    await start({ authFailureLimit: 3, trustProxy: true, viewKey: VIEW_KEY });
    const attacker = { 'x-forwarded-for': '203.0.113.7' };
    const honest = { 'x-forwarded-for': '198.51.100.8' };
    // One wrong admin key, one wrong view key, one unknown worker token.
    expect(
      (await get('/api/v1/tokens', { ...attacker, authorization: 'Bearer wrong-admin-key-0000' }))
        .status,
    ).toBe(403);
    expect(
      (await get('/api/v1/runs', { ...attacker, authorization: 'Bearer wrong-view' })).status,
    ).toBe(403);
    const guess = await TestClient.connect(base, { headers: attacker });
    expect(await guess.request(hello('wt_guessed_token_000000', 'any'))).toMatchObject({
      code: 'unauthorized',
    });
    // Locked out everywhere, right keys included.
    expect(
      (await get('/api/v1/runs', { ...attacker, authorization: `Bearer ${VIEW_KEY}` })).status,
    ).toBe(429);
    expect(
      (await get('/api/v1/tokens', { ...attacker, authorization: `Bearer ${ADMIN_KEY}` })).status,
    ).toBe(429);
    const created = await fetch(`${base}/api/v1/tokens`, {
      method: 'POST',
      headers: {
        ...honest,
        authorization: `Bearer ${ADMIN_KEY}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ name: 'volunteer' }),
    });
    expect(created.status).toBe(201);
    const token = ((await created.json()) as { token: string }).token;
    const locked = await TestClient.connect(base, { headers: attacker });
    expect(await locked.request(hello(token, 'any'))).toMatchObject({
      type: 'error',
      code: 'rate_limited',
      fatal: true,
    });
    expect((await locked.closedWith).code).toBe(4029);
    // Another client behind the same proxy: unaffected.
    expect(
      (await get('/api/v1/runs', { ...honest, authorization: `Bearer ${VIEW_KEY}` })).status,
    ).toBe(200);
    const worker = await TestClient.connect(base, { headers: honest });
    expect(await worker.request(hello(token, 'any'))).toMatchObject({ type: 'welcome' });
    worker.close();
    expect(await tokenCount()).toBe(1);
  });

  it('limits worker socket connection attempts per client (429 rate_limited before the upgrade)', async () => {
    await start({ socketRateLimit: 3, trustProxy: true });
    const attempt = (client: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/v1/workers/socket`, {
          headers: { 'x-forwarded-for': client },
        });
        ws.on('open', () => {
          ws.close();
          resolve({ status: 101, body: '' });
        });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => {
            body += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        ws.on('error', reject);
      });
    for (let i = 0; i < 3; i++) expect((await attempt('203.0.113.9')).status).toBe(101);
    const refused = await attempt('203.0.113.9');
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.body).error.code).toBe('rate_limited');
    expect((await attempt('198.51.100.10')).status).toBe(101);
  });

  it('limits sampling requests per client per minute (429 rate_limited), before anything else is looked at', async () => {
    await start({ sampleRateLimit: 2, trustProxy: true });
    const sample = (client: string) =>
      fetch(`${base}/api/v1/ensembles/ens_${'0'.repeat(32)}/samples`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
        body: JSON.stringify({ count: 1 }),
      });
    // Not published: 404 until the client's minute is used up.
    expect((await sample('203.0.113.11')).status).toBe(404);
    expect((await sample('203.0.113.11')).status).toBe(404);
    const limited = await sample('203.0.113.11');
    expect(limited.status).toBe(429);
    expect(await code(limited)).toBe('rate_limited');
    expect(limited.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await sample('198.51.100.12')).status).toBe(404);
  });
});
