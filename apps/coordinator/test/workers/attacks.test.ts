/**
 * A hostile worker over a real socket (issue 12's attack suite, the leasing part): each attack is
 * refused with its code and changes nothing the coordinator had accepted.
 */
import type { LeaseGrant, Run } from '@archipelago/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './coordinator-harness.js';
import { hello, TestClient } from './socket-client.js';

describe('hostile workers cannot hoard or brick experts', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  const expertsOf = async (run: Run) =>
    ((await h.api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run).experts;

  it('hoarding: a second lease.request while holding a lease is refused (lease_held); others still get work', async () => {
    const run = await h.makeRun(2, 'any');
    const { c: greedy, welcome } = await h.connect('any');
    const grant = (await greedy.request({ type: 'lease.request' })) as LeaseGrant;
    expect(grant.type).toBe('lease.grant');
    expect(await greedy.request({ type: 'lease.request' })).toMatchObject({
      type: 'error',
      code: 'lease_held',
      fatal: false,
    });
    // The same identity on a second connection is the same worker (it replaces the first
    // connection): still one lease.
    const { c: twin } = await h.connect('any', { workerId: welcome.workerId });
    await greedy.closedWith;
    expect(await twin.request({ type: 'lease.request' })).toMatchObject({ code: 'lease_held' });
    // An honest worker gets the other expert.
    const { c: honest } = await h.connect('any');
    const other = (await honest.request({ type: 'lease.request' })) as LeaseGrant;
    expect(other.type).toBe('lease.grant');
    expect(other.expert.id).not.toBe(grant.expert.id);
    expect((await expertsOf(run)).map((e) => e.status).sort()).toEqual(['leased', 'leased']);
    // Once its lease is released, the worker may ask again and gets the expert it gave back.
    twin.send({ type: 'lease.release', leaseId: grant.leaseId, reason: 'done hoarding' });
    const again = (await twin.request({ type: 'lease.request' })) as LeaseGrant;
    expect(again).toMatchObject({ type: 'lease.grant', expert: { id: grant.expert.id } });
    for (const c of [greedy, twin, honest]) c.close();
  });

  it('bricking: a non-final checkpoint at the target step is refused; the final one still lands', async () => {
    const run = await h.makeRun(1, 'fm', 10, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(
      await c.request({
        type: 'checkpoint.begin',
        leaseId: g.leaseId,
        step: 10,
        bytes: 100,
        sha256: 'a'.repeat(64),
        final: false,
      }),
    ).toMatchObject({ type: 'error', code: 'invalid_message', message: /must be the final one/ });
    expect((await expertsOf(run))[0]).toMatchObject({ checkpointStep: null, status: 'leased' });
    const body = new Uint8Array(500).fill(7);
    const up = await h.upload(c, g.leaseId, 10, body, true);
    expect(up.put.status).toBe(200);
    expect(
      await c.request({
        type: 'checkpoint.commit',
        leaseId: g.leaseId,
        checkpointId: up.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted', step: 10 });
    c.close();
  });

  it('heartbeats cannot move an expert back past its resume point, nor past its target', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c: first } = await h.connect('fm');
    const g1 = (await first.request({ type: 'lease.request' })) as LeaseGrant;
    const up = await h.upload(first, g1.leaseId, 5, new Uint8Array(300).fill(1));
    expect(
      await first.request({
        type: 'checkpoint.commit',
        leaseId: g1.leaseId,
        checkpointId: up.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted' });
    first.send({ type: 'lease.release', leaseId: g1.leaseId, reason: 'bye' });
    await first.next(500).catch(() => undefined);
    const { c: second } = await h.connect('fm');
    const g2 = (await second.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g2.resumeFrom?.step).toBe(5);
    const beat = (step: number) =>
      second.request({ type: 'heartbeat', leaseId: g2.leaseId, step, loss: 0.5, imagesPerSec: 1 });
    for (const step of [0, 4, 21]) {
      expect(await beat(step)).toMatchObject({
        type: 'error',
        code: 'invalid_message',
        message: /outside/,
      });
    }
    expect((await expertsOf(run))[0]).toMatchObject({ step: 5, checkpointStep: 5 });
    expect(await beat(7)).toMatchObject({ type: 'heartbeat.ack' });
    expect((await expertsOf(run))[0]).toMatchObject({ step: 7, checkpointStep: 5 });
    first.close();
    second.close();
  });
});

describe('a hostile hello', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  it('unbounded hardware fields are refused with invalid_message; nothing is recorded', async () => {
    const before = (await h.api('GET', '/api/v1/workers')).body as { workers: unknown[] };
    for (const hardware of [
      { cpus: 2, memoryBytes: 1e9, threads: 1, gpu: { index: 0, junk: 'x'.repeat(1000) } },
      { cpus: 2, memoryBytes: 2 ** 60, threads: 1 },
      { cpus: 2, memoryBytes: 1e9, threads: 1, gpu: { index: 1e9 } },
    ]) {
      const c = await TestClient.connect(h.base);
      expect(await c.request(hello(h.token, 'any', { hardware }))).toMatchObject({
        type: 'error',
        code: 'invalid_message',
        inReplyTo: 'hello',
      });
      c.close();
    }
    const after = (await h.api('GET', '/api/v1/workers')).body as { workers: unknown[] };
    expect(after.workers.length).toBe(before.workers.length);
  });

  it("the public event log names no volunteer's address", async () => {
    const { c } = await h.connect('any');
    const res = await fetch(`${h.base}/api/v1/events?limit=50`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toContain('worker.connected');
    expect(text).not.toMatch(/127\.0\.0\.1|::1|::ffff/);
    c.close();
  });
});

describe('a connection that never says hello', () => {
  it('is closed after the hello deadline with a fatal out_of_order; one that says hello in time stays', async () => {
    const h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 10_000, helloTimeoutMs: 300 });
    try {
      const silent = await TestClient.connect(h.base);
      expect(await silent.next(5000)).toMatchObject({
        type: 'error',
        code: 'out_of_order',
        fatal: true,
        message: /no hello within 300 ms/,
      });
      expect((await silent.closedWith).code).toBe(1008);
      const { c } = await h.connect('any');
      await new Promise((r) => setTimeout(r, 600));
      expect((await c.request({ type: 'lease.request' })).type).toMatch(/^lease\./);
      c.close();
    } finally {
      await h.close();
    }
  });
});
