/**
 * Paused leases (services/lease-renewals.ts): heartbeats with `paused` keep a lease from its
 * pause for `pausedLeaseGraceMs`, through its worker's silence, and no longer; the first
 * unpaused heartbeat brings the lease back to the TTL; the workers list says since when a lease
 * is paused. Over real sockets and the real SQLite, with the sweep called at chosen moments.
 */
import type { CoordinatorMessage, HeartbeatAck, LeaseGrant } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { experts, leases } from '../../src/db/schema/index.js';
import { type Harness, startHarness } from './coordinator-harness.js';
import type { TestClient } from './socket-client.js';

const TTL = 1000;
const GRACE = 4000;

/** The answer to a heartbeat, past any lease.revoke the sweep sent meanwhile. */
async function beat(
  c: TestClient,
  leaseId: string,
  step: number,
  paused?: boolean,
): Promise<CoordinatorMessage> {
  let m = await c.request({
    type: 'heartbeat',
    leaseId,
    step,
    loss: 0.5,
    imagesPerSec: paused ? 0 : 10,
    ...(paused === undefined ? {} : { paused }),
  });
  while (m.type === 'lease.revoke') m = await c.next();
  return m;
}

const until = async (at: number) => {
  while (Date.now() <= at) await new Promise((r) => setTimeout(r, Math.max(1, at - Date.now())));
};

describe('paused leases', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const start = async () => {
    // Heartbeats written only by explicit flushes; the sweep runs on its timer too, which is what
    // a paused lease must survive.
    h = await startHarness({
      heartbeatMs: 200,
      leaseTtlMs: TTL,
      pausedLeaseGraceMs: GRACE,
      heartbeatFlushMs: 10_000,
    });
    await h.makeRun(1, 'fm', 50, 5);
    const { c, welcome } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    return { c, welcome, g, ...h.server.coordinator };
  };

  it('a paused lease survives its silence past the TTL until the grace from its pause, and no heartbeat extends it', async () => {
    const { c, g, db, hub } = await start();
    expect(await beat(c, g.leaseId, 1)).toMatchObject({ type: 'heartbeat.ack' });
    const t0 = Date.now();
    const first = (await beat(c, g.leaseId, 2, true)) as HeartbeatAck;
    const pausedAt = Date.parse(first.expiresAt) - GRACE;
    expect(pausedAt).toBeGreaterThanOrEqual(t0);
    // Every paused heartbeat promises the same deadline: the pause's start plus the grace.
    const again = (await beat(c, g.leaseId, 2, true)) as HeartbeatAck;
    expect(again.expiresAt).toBe(first.expiresAt);
    hub.flushRenewals();
    const row = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    expect(row.pausedAt?.getTime()).toBe(pausedAt);
    expect(row.expiresAt.toISOString()).toBe(first.expiresAt);
    const listed = await h!.api('GET', '/api/v1/workers');
    const workers = listed.body.workers as { lease: { id: string; pausedSince: string } | null }[];
    expect(workers.find((w) => w.lease?.id === g.leaseId)?.lease?.pausedSince).toBe(
      new Date(pausedAt).toISOString(),
    );

    // Silent well past the TTL: still active.
    await until(t0 + 2 * TTL);
    hub.sweep();
    expect(db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status).toBe('active');
    expect(await beat(c, g.leaseId, 2, true)).toMatchObject({ expiresAt: first.expiresAt });

    // Past the grace: expired, whatever it says, and its expert is leased again.
    await until(Date.parse(first.expiresAt));
    expect(await beat(c, g.leaseId, 2, true)).toMatchObject({
      type: 'error',
      code: 'lease_expired',
    });
    hub.sweep();
    expect(db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status).toBe('expired');
    expect(db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!.status).toBe(
      'pending',
    );
    c.close();
  });

  it('resuming brings the lease back to the TTL: written as is, so silence after it expires the lease', async () => {
    const { c, g, db, hub } = await start();
    expect(await beat(c, g.leaseId, 1)).toMatchObject({ type: 'heartbeat.ack' });
    const paused = (await beat(c, g.leaseId, 1, true)) as HeartbeatAck;
    hub.flushRenewals();
    const resumed = (await beat(c, g.leaseId, 2, false)) as HeartbeatAck;
    expect(Date.parse(resumed.expiresAt)).toBeLessThan(Date.parse(paused.expiresAt));
    hub.flushRenewals();
    const row = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    expect(row).toMatchObject({ status: 'active', pausedAt: null, lastStep: 2 });
    expect(row.expiresAt.toISOString()).toBe(resumed.expiresAt);
    // A new pause starts its own grace.
    const later = (await beat(c, g.leaseId, 2, true)) as HeartbeatAck;
    expect(Date.parse(later.expiresAt)).toBeGreaterThan(Date.parse(paused.expiresAt));
    expect(await beat(c, g.leaseId, 3)).toMatchObject({ type: 'heartbeat.ack' });
    hub.flushRenewals();
    const resumedAgain = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    await until(resumedAgain.expiresAt.getTime());
    hub.sweep();
    expect(db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status).toBe('expired');
    c.close();
  });

  it("a lease's first heartbeat may be paused (the write that starts training records it)", async () => {
    const { c, g, db } = await start();
    const ack = (await beat(c, g.leaseId, 0, true)) as HeartbeatAck;
    const row = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    expect(row.expiresAt.toISOString()).toBe(ack.expiresAt);
    expect(row.pausedAt!.getTime()).toBe(Date.parse(ack.expiresAt) - GRACE);
    expect(db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!.status).toBe(
      'training',
    );
    // The cached row carries the pause on: the next paused heartbeat promises the same deadline.
    expect(await beat(c, g.leaseId, 0, true)).toMatchObject({ expiresAt: ack.expiresAt });
    c.close();
  });

  it('refuses a grace shorter than the TTL', () => {
    expect(() => loadConfig({ leaseTtlMs: 10_000, pausedLeaseGraceMs: 5000 }, {})).toThrow(
      ConfigError,
    );
    expect(() => loadConfig({ leaseTtlMs: 10_000, pausedLeaseGraceMs: 5000 }, {})).toThrow(
      /pausedLeaseGraceMs \(5000\) must be at least leaseTtlMs \(10000\)/,
    );
    expect(loadConfig({}, {}).pausedLeaseGraceMs).toBe(3_600_000);
    expect(loadConfig({}, { ARCHIPELAGO_PAUSED_LEASE_GRACE_MS: '120000' }).pausedLeaseGraceMs).toBe(
      120_000,
    );
  });
});
