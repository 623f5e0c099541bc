import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, auth, makeApp, type TestApp } from './helpers.js';

describe('coordinator HTTP surface', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp();
  });
  afterAll(async () => t.close());

  it('answers liveness and readiness with the database and store checked', async () => {
    const health = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toMatchObject({ status: 'ok', version: '0.1.0' });
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({
      status: 'ready',
      checks: { database: { ok: true }, objectStore: { ok: true } },
    });
  });

  it('reports not ready when the database is gone', async () => {
    const other = await makeApp();
    other.coordinator.db.$client.close();
    const ready = await other.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().checks.database.ok).toBe(false);
    await other.app.close();
  });

  it('exposes Prometheus metrics including request counts and state gauges', async () => {
    await t.app.inject({ method: 'GET', url: '/healthz' });
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toMatch(
      /archipelago_http_requests_total\{[^}]*route="\/healthz"[^}]*\} [1-9]/,
    );
    expect(res.body).toContain('archipelago_datasets');
    expect(res.body).toContain('process_cpu_user_seconds_total');
  });

  it('serves OpenAPI generated from the route schemas, and its browser UI', async () => {
    const json = await t.app.inject({ method: 'GET', url: '/docs/json' });
    expect(json.statusCode).toBe(200);
    const spec = json.json();
    expect(spec.openapi).toMatch(/^3\./);
    const createRun = spec.paths['/api/v1/runs/'].post;
    expect(createRun.requestBody.content['application/json'].schema.required).toEqual(
      expect.arrayContaining(['datasetId', 'experts', 'stepsPerExpert']),
    );
    expect(createRun.security).toEqual([{ adminKey: [] }]);
    expect(spec.paths['/api/v1/datasets/'].post.responses['202']).toBeDefined();
    const ui = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toContain('swagger');
  });

  it('requires the admin key on admin routes: 401 without, 403 with a wrong one', async () => {
    const body = { name: 'x', source: { kind: 'builtin', name: 'mnist' } };
    const none = await t.app.inject({ method: 'POST', url: '/api/v1/datasets', payload: body });
    expect(none.statusCode).toBe(401);
    expect(none.json().error.code).toBe('unauthorized');
    const wrong = await t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      payload: body,
      headers: { authorization: `Bearer ${ADMIN_KEY}x` },
    });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json().error.message).toMatch(/not valid/);
  });

  it('rejects invalid bodies with 400 naming the field, and changes nothing', async () => {
    const unknownProp = await t.app.inject({
      method: 'POST',
      url: '/api/v1/datasets',
      headers: auth,
      payload: { name: 'x', source: { kind: 'builtin', name: 'mnist' }, colour: 'blue' },
    });
    expect(unknownProp.statusCode).toBe(400);
    expect(unknownProp.json().error.message).toContain('colour');
    const badK = await t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: auth,
      payload: { datasetId: 'ds_aaaaaaaaaaaa', experts: 0, stepsPerExpert: 10 },
    });
    expect(badK.statusCode).toBe(400);
    expect(badK.json().error.message).toMatch(/experts/);
    const notJson = await t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"datasetId":',
    });
    expect(notJson.statusCode).toBe(400);
    const runs = await t.app.inject({ method: 'GET', url: '/api/v1/runs' });
    expect(runs.json().runs).toEqual([]);
  });

  it('answers unknown routes and ids with 404 and a JSON error', async () => {
    const route = await t.app.inject({ method: 'GET', url: '/api/v1/nothing' });
    expect(route.statusCode).toBe(404);
    expect(route.json().error.code).toBe('not_found');
    const run = await t.app.inject({ method: 'GET', url: '/api/v1/runs/run_doesnotexist' });
    expect(run.statusCode).toBe(404);
    expect(run.json().error.message).toBe('run run_doesnotexist does not exist');
    const badId = await t.app.inject({ method: 'GET', url: '/api/v1/datasets/../../etc' });
    expect(badId.statusCode).toBeGreaterThanOrEqual(400);
  });

  it('rejects bodies over the configured limit with 413', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(res.statusCode).toBe(413);
  });
});
