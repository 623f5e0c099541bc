/**
 * Heartbeats acknowledged from memory and written in batches (services/lease-renewals.ts), over
 * real sockets and the real SQLite: a flush writes exactly what the acks promised and never onto
 * an ended lease, expiry is decided on the acknowledged renewals however long the flush interval,
 * every state change still has its event row, and a coordinator killed with SIGKILL loses at
 * most the heartbeats of one flush interval and never keeps a lease alive past its deadline.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { HeartbeatAck, LeaseGrant } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/database.js';
import { events, expertMetrics, experts, leases, workers } from '../../src/db/schema/index.js';
import { SIGHTING_MS } from '../../src/services/lease-renewals.js';
import { ADMIN_KEY, makeImageFolder } from '../helpers.js';
import { type Harness, startHarness } from './coordinator-harness.js';
import { hello, TestClient } from './socket-client.js';

const BIN = path.resolve(import.meta.dirname, '../../dist/bin.js');

const beat = (c: TestClient, leaseId: string, step: number, loss: number | null = 0.5) =>
  c.request({ type: 'heartbeat', leaseId, step, loss, imagesPerSec: 10 + step });

describe('heartbeats written in batches', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('a flush writes exactly the deadline and progress the acks promised, and at most one curve point per lease', async () => {
    // A flush interval longer than the test: only the explicit flush writes.
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000, heartbeatFlushMs: 10_000 });
    const { db, hub } = h.server.coordinator;
    await h.makeRun(1, 'fm', 50, 5);
    const { c, welcome } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const atHello = db.select().from(workers).where(eq(workers.id, welcome.workerId)).get()!;
    // The first heartbeat is a state change (leased -> training): written at once, with its event.
    expect(await beat(c, g.leaseId, 1)).toMatchObject({ type: 'heartbeat.ack' });
    const first = db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!;
    expect(first).toMatchObject({ status: 'training', step: 1 });
    const trainingEvents = db.select().from(events).where(eq(events.type, 'expert.training')).all();
    expect(trainingEvents).toHaveLength(1);
    expect(trainingEvents[0]).toMatchObject({
      expertId: g.expert.id,
      data: { leaseId: g.leaseId },
    });

    let last: HeartbeatAck | undefined;
    // Three flushes; each keeps the last heartbeat of the lease that moved the step on with a
    // finite loss as its curve point.
    for (const beats of [
      [[2, 0.9]],
      [
        [3, 0.8],
        [3, 0.7], // the step did not move: not a curve point
        [4, null], // no loss: not a curve point, and the stored loss stays
      ],
      [
        [5, 0.6],
        [6, 0.4], // the flush's point; 5 is not on the curve
        [6, 0.3],
      ],
    ] as const) {
      for (const [step, loss] of beats) {
        last = (await beat(c, g.leaseId, step, loss)) as HeartbeatAck;
        expect(last).toMatchObject({ type: 'heartbeat.ack', leaseId: g.leaseId });
      }
      hub.flushRenewals();
    }
    const lease = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    expect(lease.expiresAt.toISOString()).toBe(last!.expiresAt);
    expect(lease).toMatchObject({ status: 'active', lastStep: 6 });
    const expert = db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!;
    expect(expert).toMatchObject({ status: 'training', step: 6, loss: 0.3, imagesPerSec: 16 });
    expect(expert.lastHeartbeatAt!.getTime()).toBeGreaterThan(first.lastHeartbeatAt!.getTime());
    const curve = db
      .select()
      .from(expertMetrics)
      .where(eq(expertMetrics.expertId, g.expert.id))
      .all()
      .map((m) => [m.step, m.loss]);
    expect(curve).toEqual([
      [1, 0.5],
      [2, 0.9],
      [3, 0.8],
      [6, 0.4],
    ]);
    const me = db.select().from(workers).where(eq(workers.id, welcome.workerId)).get()!;
    expect(me.lastSeenAt!.getTime()).toBeGreaterThan(atHello.lastSeenAt!.getTime());
    // Nothing pending: a second flush writes nothing.
    expect(hub.renewals.flush()).toBe(0);
    c.close();
  });

  it('a flush never writes onto a lease that ended meanwhile, and refusals keep their codes', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000, heartbeatFlushMs: 10_000 });
    const { db, hub } = h.server.coordinator;
    const run = await h.makeRun(1, 'fm', 50, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    await beat(c, g.leaseId, 1);
    const before = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    // Acknowledged, not yet written; then the run is cancelled (its leases revoked) over REST.
    expect(await beat(c, g.leaseId, 7)).toMatchObject({ type: 'heartbeat.ack' });
    expect((await h.api('POST', `/api/v1/runs/${run.id}/cancel`)).status).toBe(200);
    hub.flushRenewals();
    const lease = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    expect(lease).toMatchObject({ status: 'revoked', lastStep: before.lastStep });
    expect(lease.expiresAt.getTime()).toBe(before.expiresAt.getTime());
    const expert = db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!;
    expect(expert).toMatchObject({ status: 'pending', step: 0, workerId: null });
    // The point acknowledged while the lease was active stays on the curve.
    const steps = db
      .select()
      .from(expertMetrics)
      .where(eq(expertMetrics.expertId, g.expert.id))
      .all()
      .map((m) => m.step);
    expect(steps).toEqual([1, 7]);
    // The same refusals as before: an ended lease, a lease of another worker.
    expect(await beat(c, g.leaseId, 8)).toMatchObject({
      type: 'error',
      code: 'lease_expired',
      message: /revoked/,
    });
    const { c: other } = await h.connect('fm');
    expect(await beat(other, g.leaseId, 8)).toMatchObject({ type: 'error', code: 'unknown_lease' });
    c.close();
    other.close();
  });

  it('a due flush written in chunks that fails puts back what it took, and the next one writes exactly the acks', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000, heartbeatFlushMs: 10_000 });
    const { db, hub } = h.server.coordinator;
    await h.makeRun(3, 'fm', 50, 5);
    const held: { c: TestClient; g: LeaseGrant }[] = [];
    for (let i = 0; i < 3; i++) {
      const { c } = await h.connect('fm');
      const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
      await beat(c, g.leaseId, 1);
      held.push({ c, g });
    }
    const acked = new Map<string, number>();
    for (const { c, g } of held) {
      const ack = (await beat(c, g.leaseId, 6)) as HeartbeatAck;
      acked.set(g.leaseId, new Date(ack.expiresAt).getTime());
    }
    expect(hub.renewals.backlog).toBeGreaterThanOrEqual(3);
    // The last lease's row refuses updates: the chunk fails after writing the others.
    const last = held[2]!.g.leaseId;
    db.$client.exec(
      `create trigger refuse_renewal before update on leases when new.id = '${last}'
       begin select raise(abort, 'refused by the test'); end`,
    );
    const backlog = hub.renewals.backlog;
    expect(() => hub.renewals.flushIfDue(Date.now() + 20_000)).toThrow(/refused by the test/);
    // Rolled back: nothing written, everything still pending.
    expect(hub.renewals.backlog).toBe(backlog);
    for (const { g } of held) {
      const row = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
      expect(row.lastStep).toBe(1);
    }
    db.$client.exec('drop trigger refuse_renewal');
    // The next due flush writes each lease's acknowledged deadline and step, once.
    let written = 0;
    for (let i = 0; i < 10 && hub.renewals.backlog > 0; i++)
      written +=
        hub.renewals.flushIfDue(Date.now() + 40_000 * (i + 1), true) ||
        hub.renewals.flushIfDue(Date.now() + 40_000 * (i + 1));
    expect(written).toBe(backlog);
    expect(hub.renewals.backlog).toBe(0);
    for (const { g } of held) {
      const row = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
      expect(row.lastStep).toBe(6);
      expect(row.expiresAt.getTime()).toBe(acked.get(g.leaseId));
      const expert = db.select().from(experts).where(eq(experts.id, g.expert.id)).get()!;
      expect(expert.step).toBe(6);
    }
    for (const { c } of held) c.close();
  });

  it("writes an idle worker's sighting at most every SIGHTING_MS, its first at once", async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000, heartbeatFlushMs: 10_000 });
    const { db, hub } = h.server.coordinator;
    const { c, welcome } = await h.connect('fm');
    const seenAt = () =>
      db
        .select()
        .from(workers)
        .where(eq(workers.id, welcome.workerId))
        .get()!
        .lastSeenAt!.getTime();
    const atHello = seenAt();
    // Its first frame after hello: written at the next flush.
    await c.request({ type: 'lease.request' });
    hub.flushRenewals();
    const first = seenAt();
    expect(first).toBeGreaterThanOrEqual(atHello);
    // More lease requests within SIGHTING_MS: nothing to write, the stored sighting stays.
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 3; i++) await c.request({ type: 'lease.request' });
    expect(hub.renewals.backlog).toBe(0);
    hub.flushRenewals();
    expect(seenAt()).toBe(first);
    // A frame SIGHTING_MS after the written one is written again.
    hub.renewals.sawWorker(welcome.workerId, first + SIGHTING_MS);
    expect(hub.renewals.flush()).toBe(1);
    expect(seenAt()).toBe(first + SIGHTING_MS);
    c.close();
  });

  it('a lease row cached by the heartbeat path is read afresh once another process commits', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 60_000, heartbeatFlushMs: 10_000 });
    const { config } = h.server.coordinator;
    await h.makeRun(1, 'fm', 10_000, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    await beat(c, g.leaseId, 1);
    // Cached now: these are answered from memory.
    expect(await beat(c, g.leaseId, 2)).toMatchObject({ type: 'heartbeat.ack' });
    expect(await beat(c, g.leaseId, 3)).toMatchObject({ type: 'heartbeat.ack' });
    // Another process (a CLI, say) ends the lease in the same database file.
    const other = openDatabase({ file: path.join(config.dataDir, 'coordinator.sqlite') });
    try {
      other.update(leases).set({ status: 'revoked' }).where(eq(leases.id, g.leaseId)).run();
    } finally {
      other.$client.close();
    }
    // Within one revocation poll (250 ms) the hub sees the commit and the heartbeat is refused.
    let step = 4;
    let answer: Record<string, unknown> = {};
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      answer = (await beat(c, g.leaseId, step++)) as unknown as Record<string, unknown>;
      if (answer.type === 'error') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(answer).toMatchObject({ type: 'error', code: 'lease_expired', message: /revoked/ });
    c.close();
  });

  it('expiry is decided on the acknowledged renewals, however long the flush interval', async () => {
    // Lease TTL 3 s, flushes every 10 s: only the sweep's own flush keeps the stored deadline up.
    h = await startHarness({ heartbeatMs: 300, leaseTtlMs: 3000, heartbeatFlushMs: 10_000 });
    const { db } = h.server.coordinator;
    await h.makeRun(1, 'fm', 1000, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const grantedAt = Date.now();
    let step = 0;
    let last: HeartbeatAck | undefined;
    // Heartbeats for more than two TTLs: every one is acknowledged, the lease never ends.
    while (Date.now() - grantedAt < 7000) {
      const m = await beat(c, g.leaseId, ++step);
      expect(m, 'the lease stays alive while acks return').toMatchObject({ type: 'heartbeat.ack' });
      last = m as HeartbeatAck;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status).toBe('active');
    // Silence: the lease expires at the deadline its last ack promised, with its event row.
    expect(await c.next(15_000)).toMatchObject({ type: 'lease.revoke', leaseId: g.leaseId });
    const lease = db.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
    expect(lease.status).toBe('expired');
    expect(lease.expiresAt.toISOString()).toBe(last!.expiresAt);
    expect(lease.endedAt!.getTime()).toBeGreaterThanOrEqual(lease.expiresAt.getTime());
    const expired = db.select().from(events).where(eq(events.type, 'lease.expired')).all();
    expect(expired).toHaveLength(1);
    expect(expired[0]).toMatchObject({ expertId: g.expert.id, data: { leaseId: g.leaseId } });
    c.close();
  });

  it('a loop late at every sweep tick still expires a silent lease, and keeps a heartbeating one', async () => {
    // The sweep ticks every second (TTL / 4, at most 1 s) and calls a tick more than 2 s after the
    // previous one stalled. The loop is then blocked for 2.2 s out of every 2.6 s, so every tick
    // is stalled (a stall once meant skipping the tick: this lease would never have expired). The
    // clients share the loop: a heartbeat waits a block at most, well within the 6 s TTL.
    h = await startHarness({ heartbeatMs: 300, leaseTtlMs: 6000 });
    const { db } = h.server.coordinator;
    await h.makeRun(2, 'fm', 1000, 5);
    const { c: silent } = await h.connect('fm');
    const { c: alive } = await h.connect('fm');
    const gs = (await silent.request({ type: 'lease.request' })) as LeaseGrant;
    const ga = (await alive.request({ type: 'lease.request' })) as LeaseGrant;
    expect([gs.type, ga.type]).toEqual(['lease.grant', 'lease.grant']);
    const last = (await beat(silent, gs.leaseId, 1)) as HeartbeatAck;
    expect(last.type).toBe('heartbeat.ack');
    let done = false;
    // Rescheduled from the check phase: a timer set in a late timer's callback counts from the
    // loop's stale clock and would fire at once, blocking the loop back to back.
    const block = () => {
      if (done) return;
      const until = Date.now() + 2200;
      while (Date.now() < until);
      setImmediate(() => setTimeout(block, 400));
    };
    setTimeout(block, 0);
    const acks: string[] = [];
    const beating = (async () => {
      for (let step = 1; !done; step++) {
        acks.push((await beat(alive, ga.leaseId, step)).type);
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    try {
      // Silence on one lease: it expires at the deadline its ack promised, with its event row.
      expect(await silent.next(60_000)).toMatchObject({
        type: 'lease.revoke',
        leaseId: gs.leaseId,
      });
    } finally {
      done = true;
      await beating;
    }
    const expired = db.select().from(leases).where(eq(leases.id, gs.leaseId)).get()!;
    expect(expired.status).toBe('expired');
    expect(expired.expiresAt.toISOString()).toBe(last.expiresAt);
    expect(db.select().from(events).where(eq(events.type, 'lease.expired')).all()).toMatchObject([
      { data: { leaseId: gs.leaseId } },
    ]);
    // The heartbeating lease lived through the same stalls: the sweep runs after the loop has
    // read the sockets, never on deadlines its own stall made late.
    expect(acks.length).toBeGreaterThan(1);
    expect(new Set(acks)).toEqual(new Set(['heartbeat.ack']));
    expect(db.select().from(leases).where(eq(leases.id, ga.leaseId)).get()!.status).toBe('active');
    silent.close();
    alive.close();
  });
});

describe('a coordinator killed mid-heartbeat', () => {
  let dir: string;
  let proc: ChildProcess | undefined;
  afterEach(async () => {
    proc?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const FLUSH_MS = 200;
  async function serve(port: number, dataDir: string): Promise<string> {
    proc = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--data-dir', dataDir], {
      env: {
        ...process.env,
        ARCHIPELAGO_ADMIN_KEY: ADMIN_KEY,
        ARCHIPELAGO_LOG_LEVEL: 'warn',
        ARCHIPELAGO_HOST: '127.0.0.1',
        ARCHIPELAGO_HEARTBEAT_MS: '1000',
        ARCHIPELAGO_LEASE_TTL_MS: '2000',
        ARCHIPELAGO_HEARTBEAT_FLUSH_MS: String(FLUSH_MS),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const base = `http://127.0.0.1:${port}`;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`coordinator exited with ${proc.exitCode}`);
      const up = await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) return base;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async function killNow(): Promise<void> {
    const p = proc!;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    proc = undefined;
  }

  it('loses at most the last flush interval of heartbeats and never keeps a lease alive past its stored deadline', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-hb-crash-'));
    const dataDir = path.join(dir, 'data');
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const base = await serve(port, dataDir);
    const api = async (method: string, route: string, body?: unknown) => {
      const res = await fetch(`${base}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${ADMIN_KEY}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return (await res.json()) as Record<string, unknown>;
    };
    const token = (await api('POST', '/api/v1/tokens', { name: 'crash' })).token as string;
    const folder = await makeImageFolder(path.join(dir, 'imgs'), 2, 2);
    type Job = { id: string; status: string; result: { datasetId: string } };
    let job = (
      await api('POST', '/api/v1/datasets', {
        name: 'x',
        source: { kind: 'folder', path: folder },
        resolution: 8,
        cluster: { k: 1 },
      })
    ).job as Job;
    while (job.status !== 'succeeded') {
      expect(job.status).not.toBe('failed');
      await new Promise((r) => setTimeout(r, 50));
      job = (await api('GET', `/api/v1/jobs/${job.id}`)) as unknown as Job;
    }
    await api('POST', '/api/v1/runs', {
      datasetId: job.result.datasetId,
      experts: 1,
      objectives: 'fm',
      stepsPerExpert: 100,
      checkpointInterval: 10,
    });
    const c = await TestClient.connect(base);
    await c.request(hello(token, 'fm'));
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g.type).toBe('lease.grant');
    await beat(c, g.leaseId, 1);
    // Step 2 acknowledged; wait (on the database, from another connection) until it is written.
    const flushed = (await beat(c, g.leaseId, 2)) as HeartbeatAck;
    const reader = openDatabase({ file: path.join(dataDir, 'coordinator.sqlite'), migrate: false });
    try {
      while (reader.select().from(experts).where(eq(experts.id, g.expert.id)).get()!.step < 2)
        await new Promise((r) => setTimeout(r, 20));
      // Step 3 acknowledged, then the coordinator dies before (or just after) its next flush.
      const lost = (await beat(c, g.leaseId, 3)) as HeartbeatAck;
      expect(lost.type).toBe('heartbeat.ack');
      await killNow();
      const lease = reader.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
      const expert = reader.select().from(experts).where(eq(experts.id, g.expert.id)).get()!;
      // At most the last interval is lost; nothing stored goes past what the acks promised.
      expect([2, 3]).toContain(expert.step);
      expect([flushed.expiresAt, lost.expiresAt]).toContain(lease.expiresAt.toISOString());
      expect(lease.status).toBe('active');
      // Restarted without the worker: the lease ends at its stored deadline, with its event row.
      await serve(port, dataDir);
      while (
        reader.select().from(leases).where(eq(leases.id, g.leaseId)).get()!.status === 'active'
      )
        await new Promise((r) => setTimeout(r, 50));
      const ended = reader.select().from(leases).where(eq(leases.id, g.leaseId)).get()!;
      expect(ended.status).toBe('expired');
      expect(ended.expiresAt.getTime()).toBe(lease.expiresAt.getTime());
      expect(ended.endedAt!.getTime()).toBeGreaterThanOrEqual(ended.expiresAt.getTime());
      const expiredEvents = reader
        .select()
        .from(events)
        .where(eq(events.type, 'lease.expired'))
        .all();
      expect(expiredEvents).toHaveLength(1);
      expect(expiredEvents[0]).toMatchObject({ data: { leaseId: g.leaseId } });
      expect(reader.select().from(experts).where(eq(experts.id, g.expert.id)).get()).toMatchObject({
        status: 'pending',
        workerId: null,
      });
    } finally {
      reader.$client.close();
      c.ws.terminate();
    }
  });
});
