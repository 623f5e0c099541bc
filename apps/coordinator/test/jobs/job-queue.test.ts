import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase } from '../../src/db/database.js';
import { events, jobs } from '../../src/db/schema/index.js';
import { type JobHandler, JobQueue, PermanentJobError } from '../../src/jobs/job-queue.js';
import type { JobPhases } from '../../src/jobs/phases.js';

describe('JobQueue (in-process)', () => {
  let dir: string;
  let db: Db;
  const log = pino({ level: 'silent' });
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-jobs-'));
    db = openDatabase({ file: path.join(dir, 'db.sqlite') });
  });
  afterEach(async () => {
    db.$client.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a job, records progress and result', async () => {
    const handler: JobHandler = async (ctx, payload) => {
      ctx.progress('counting', 3, 3);
      return { doubled: (payload.n as number) * 2 };
    };
    const q = new JobQueue({ db, log, handlers: { 'import-dataset': handler } });
    const row = q.enqueue('import-dataset', { n: 21 }, { datasetId: 'ds_x' });
    const done = await q.waitFor(row.id);
    expect(done).toMatchObject({
      status: 'succeeded',
      result: { doubled: 42 },
      attempts: 1,
      progress: { stage: 'counting', done: 3, total: 3 },
    });
    await q.stop();
  });

  it('retries a transient failure, then succeeds', async () => {
    let calls = 0;
    const handler: JobHandler = async () => {
      calls++;
      if (calls < 3) throw new Error(`flaky ${calls}`);
      return { ok: true };
    };
    const q = new JobQueue({ db, log, handlers: { 'import-dataset': handler }, retryDelayMs: 5 });
    const row = q.enqueue('import-dataset', {});
    expect(await q.waitFor(row.id)).toMatchObject({ status: 'succeeded', attempts: 3 });
    await q.stop();
  });

  it('fails for good after maxAttempts or at once on a permanent error, logging an event', async () => {
    const failed: string[] = [];
    const q = new JobQueue({
      db,
      log,
      retryDelayMs: 5,
      handlers: {
        'import-dataset': async () => {
          throw new Error('disk on fire');
        },
        'cluster-dataset': async () => {
          throw new PermanentJobError('bad input');
        },
      },
      onFailed: (job) => failed.push(job.id),
    });
    const a = q.enqueue('import-dataset', {}, { maxAttempts: 2, runId: 'run_a' });
    const b = q.enqueue('cluster-dataset', {});
    expect(await q.waitFor(a.id)).toMatchObject({
      status: 'failed',
      attempts: 2,
      error: 'disk on fire',
    });
    expect(await q.waitFor(b.id)).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: 'bad input',
    });
    expect(failed.sort()).toEqual([a.id, b.id].sort());
    const ev = db.select().from(events).where(eq(events.type, 'job.failed')).all();
    expect(ev.map((e) => e.runId)).toContain('run_a');
    await q.stop();
  });

  it('after a crash, recover() runs jobs left queued or running', async () => {
    const seen: string[] = [];
    const handler: JobHandler = async (ctx) => {
      seen.push(ctx.jobId);
      return {};
    };
    // A "crashed" coordinator: rows written, nothing processed.
    const dead = new JobQueue({ db, log, handlers: { 'import-dataset': handler } });
    await dead.stop();
    const queued = dead.enqueue('import-dataset', {});
    const running = dead.enqueue('import-dataset', {});
    db.update(jobs).set({ status: 'running', attempts: 1 }).where(eq(jobs.id, running.id)).run();

    const q = new JobQueue({ db, log, handlers: { 'import-dataset': handler } });
    expect(q.recover()).toBe(2);
    expect((await q.waitFor(queued.id)).status).toBe('succeeded');
    expect(await q.waitFor(running.id)).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(seen.sort()).toEqual([queued.id, running.id].sort());
    await q.stop();
  });

  it('a job whose process died during its last attempt is failed at recovery, never run again', async () => {
    const ran: string[] = [];
    const failed: string[] = [];
    const handler: JobHandler = async (ctx) => {
      ran.push(ctx.jobId);
      return {};
    };
    // What a crash during attempt 3 of 3 leaves (a checkpoint that crashes its validator, say),
    // and a row re-queued by hand at its limit.
    const dead = new JobQueue({ db, log, handlers: { 'validate-checkpoint': handler } });
    await dead.stop();
    const crashed = dead.enqueue('validate-checkpoint', {}, { runId: 'run_crash' });
    const requeued = dead.enqueue('validate-checkpoint', {});
    const midway = dead.enqueue('validate-checkpoint', {});
    db.update(jobs).set({ status: 'running', attempts: 3 }).where(eq(jobs.id, crashed.id)).run();
    db.update(jobs).set({ attempts: 3, error: 'crashed' }).where(eq(jobs.id, requeued.id)).run();
    db.update(jobs).set({ status: 'running', attempts: 2 }).where(eq(jobs.id, midway.id)).run();

    const q = new JobQueue({
      db,
      log,
      handlers: { 'validate-checkpoint': handler },
      onFailed: (job) => failed.push(job.id),
    });
    q.recover();
    expect(await q.waitFor(crashed.id)).toMatchObject({
      status: 'failed',
      attempts: 3,
      error: expect.stringMatching(/stopped during its last attempt \(3 of 3\)/),
    });
    expect(await q.waitFor(requeued.id)).toMatchObject({
      status: 'failed',
      attempts: 3,
      error: expect.stringMatching(/no attempt left/),
    });
    // One attempt left: it runs, once.
    expect(await q.waitFor(midway.id)).toMatchObject({ status: 'succeeded', attempts: 3 });
    expect(ran).toEqual([midway.id]);
    expect(failed.sort()).toEqual([crashed.id, requeued.id].sort());
    const failures = db
      .select()
      .from(events)
      .all()
      .filter((e) => e.type === 'job.failed')
      .map((e) => (e.data as { jobId: string }).jobId);
    expect(failures.sort()).toEqual([crashed.id, requeued.id].sort());
    await q.stop();
  });

  it('processJob runs just the named job, leaving the others queued', async () => {
    const q = new JobQueue({ db, log, handlers: { 'import-dataset': async () => ({}) } });
    await q.stop();
    const a = q.enqueue('import-dataset', {});
    const b = q.enqueue('import-dataset', {});
    const cli = new JobQueue({ db, log, handlers: { 'import-dataset': async () => ({}) } });
    expect((await cli.processJob(b.id)).status).toBe('succeeded');
    expect(cli.get(a.id)!.status).toBe('queued');
    await cli.stop();
  });
});

