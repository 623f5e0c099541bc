/**
 * The coordinator's own metrics (metrics.ts) over real sockets and the real coordinator: workers
 * connect, lease, heartbeat, upload and commit checkpoints (one accepted, one rejected), release,
 * let a lease expire and get the expert again; a job waits in the queue and a sampling request
 * runs. /metrics is scraped before and after and every figure must have moved by exactly what
 * was done.
 */
import type { CheckpointAccepted, LeaseGrant } from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobs } from '../../src/db/schema/index.js';
import { newId } from '../../src/ids.js';
import { FRAME_BUCKETS } from '../../src/metrics.js';
import { publishTestEnsemble } from '../ensembles/test-ensemble.js';
import { type Harness, startHarness } from './coordinator-harness.js';
import type { TestClient } from './socket-client.js';

/** One scrape: every sample by `name{labels}` (labels sorted, the service label left out). */
type Scrape = Map<string, number>;

function parseExposition(text: string): Scrape {
  const out: Scrape = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .filter(([, k]) => k !== 'service')
      .map(([, k, v]) => `${k}="${v}"`)
      .sort();
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}

/** A sample's value; 0 for a series not (yet) exposed. */
const value = (s: Scrape, name: string, labels: Record<string, string> = {}) => {
  const key = `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')}}`;
  return s.get(key) ?? 0;
};

