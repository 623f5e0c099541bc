/**
 * A store that stalls while a checkpoint is committed (found by the chaos run,
 * apps/worker/test/chaos/): a worker's frames are handled in order, so its heartbeats used to
 * wait behind its own `checkpoint.commit` while the store was slow, and the lease expired under
 * the commit ("abandoned: its lease ended before it was committed"). Now a heartbeat overtakes a
 * checkpoint frame that waits on the store, and nothing else: a release still answers in order.
 * Real sockets and SQLite; the store's reads are held by a gate the test opens.
 */
import type { LeaseGrant } from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { leases } from '../../src/db/schema/index.js';
import { type Harness, startHarness } from './coordinator-harness.js';
import type { TestClient } from './socket-client.js';

const beat = (c: TestClient, leaseId: string, step: number) =>
  c.send({ type: 'heartbeat', leaseId, step, loss: 0.5, imagesPerSec: 10 });

/** Hold every getStream of `store` until the returned function is called. */
function stallReads(store: ObjectStore): { held: () => number; open: () => void } {
  const original = store.getStream.bind(store);
  let held = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  store.getStream = async (...args) => {
    held++;
    await gate;
    return original(...args);
  };
  return { held: () => held, open };
}

describe('heartbeats while the store stalls a commit', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('are acknowledged and renew the lease during its own slow commit, which is then accepted', async () => {
    // Heartbeats every 200 ms, a lease that lives 1.5 s: the commit is held three TTLs.
    h = await startHarness({ heartbeatMs: 200, leaseTtlMs: 1500 });
    const { db, store } = h.server.coordinator;
    await h.makeRun(1, 'fm', 20, 10);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g.type).toBe('lease.grant');
    c.send({ type: 'heartbeat', leaseId: g.leaseId, step: 10, loss: 0.5, imagesPerSec: 10 });
    expect(await c.next()).toMatchObject({ type: 'heartbeat.ack' });
    const bytes = await h.checkpoint(g, 10);
    const { url, put } = await h.upload(c, g.leaseId, 10, bytes);
    expect(put.status).toBe(200);

    const stall = stallReads(store);
    c.send({ type: 'checkpoint.commit', leaseId: g.leaseId, checkpointId: url.checkpointId });
    // The commit waits on the store; heartbeats sent meanwhile are answered, past several TTLs.
    const acks: string[] = [];
    const deadline = Date.now() + 4500;
    while (Date.now() < deadline) {
      beat(c, g.leaseId, 10);
      const m = await c.next();
      expect(m, JSON.stringify(m)).toMatchObject({ type: 'heartbeat.ack', leaseId: g.leaseId });
      acks.push(m.type);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(stall.held()).toBeGreaterThan(0);
    expect(acks.length).toBeGreaterThanOrEqual(3);
    expect(db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status).toBe('active');
    stall.open();
    expect(await c.next()).toMatchObject({
      type: 'checkpoint.accepted',
      checkpointId: url.checkpointId,
      step: 10,
    });
    expect(db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status).toBe('active');
    c.close();
  });

  it('a heartbeat behind a release waits for it (in order): its answer says the lease is gone', async () => {
    h = await startHarness({ heartbeatMs: 200, leaseTtlMs: 10_000 });
    const { store } = h.server.coordinator;
    await h.makeRun(1, 'fm', 20, 10);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const bytes = await h.checkpoint(g, 10);
    const { url } = await h.upload(c, g.leaseId, 10, bytes);
    const stall = stallReads(store);
    c.send({ type: 'checkpoint.commit', leaseId: g.leaseId, checkpointId: url.checkpointId });
    c.send({ type: 'lease.release', leaseId: g.leaseId, reason: 'stopping' });
    beat(c, g.leaseId, 10);
    // Nothing overtook the release: the first answer comes once the store is back.
    await expect(c.next(500)).rejects.toThrow(/no frame/);
    stall.open();
    expect(await c.next()).toMatchObject({ type: 'checkpoint.accepted', step: 10 });
    expect(await c.next()).toMatchObject({ type: 'error', code: 'lease_expired' });
    c.close();
  });
});
