import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError, ERROR_CODES, type ErrorCode, notFound } from '../../src/errors.js';
import errorsPlugin, { HTTP_STATUS } from '../../src/plugins/errors.js';
import { LeaseError } from '../../src/services/leases.js';

describe('error plugin', () => {
  const app = Fastify();
  beforeAll(async () => {
    await app.register(errorsPlugin);
    app.get<{ Params: { code: ErrorCode } }>('/throw/:code', async (request) => {
      throw new DomainError(request.params.code, `failed with ${request.params.code}`);
    });
    app.get('/lease', async () => {
      throw new LeaseError('lease_expired', 'lease l1 expired');
    });
    app.get('/missing', async () => {
      throw notFound('run', 'run_1');
    });
    app.get('/details', async () => {
      throw new DomainError('invalid_transition', 'no', { from: 'done', to: 'leased' });
    });
    await app.ready();
  });
  afterAll(() => app.close());

  it('answers every domain error code with its status and the code itself', async () => {
    for (const code of ERROR_CODES) {
      const res = await app.inject({ method: 'GET', url: `/throw/${code}` });
      expect(res.statusCode, code).toBe(HTTP_STATUS[code]);
      expect(res.json()).toEqual({ error: { code, message: `failed with ${code}` } });
    }
  });

  it('keeps the statuses responses carried before codes had one mapping', () => {
    expect(HTTP_STATUS).toMatchObject({
      bad_request: 400,
      validation_error: 400,
      too_small: 400,
      too_many_experts: 400,
      invalid_objective_mix: 400,
      not_found: 404,
      not_published: 404,
      no_shard: 404,
      conflict: 409,
      run_finished: 409,
      invalid_transition: 409,
      too_costly: 413,
      busy: 429,
    });
  });

  it('maps lease errors, notFound and details like any domain error', async () => {
    const lease = await app.inject({ method: 'GET', url: '/lease' });
    expect(lease.statusCode).toBe(409);
    expect(lease.json().error.code).toBe('lease_expired');
    const missing = await app.inject({ method: 'GET', url: '/missing' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toEqual({
      error: { code: 'not_found', message: 'run run_1 does not exist' },
    });
    const details = await app.inject({ method: 'GET', url: '/details' });
    expect(details.statusCode).toBe(409);
    expect(details.json().error.details).toEqual({ from: 'done', to: 'leased' });
  });

  it("names fastify's own body errors with stable codes, not its FST_ERR_* ones", async () => {
    const other = Fastify({ logger: false, bodyLimit: 64 });
    await other.register(errorsPlugin);
    other.post('/echo', async (request) => request.body);
    const post = (body: string, type = 'application/json') =>
      other.inject({
        method: 'POST',
        url: '/echo',
        payload: body,
        headers: { 'content-type': type },
      });
    const cases: [Awaited<ReturnType<typeof post>>, number, string][] = [
      [await post('{"a":'), 400, 'bad_json'],
      [await post(''), 400, 'empty_body'],
      [await post(JSON.stringify({ a: 'x'.repeat(100) })), 413, 'body_too_large'],
      [await post('a=1', 'application/x-www-form-urlencoded'), 415, 'unsupported_media_type'],
    ];
    for (const [res, status, code] of cases) {
      expect(res.statusCode, code).toBe(status);
      expect(res.json().error.code).toBe(code);
      expect(res.json().error.message).toEqual(expect.any(String));
    }
    expect((await post('{"a":1}')).json()).toEqual({ a: 1 });
    await other.close();
  });

  it('leaves other errors as they were: 500 internal_error', async () => {
    const other = Fastify({ logger: false });
    await other.register(errorsPlugin);
    other.get('/boom', async () => {
      throw new Error('secret detail');
    });
    const res = await other.inject({ method: 'GET', url: '/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.json().error.code).toBe('internal_error');
    await other.close();
  });
});
