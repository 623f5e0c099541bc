import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase } from '../../src/db/database.js';
import { events, jobs } from '../../src/db/schema/index.js';
import { type JobHandler, JobQueue, PermanentJobError } from '../../src/jobs/job-queue.js';

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