describe('JobQueue through BullMQ (real Redis)', () => {
  let dir: string;
  let db: Db;
  const log = pino({ level: 'silent' });
  const redis = { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix: '' };
  const queues: JobQueue[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-bull-'));
    db = openDatabase({ file: path.join(dir, 'db.sqlite') });
    // A key prefix of its own: other tests and deployments on this Redis are not disturbed.
    redis.prefix = `test-${path.basename(dir)}`;
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop();
    db.$client.close();
    await rm(dir, { recursive: true, force: true });
  });
  const queue = (
    name: string,
    processJobs: boolean,
    handler: JobHandler,
    staleAfterMs = 30_000,
  ) => {
    const q = new JobQueue({
      db,
      log: log.child({ q: name }),
      redis,
      process: processJobs,
      staleAfterMs,
      retryDelayMs: 5,
      handlers: { 'import-dataset': handler },
    });
    queues.push(q);
    return q;
  };

  it('a job enqueued by one process runs in another that takes jobs from Redis', async () => {
    const ran: string[] = [];
    const web = queue('web', false, async () => {
      ran.push('web');
      return {};
    });
    const worker = queue('worker', true, async (ctx, payload) => {
      ran.push('worker');
      ctx.progress('x', 1, 1);
      return { n: payload.n };
    });
    await web.start();
    await worker.start();
    expect(web.mode).toBe('bullmq');
    const row = web.enqueue('import-dataset', { n: 7 });
    expect(await web.waitFor(row.id)).toMatchObject({
      status: 'succeeded',
      result: { n: 7 },
      attempts: 1,
    });
    expect(ran).toEqual(['worker']);
  });

  it('three phases: prepared here, computed by the processor, applied here with the job in one transaction', async () => {
    const computedBy: string[] = [];
    const phases = (who: string): JobPhases => ({
      prepare: (_ctx, payload) =>
        payload.done ? { result: { skipped: true } } : { input: { n: payload.n, prepared: who } },
      compute: async (_ctx, input) => {
        computedBy.push(who);
        return { doubled: (input.n as number) * 2, preparedBy: input.prepared };
      },
      apply: (ctx, output) => {
        ctx.commit((tx) => {
          tx.insert(events)
            .values({ type: 'job.applied', data: { jobId: ctx.jobId } })
            .run();
          return { ...output, applied: true };
        });
      },
    });
    const web = new JobQueue({
      db,
      log,
      redis,
      process: false,
      handlers: { 'import-dataset': phases('web') },
    });
    const worker = new JobQueue({
      db,
      log,
      redis,
      handlers: { 'import-dataset': phases('worker') },
    });
    queues.push(web, worker);
    await web.start();
    await worker.start();
    const row = web.enqueue('import-dataset', { n: 7 });
    expect(await web.waitFor(row.id)).toMatchObject({
      status: 'succeeded',
      attempts: 1,
      result: { doubled: 14, preparedBy: 'web', applied: true },
    });
    expect(computedBy).toEqual(['worker']);
    const applied = db.select().from(events).where(eq(events.type, 'job.applied')).all();
    expect(applied.map((e) => (e.data as { jobId: string }).jobId)).toEqual([row.id]);
    // Nothing to compute: done in prepare, no processor involved.
    const skip = web.enqueue('import-dataset', { done: true });
    expect(await web.waitFor(skip.id)).toMatchObject({
      status: 'succeeded',
      result: { skipped: true },
    });
    expect(computedBy).toEqual(['worker']);
  });

  it('retries through Redis and fails for good after the last attempt', async () => {
    let calls = 0;
    const worker = queue('worker', true, async () => {
      calls++;
      throw new Error(`broken ${calls}`);
    });
    await worker.start();
    const row = worker.enqueue('import-dataset', {}, { maxAttempts: 2 });
    expect(await worker.waitFor(row.id)).toMatchObject({
      status: 'failed',
      attempts: 2,
      error: 'broken 2',
    });
  });

  it('re-queues a job whose process died (stale heartbeat) and runs it again', async () => {
    const worker = queue('worker', true, async () => ({ ok: true }), 200);
    // A row a dead process claimed: running, heartbeat long ago.
    const dead = new Date(Date.now() - 60_000);
    db.insert(jobs)
      .values({
        id: 'job_deadbeef01',
        name: 'import-dataset',
        status: 'running',
        payload: {},
        attempts: 1,
        startedAt: dead,
        heartbeatAt: dead,
        claimedBy: 'gone:1',
      })
      .run();
    // A row another live process is running: fresh heartbeat, left alone.
    db.insert(jobs)
      .values({
        id: 'job_alive00001',
        name: 'import-dataset',
        status: 'running',
        payload: {},
        attempts: 1,
        startedAt: new Date(),
        heartbeatAt: new Date(Date.now() + 60_000),
        claimedBy: 'alive:1',
      })
      .run();
    await worker.start();
    worker.recover();
    expect(await worker.waitFor('job_deadbeef01')).toMatchObject({
      status: 'succeeded',
      attempts: 2,
    });
    expect(db.select().from(jobs).where(eq(jobs.id, 'job_alive00001')).get()).toMatchObject({
      status: 'running',
      claimedBy: 'alive:1',
    });
  });

  it('fails, without running it, a job whose process died during its last attempt', async () => {
    let calls = 0;
    const worker = queue(
      'worker',
      true,
      async () => {
        calls++;
        return {};
      },
      200,
    );
    const dead = new Date(Date.now() - 60_000);
    db.insert(jobs)
      .values({
        id: 'job_lastgasp01',
        name: 'import-dataset',
        status: 'running',
        payload: {},
        attempts: 3,
        maxAttempts: 3,
        startedAt: dead,
        heartbeatAt: dead,
        claimedBy: 'gone:1',
      })
      .run();
    await worker.start();
    worker.recover();
    expect(await worker.waitFor('job_lastgasp01')).toMatchObject({
      status: 'failed',
      attempts: 3,
      error: expect.stringMatching(/last attempt/),
    });
    // Dispatching it again (a stale BullMQ job, another process) runs nothing either.
    worker.dispatch('job_lastgasp01');
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).toBe(0);
  });
});
