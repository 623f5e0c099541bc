/**
 * Sampling over real HTTP requests: a request whose client disconnects is dropped, waiting or
 * running, and frees its slot; one client may have only so many requests waiting or running.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveSettings } from '../../src/services/sampling.js';
import { publishTestEnsemble } from '../ensembles/test-ensemble.js';
import { makeApp, type TestApp } from '../helpers.js';

describe('sampling requests and their clients', () => {
  let t: TestApp;
  let base: string;
  let url: string;
  let ensembleId: string;
  beforeAll(async () => {
    t = await makeApp({ trustProxy: true, maxQueuedSamplesPerClient: 1, sampleRateLimit: 1000 });
    const manifest = await publishTestEnsemble(t.coordinator);
    ensembleId = manifest.id;
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    url = `${base}/api/v1/ensembles/${manifest.id}/samples`;
  });
  afterAll(async () => {
    // fetch may keep a connection it opened for an aborted request, which would hold up close.
    t.app.server.closeAllConnections();
    await t.close();
  });

  // 25,600 expert evaluations (the cost limit): long enough to be caught running.
  const LONG = { count: 64, steps: 100, sampler: 'heun', routing: 'full' };
  const SHORT = { count: 2, steps: 2 };
  const activity = () => t.coordinator.sampling.activity();
  /** A request from `client` (X-Forwarded-For: the app trusts the proxy), aborted with `signal`. */
  const post = (body: object, client: string, signal?: AbortSignal) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
  /** Start a request that will be aborted; its outcome (a Response or the abort error). */
  const start = (body: object, client: string) => {
    const abort = new AbortController();
    const outcome = post(body, client, abort.signal).catch((err: Error) => err);
    return { abort: () => abort.abort(), outcome };
  };

  it('a running request whose client disconnects stops at its next step and frees the slot', async () => {
    const dropped = activity().dropped;
    const a = start(LONG, '203.0.113.1');
    await expect.poll(() => activity().running, { timeout: 30_000 }).toBe(1);
    // It runs on the compute thread, not on the event loop serving this request.
    expect(t.coordinator.compute?.busy).toBe(1);
    a.abort();
    expect(await a.outcome).toBeInstanceOf(Error);
    await expect
      .poll(activity, { timeout: 30_000 })
      .toEqual({ waiting: 0, running: 0, dropped: dropped + 1 });
    // The thread was told and stopped it (a task it kept running would still count).
    expect(t.coordinator.compute?.busy).toBe(0);
    const next = await post(SHORT, '203.0.113.1');
    expect(next.status).toBe(200);
    expect(((await next.json()) as { images: string[] }).images).toHaveLength(2);
  });

  it('a waiting request whose client disconnects leaves the queue at once; the running one goes on', async () => {
    const dropped = activity().dropped;
    const running = start(LONG, '203.0.113.2');
    await expect.poll(() => activity().running, { timeout: 30_000 }).toBe(1);
    const queued = start(SHORT, '203.0.113.3');
    await expect.poll(() => activity().waiting).toBe(1);
    queued.abort();
    await expect.poll(activity).toEqual({ waiting: 0, running: 1, dropped: dropped + 1 });
    running.abort();
    await expect
      .poll(activity, { timeout: 30_000 })
      .toEqual({ waiting: 0, running: 0, dropped: dropped + 2 });
  });

  it('one client may have maxQueuedSamplesPerClient requests waiting or running; more get 429 client_busy', async () => {
    const mine = start(LONG, '203.0.113.4');
    await expect.poll(() => activity().running, { timeout: 30_000 }).toBe(1);
    const refused = await post(SHORT, '203.0.113.4');
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('client_busy');
    expect(activity()).toMatchObject({ waiting: 0, running: 1 });
    // Another client still queues behind it.
    const theirs = start(SHORT, '198.51.100.9');
    await expect.poll(() => activity().waiting).toBe(1);
    mine.abort();
    const served = await theirs.outcome;
    expect(served).toBeInstanceOf(Response);
    expect((served as Response).status).toBe(200);
    await (served as Response).arrayBuffer();
  });

  it('a compute thread samples the same images as the event loop, seed for seed', async () => {
    const settings = resolveSettings(
      { count: 3, steps: 4, seed: 7 },
      await t.coordinator.sampling.describe(ensembleId),
    );
    const there = await t.coordinator.compute!.run('sample', { ensembleId, settings });
    const here = await (await t.coordinator.sampling.ensemble(ensembleId)).sample(settings);
    expect(there.pixels).toEqual(here.pixels);
    expect(there.perSample).toEqual(here.perSample);
    expect(there.routing).toEqual(here.routing);
  });
});
