/**
 * Idle workers' lease requests answered from memory while nothing is pending
 * (src/services/idle-requests.ts), over real sockets and the real SQLite: the answer is the same
 * `lease.none` as the lease transaction's; work that appears (a run created here, an expert made
 * pending by another process) is leased at the next request, never hidden by the remembered
 * answer; and a worker that holds a lease is still refused `lease_held`.
 */
import type { LeaseGrant } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/database.js';
import { experts } from '../../src/db/schema/index.js';
import { type Harness, startHarness } from './coordinator-harness.js';

describe('idle lease requests', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('answers lease.none from memory while nothing is pending, and leases work at once when a run appears', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000 });
    const { hub } = h.server.coordinator;
    const { c } = await h.connect('fm');
    // The first request runs the lease transaction and finds nothing.
    const first = await c.request({ type: 'lease.request' });
    expect(first).toMatchObject({ type: 'lease.none', retryAfterMs: 1000 });
    const before = hub.idle.answered;
    // The next ones: the same answer, from memory.
    for (let i = 0; i < 5; i++) expect(await c.request({ type: 'lease.request' })).toEqual(first);
    expect(hub.idle.answered).toBe(before + 5);
    // A run is created and clustered (state changes): the very next request is a grant.
    const run = await h.makeRun(2, 'fm', 10, 5);
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g).toMatchObject({ type: 'lease.grant', expert: { runId: run.id } });
    const { c: other } = await h.connect('fm');
    expect(await other.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.grant' });
    // Nothing pending now: a third worker is told so (and it is remembered, per objective; a
    // hello is a state change too, with its event row, so both connect first).
    const { c: third } = await h.connect('fm');
    const { c: ddpm } = await h.connect('ddpm');
    expect(await third.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
    expect(await ddpm.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
    const remembered = hub.idle.answered;
    expect(await third.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
    expect(hub.idle.answered).toBe(remembered + 1);
    // A worker holding a lease is still refused as a hoarder, not told lease.none.
    expect(await c.request({ type: 'lease.request' })).toMatchObject({
      type: 'error',
      code: 'lease_held',
    });
    expect(hub.idle.answered).toBe(remembered + 1);
    for (const x of [c, other, third, ddpm]) x.close();
  });

  it('work made pending by another process is leased within one poll of the database', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000 });
    const { hub, config } = h.server.coordinator;
    await h.makeRun(2, 'fm', 10, 5);
    const { c: holder } = await h.connect('fm');
    const g = (await holder.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g.type).toBe('lease.grant');
    const { c: holder2 } = await h.connect('fm');
    expect(await holder2.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.grant' });
    const { c } = await h.connect('fm');
    expect(await c.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
    const answered = hub.idle.answered;
    expect(await c.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
    expect(hub.idle.answered).toBe(answered + 1);
    // Another process (a second connection to the same file, as the CLI is) adds a pending
    // expert to the run: this process's state generation does not move.
    const db = openDatabase({ file: `${config.dataDir}/coordinator.sqlite`, migrate: false });
    try {
      const row = db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!;
      db.insert(experts)
        .values({
          ...row,
          id: `${row.id}b`,
          cluster: 2,
          status: 'pending',
          workerId: null,
        })
        .run();
    } finally {
      db.$client.close();
    }
    // Seen through the data_version poll: asked again until granted (no fixed wait).
    let answer: unknown;
    await expect
      .poll(
        async () => {
          answer = await c.request({ type: 'lease.request' });
          return (answer as { type: string }).type;
        },
        { timeout: 10_000, interval: 50 },
      )
      .toBe('lease.grant');
    expect(answer).toMatchObject({ expert: { id: `${g.expert.id}b` } });
    for (const x of [holder, holder2, c]) x.close();
  });
});
