/**
 * Resume points are checked before another worker continues from them (issue 12, point 3): a
 * hostile worker commits a non-final checkpoint (accepted at commit: only its size and header are
 * judged there), and the next worker's grant never points at it unless the coordinator loaded it
 * and measured its held-out loss itself.
 */
import type { LeaseGrant, Run } from '@archipelago/protocol';
import { and, eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpoints, events } from '../../src/db/schema/index.js';
import { type Harness, sha, startHarness } from './coordinator-harness.js';
import type { TestClient } from './socket-client.js';

describe('resume points', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  const db = () => h.server.coordinator.db;
  const expertOf = async (run: Run) =>
    ((await h.api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run).experts[0]!;

  /** Upload and commit a non-final checkpoint at `step`; the coordinator accepts it for now. */
  async function commit(c: TestClient, g: LeaseGrant, step: number, bytes: Uint8Array) {
    const up = await h.upload(c, g.leaseId, step, bytes);
    expect(up.put.status).toBe(200);
    expect(
      await c.request({
        type: 'checkpoint.commit',
        leaseId: g.leaseId,
        checkpointId: up.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted', step });
    return up.url.checkpointId;
  }

  /** A worker gives its lease back and closes; the next worker asks for one and keeps it. */
  async function handOver(c: TestClient, g: LeaseGrant) {
    c.send({ type: 'lease.release', leaseId: g.leaseId, reason: 'bye' });
    await c.next(500).catch(() => undefined);
    c.close();
    const { c: next } = await h.connect('fm');
    const grant = (await next.request({ type: 'lease.request' })) as LeaseGrant;
    expect(grant.type, JSON.stringify(grant)).toBe('lease.grant');
    return { c: next, g: grant };
  }

  const rejections = () =>
    db()
      .select()
      .from(events)
      .where(eq(events.type, 'checkpoint.rejected'))
      .all()
      .map((e) => e.data as { checkpointId: string; reason: string; resumeCheck?: boolean });

  it('a poisoned (NaN) resume point is never handed on: rejected, deleted, the next worker starts from scratch', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const id = await commit(c, g, 5, await h.checkpoint(g, 5, Number.NaN));
    const row = db().select().from(checkpoints).where(eq(checkpoints.id, id)).get()!;
    expect((await expertOf(run)).checkpointStep).toBe(5);

    const next = await handOver(c, g);
    next.c.close();
    expect(next.g.resumeFrom).toBeUndefined();
    expect(await expertOf(run)).toMatchObject({ checkpointStep: null, step: 0, status: 'leased' });
    const after = db().select().from(checkpoints).where(eq(checkpoints.id, id)).get()!;
    expect(after.status).toBe('rejected');
    expect(after.reason).toMatch(/^resume check: non_finite/);
    expect(rejections()).toContainEqual(
      expect.objectContaining({ checkpointId: id, resumeCheck: true }),
    );
    await expect(h.server.coordinator.store.getBytes(row.key)).rejects.toThrow();
  });

  it('a store failing during the resume check decides nothing: the grant is given back, the checkpoint kept, the next request resumes from it', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    // The zero-output network (fill 0): it passes the resume check whatever noise the check
    // draws, so the only thing that can keep it from being handed on is the store.
    const id = await commit(c, g, 5, await h.checkpoint(g, 5));
    const row = db().select().from(checkpoints).where(eq(checkpoints.id, id)).get()!;
    c.send({ type: 'lease.release', leaseId: g.leaseId, reason: 'bye' });
    // Released (it has no answer): waited on by state, not by time.
    await expect.poll(async () => (await expertOf(run)).status).toBe('pending');
    c.close();
    // The store answers 500 for this object once (an S3 outage, say).
    const { store } = h.server.coordinator;
    const getBytes = store.getBytes.bind(store);
    let failed = 0;
    store.getBytes = async (key, range) => {
      if (key === row.key && failed === 0) {
        failed++;
        throw new Error('InternalError: We encountered an internal error. Please try again.');
      }
      return getBytes(key, range);
    };
    const { c: next } = await h.connect('fm');
    expect(await next.request({ type: 'lease.request' })).toMatchObject({
      type: 'lease.none',
      reason: /object store/,
    });
    expect(failed).toBe(1);
    const kept = db().select().from(checkpoints).where(eq(checkpoints.id, id)).get()!;
    expect(kept.status).toBe('accepted');
    expect(rejections()).toEqual([]);
    expect(sha(await getBytes(row.key))).toBe(row.sha256);
    expect(await expertOf(run)).toMatchObject({ status: 'pending', checkpointStep: 5 });
    // Asked again, the grant resumes from the checkpoint, now checked.
    const grant = (await next.request({ type: 'lease.request' })) as LeaseGrant;
    expect(grant.type, JSON.stringify(grant)).toBe('lease.grant');
    expect(grant.resumeFrom?.step).toBe(5);
    next.close();
  });

  it('a checked resume point is kept; a later one that is finite but far worse falls back to it', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    // Zero weights: the zero-output network, exactly the baseline (ratio 1).
    const good = await commit(c, g, 5, await h.checkpoint(g, 5, 0));
    // The next worker resumes from step 5: checked now, and kept.
    const second = await handOver(c, g);
    expect(second.g.resumeFrom?.step).toBe(5);
    const checked = db().select().from(checkpoints).where(eq(checkpoints.id, good)).get()!;
    expect(checked).toMatchObject({ status: 'accepted', resumeLossRatio: 1 });
    expect(checked.resumeCheckedAt).not.toBeNull();

    // That worker is hostile: huge weights, finite, every file check passes, and a held-out loss
    // many times an untrained network's.
    const bad = await commit(second.c, second.g, 10, await h.checkpoint(second.g, 10, 0.5));
    expect((await expertOf(run)).checkpointStep).toBe(10);

    const third = await handOver(second.c, second.g);
    third.c.close();
    expect(third.g.resumeFrom?.step).toBe(5);
    expect(third.g.resumeFrom?.checkpoint.sha256).toBe(checked.sha256);
    expect(await expertOf(run)).toMatchObject({ checkpointStep: 5, step: 5 });
    const rejected = db().select().from(checkpoints).where(eq(checkpoints.id, bad)).get()!;
    expect(rejected.status).toBe('rejected');
    expect(rejected.reason).toMatch(/^resume check: loss_regressed/);
    // The point that passed is still there and still hashes right.
    expect(
      db()
        .select()
        .from(checkpoints)
        .where(and(eq(checkpoints.expertId, g.expert.id), eq(checkpoints.status, 'accepted')))
        .all()
        .map((r) => r.id),
    ).toEqual([good]);
    const bytes = await h.server.coordinator.store.getBytes(checked.key);
    expect(sha(bytes)).toBe(checked.sha256);
  });
});
