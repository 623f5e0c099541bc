import type { Run, RunEvent } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leases, runs } from '../../src/db/schema/index.js';
import { LeaseError, tryLease } from '../../src/services/leases.js';
import { auth } from '../helpers.js';
import { type RunFixture, runFixture } from './fixtures.js';

describe('cancelling a run', () => {
  let f: RunFixture;
  beforeAll(async () => {
    f = await runFixture();
  });
  afterAll(async () => f.t.close());

  const cancel = (runId: string, headers: Record<string, string> = auth) =>
    f.t.app.inject({ method: 'POST', url: `/api/v1/runs/${runId}/cancel`, headers });
  const eventsOf = async (runId: string) =>
    (
      (await f.t.app.inject({ method: 'GET', url: `/api/v1/runs/${runId}/events` })).json() as {
        events: RunEvent[];
      }
    ).events;

  it('needs the admin key', async () => {
    expect((await cancel(f.run.id, {})).statusCode).toBe(401);
    expect((await cancel(f.run.id, { authorization: 'Bearer not-the-key-0000' })).statusCode).toBe(
      403,
    );
    const run = (await f.t.app.inject({ method: 'GET', url: `/api/v1/runs/${f.run.id}` })).json();
    expect(run.status).toBe('training');
  });

  it('revokes active leases, returns experts to the pool and stops leasing the run', async () => {
    const { leaseId, expertId } = f.lease();
    f.beat(leaseId, 7, 1.1);
    const res = await cancel(f.run.id);
    expect(res.statusCode, res.body).toBe(200);
    const run = res.json() as Run;
    expect(run.status).toBe('cancelled');
    const expert = run.experts.find((e) => e.id === expertId)!;
    expect(expert).toMatchObject({ status: 'pending', workerId: null, step: 0 });
    const lease = f.t.coordinator.db.select().from(leases).where(eq(leases.id, leaseId)).get()!;
    expect(lease.status).toBe('revoked');
    expect(lease.endedAt).not.toBeNull();
    // The worker learns at its next heartbeat.
    expect(() => f.beat(leaseId, 8, 1.0)).toThrow(LeaseError);
    const { db, config } = f.t.coordinator;
    expect(tryLease(db, f.workerId, 'any', config.leaseTtlMs)).toBeNull();
    const log = await eventsOf(f.run.id);
    expect(log.slice(0, 2).map((e) => e.type)).toEqual(['run.cancelled', 'lease.revoked']);
    expect(log[0]!.data).toMatchObject({ previousStatus: 'training', revokedLeases: 1 });
    expect(log[1]).toMatchObject({ expertId, workerId: f.workerId, data: { leaseId } });
  });

  it('is idempotent for a cancelled run, refuses a finished one, 404s an unknown one', async () => {
    const before = (await eventsOf(f.run.id)).length;
    const again = await cancel(f.run.id);
    expect(again.statusCode).toBe(200);
    expect(again.json().status).toBe('cancelled');
    expect(await eventsOf(f.run.id)).toHaveLength(before);

    const other = await f.newRun();
    f.t.coordinator.db.update(runs).set({ status: 'failed' }).where(eq(runs.id, other.id)).run();
    const refused = await cancel(other.id);
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.code).toBe('run_finished');
    expect((await cancel('run_doesnotexist')).statusCode).toBe(404);
  });
});
