import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import errors from '../../src/plugins/errors.js';
import dashboardRoutes from '../../src/routes/dashboard/index.js';
import { makeApp } from '../helpers.js';

async function serve(root: string): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(errors);
  await app.register(dashboardRoutes, { root });
  app.get('/api/v1/ping', async () => ({ ok: true }));
  await app.ready();
  return app;
}

describe('dashboard static files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-dash-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('serves the build at /: index revalidated, hashed assets cached for good', async () => {
    const root = path.join(dir, 'dist');
    await mkdir(path.join(root, 'assets'), { recursive: true });
    await writeFile(path.join(root, 'index.html'), '<!doctype html><main id="main"></main>');
    await writeFile(path.join(root, 'assets', 'index-AbC123.js'), 'console.log(1)');
    const app = await serve(root);
    try {
      const index = await app.inject({ method: 'GET', url: '/' });
      expect(index.statusCode).toBe(200);
      expect(index.headers['content-type']).toMatch(/^text\/html/);
      expect(index.headers['cache-control']).toBe('no-cache');
      expect(index.body).toContain('id="main"');
      const asset = await app.inject({ method: 'GET', url: '/assets/index-AbC123.js' });
      expect(asset.statusCode).toBe(200);
      expect(asset.headers['content-type']).toMatch(/javascript/);
      expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect((await app.inject({ method: 'GET', url: '/api/v1/ping' })).json()).toEqual({
        ok: true,
      });
      const missing = await app.inject({ method: 'GET', url: '/assets/gone.js' });
      expect(missing.statusCode).toBe(404);
      expect(missing.json().error.code).toBe('not_found');
    } finally {
      await app.close();
    }
  });

  it('says how to build the dashboard when it is not built', async () => {
    const app = await serve(path.join(dir, 'nowhere'));
    try {
      const res = await app.inject({ method: 'GET', url: '/' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.body).toContain('npm run build');
    } finally {
      await app.close();
    }
  });

  it('is part of the coordinator app', async () => {
    const t = await makeApp();
    try {
      const res = await t.app.inject({ method: 'GET', url: '/' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
    } finally {
      await t.close();
    }
  });
});