describe('coordinator metrics', () => {
  let h: Harness;
  const scrape = async () => {
    const res = await fetch(`${h.base}/metrics`);
    expect(res.status).toBe(200);
    return parseExposition(await res.text());
  };
  beforeAll(async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000 });
  });
  afterAll(async () => h.close());

  it('count connections, frames by type, grants and regrants, lease ends, checkpoint verdicts and bytes, exactly', async () => {
    await h.makeRun(2, 'ddpm', 10, 5);
    const before = await scrape();
    const moved = (after: Scrape, name: string, labels: Record<string, string> = {}) =>
      value(after, name, labels) - value(before, name, labels);
    const frames = (after: Scrape, type: string) =>
      moved(after, 'archipelago_worker_frame_seconds_count', { type });

    const a = (await h.connect('ddpm')).c;
    const b = (await h.connect('ddpm')).c;
    const ga = (await a.request({ type: 'lease.request' })) as LeaseGrant;
    const gb = (await b.request({ type: 'lease.request' })) as LeaseGrant;
    expect([ga.type, gb.type]).toEqual(['lease.grant', 'lease.grant']);
    const during = await scrape();
    expect(value(during, 'archipelago_workers_connected')).toBe(2);
    expect(value(during, 'archipelago_leases_active')).toBe(2);
    expect(moved(during, 'archipelago_lease_grants_total', { kind: 'first' })).toBe(2);

    const beat = (c: TestClient, leaseId: string, step: number) =>
      c.request({ type: 'heartbeat', leaseId, step, loss: 0.5, imagesPerSec: 10 });
    for (const step of [1, 2, 3])
      expect(await beat(a, ga.leaseId, step)).toMatchObject({ type: 'heartbeat.ack' });

    // a: an accepted checkpoint; b: one whose bytes are not what it announced (nothing stored,
    // so its commit is rejected).
    const good = await h.checkpoint(ga, 5);
    const up = await h.upload(a, ga.leaseId, 5, good);
    expect(up.put.status).toBe(200);
    const accepted = (await a.request({
      type: 'checkpoint.commit',
      leaseId: ga.leaseId,
      checkpointId: up.url.checkpointId,
    })) as CheckpointAccepted;
    expect(accepted.type).toBe('checkpoint.accepted');
    const bad = await h.checkpoint(gb, 5);
    const wrong = await h.upload(b, gb.leaseId, 5, bad, false, '0'.repeat(64));
    expect(wrong.put.status).toBe(400); // the local store checks the announced hash on upload
    expect(
      await b.request({
        type: 'checkpoint.commit',
        leaseId: gb.leaseId,
        checkpointId: wrong.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.rejected' });

    // An invalid frame, refused before it has a type.
    expect(await a.request('not json')).toMatchObject({ type: 'error', fatal: false });

    // a releases its lease (no reply) and asks again: it gets its expert back (b holds the other).
    a.send({ type: 'lease.release', leaseId: ga.leaseId, reason: 'test' });
    const again = (await a.request({ type: 'lease.request' })) as LeaseGrant;
    expect(again).toMatchObject({ type: 'lease.grant', expert: { id: ga.expert.id } });

    const after = await scrape();
    expect(value(after, 'archipelago_workers_connected')).toBe(2);
    expect(value(after, 'archipelago_leases_active')).toBe(2);
    expect(moved(after, 'archipelago_lease_grants_total', { kind: 'first' })).toBe(2);
    expect(moved(after, 'archipelago_lease_grants_total', { kind: 'regrant' })).toBe(1);
    expect(moved(after, 'archipelago_lease_ends_total', { how: 'expired' })).toBe(0);
    expect(moved(after, 'archipelago_lease_ends_total', { how: 'released' })).toBe(1);
    expect(moved(after, 'archipelago_lease_ends_total', { how: 'completed' })).toBe(0);
    expect(moved(after, 'archipelago_checkpoint_verdicts_total', { verdict: 'accepted' })).toBe(1);
    expect(moved(after, 'archipelago_checkpoint_verdicts_total', { verdict: 'rejected' })).toBe(1);
    expect(moved(after, 'archipelago_checkpoint_verdicts_total', { verdict: 'stale' })).toBe(0);
    expect(moved(after, 'archipelago_checkpoint_bytes_total', { object: 'weights' })).toBe(
      good.length,
    );
    expect(moved(after, 'archipelago_checkpoint_bytes_total', { object: 'optimizer' })).toBe(0);
    expect(moved(after, 'archipelago_worker_invalid_frames_total', { reason: 'invalid' })).toBe(1);
    expect({
      hello: frames(after, 'hello'),
      'lease.request': frames(after, 'lease.request'),
      heartbeat: frames(after, 'heartbeat'),
      'checkpoint.begin': frames(after, 'checkpoint.begin'),
      'checkpoint.commit': frames(after, 'checkpoint.commit'),
      'lease.release': frames(after, 'lease.release'),
      'lease.complete': frames(after, 'lease.complete'),
    }).toEqual({
      hello: 2,
      'lease.request': 3,
      heartbeat: 3,
      'checkpoint.begin': 2,
      'checkpoint.commit': 2,
      'lease.release': 1,
      'lease.complete': 0,
    });
    // A histogram: cumulative buckets ending in +Inf = count, and time was spent.
    const hb = { type: 'heartbeat' };
    const buckets = FRAME_BUCKETS.map((le) =>
      value(after, 'archipelago_worker_frame_seconds_bucket', { ...hb, le: String(le) }),
    );
    for (let i = 1; i < buckets.length; i++)
      expect(buckets[i]).toBeGreaterThanOrEqual(buckets[i - 1]!);
    expect(value(after, 'archipelago_worker_frame_seconds_bucket', { ...hb, le: '+Inf' })).toBe(
      value(after, 'archipelago_worker_frame_seconds_count', hb),
    );
    expect(buckets.at(-1)).toBe(value(after, 'archipelago_worker_frame_seconds_count', hb));
    expect(moved(after, 'archipelago_worker_frame_seconds_sum', hb)).toBeGreaterThan(0);

    b.close();
    await expect.poll(async () => value(await scrape(), 'archipelago_workers_connected')).toBe(1);
    a.close();
  });

  it('count a lease that expired, and its expert granted again', async () => {
    // A coordinator of its own with a short TTL: the lease left without heartbeats expires.
    const short = await startHarness({ heartbeatMs: 200, leaseTtlMs: 1000 });
    try {
      await short.makeRun(1, 'fm', 10, 5);
      const read = async () => {
        const res = await fetch(`${short.base}/metrics`);
        return parseExposition(await res.text());
      };
      const before = await read();
      const { c } = await short.connect('fm');
      const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
      expect(g.type).toBe('lease.grant');
      // No heartbeat: the sweep ends the lease and the hub tells the worker.
      expect(await c.next(15_000)).toMatchObject({ type: 'lease.revoke', leaseId: g.leaseId });
      const expired = await read();
      const moved = (s: Scrape, name: string, labels: Record<string, string>) =>
        value(s, name, labels) - value(before, name, labels);
      expect(moved(expired, 'archipelago_lease_ends_total', { how: 'expired' })).toBe(1);
      expect(value(expired, 'archipelago_leases_active')).toBe(0);
      expect(moved(expired, 'archipelago_lease_grants_total', { kind: 'first' })).toBe(1);
      const again = (await c.request({ type: 'lease.request' })) as LeaseGrant;
      expect(again).toMatchObject({ type: 'lease.grant', expert: { id: g.expert.id } });
      const regranted = await read();
      expect(moved(regranted, 'archipelago_lease_grants_total', { kind: 'regrant' })).toBe(1);
      expect(moved(regranted, 'archipelago_lease_grants_total', { kind: 'first' })).toBe(1);
      c.close();
    } finally {
      await short.close();
    }
  });

  it('read the job queue at scrape time', async () => {
    const { db } = h.server.coordinator;
    const depth = async () =>
      value(await scrape(), 'archipelago_job_queue_depth', { job: 'publish-ensemble' });
    const before = await depth();
    // Queued and not due for an hour: nothing claims it during the test.
    db.insert(jobs)
      .values({
        id: newId('job'),
        name: 'publish-ensemble',
        status: 'queued',
        payload: {},
        runAfter: new Date(Date.now() + 3_600_000),
      })
      .run();
    expect(await depth()).toBe(before + 1);
  });

  it('time sampling requests and expose the sampling queue and event-loop delay', async () => {
    const manifest = await publishTestEnsemble(h.server.coordinator);
    const before = await scrape();
    const res = await fetch(`${h.base}/api/v1/ensembles/${manifest.id}/samples`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ count: 2, steps: 2 }),
    });
    expect(res.status).toBe(200);
    await res.json();
    const after = await scrape();
    const count = (s: Scrape, outcome: string) =>
      value(s, 'archipelago_sampling_request_seconds_count', { outcome });
    expect(count(after, 'ok') - count(before, 'ok')).toBe(1);
    expect(count(after, 'error') - count(before, 'error')).toBe(0);
    expect(
      value(after, 'archipelago_sampling_request_seconds_sum', { outcome: 'ok' }) -
        value(before, 'archipelago_sampling_request_seconds_sum', { outcome: 'ok' }),
    ).toBeGreaterThan(0);
    expect(after.has('archipelago_sampling_queue_depth{state="running"}')).toBe(true);
    expect(value(after, 'archipelago_sampling_queue_depth', { state: 'running' })).toBe(0);

    // A long request is seen running, then, its client gone, counted as cancelled.
    const abort = new AbortController();
    const long = fetch(`${h.base}/api/v1/ensembles/${manifest.id}/samples`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ count: 64, steps: 100, sampler: 'heun', routing: 'full' }),
      signal: abort.signal,
    }).catch((err: Error) => err);
    const running = async () =>
      value(await scrape(), 'archipelago_sampling_queue_depth', { state: 'running' });
    await expect.poll(running, { timeout: 30_000 }).toBe(1);
    abort.abort();
    expect(await long).toBeInstanceOf(Error);
    await expect
      .poll(async () => count(await scrape(), 'cancelled') - count(before, 'cancelled'), {
        timeout: 30_000,
      })
      .toBe(1);
    const settled = await scrape();
    expect(value(settled, 'archipelago_sampling_queue_depth', { state: 'running' })).toBe(0);
    expect(count(settled, 'ok') - count(before, 'ok')).toBe(1);
    // prom-client's default metrics: perf_hooks.monitorEventLoopDelay, since the last scrape.
    expect(after.has('nodejs_eventloop_lag_p99_seconds{}')).toBe(true);
    expect(value(after, 'nodejs_eventloop_lag_p99_seconds')).toBeGreaterThan(0);
  });
  it('count the shared sampling queue in Redis mode', async () => {
    // No process takes sampling jobs from this queue: a request waits there until dropped.
    const r = await startHarness(
      { heartbeatMs: 1000, leaseTtlMs: 60_000 },
      {
        ARCHIPELAGO_REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
        ARCHIPELAGO_REDIS_PREFIX: `test-metrics-${process.pid}-${Date.now()}`,
        ARCHIPELAGO_LOCAL_JOBS: 'false',
      },
    );
    try {
      const manifest = await publishTestEnsemble(r.server.coordinator);
      const read = async () => parseExposition(await (await fetch(`${r.base}/metrics`)).text());
      const depth = async (state: string) =>
        value(await read(), 'archipelago_sampling_queue_depth', { state });
      expect(await depth('waiting')).toBe(0);
      const abort = new AbortController();
      const waiting = fetch(`${r.base}/api/v1/ensembles/${manifest.id}/samples`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ count: 2, steps: 2 }),
        signal: abort.signal,
      }).catch((err: Error) => err);
      await expect.poll(() => depth('waiting'), { timeout: 30_000 }).toBe(1);
      expect(await depth('running')).toBe(0);
      abort.abort();
      expect(await waiting).toBeInstanceOf(Error);
      // Dropped: removed from the queue and counted as cancelled.
      await expect.poll(() => depth('waiting'), { timeout: 30_000 }).toBe(0);
      await expect
        .poll(
          async () =>
            value(await read(), 'archipelago_sampling_request_seconds_count', {
              outcome: 'cancelled',
            }),
          { timeout: 30_000 },
        )
        .toBe(1);
    } finally {
      await r.close();
    }
  });
});
