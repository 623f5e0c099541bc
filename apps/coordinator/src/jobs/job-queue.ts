import { hostname } from 'node:os';
import type { JobName, JobProgress } from '@archipelago/protocol';
import { and, asc, eq, gte, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { type JobRow, jobs } from '../db/schema/index.js';
import { PermanentJobError } from '../errors.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { insertJob, type JobRowOptions } from '../lifecycle/pipeline.js';
import type { RedisOptions } from '../redis.js';
import { BullmqDriver } from './bullmq-driver.js';

export { PermanentJobError };

export interface JobContext {
  jobId: string;
  /** 1 for the first try. */
  attempt: number;
  log: Logger;
  /** Report progress; written to the job row at most a few times a second. */
  progress(stage: string, done: number, total: number): void;
}

/** A processor is a plain async function of its payload; what it returns is the job's result. */
export type JobHandler = (
  ctx: JobContext,
  payload: Record<string, unknown>,
) => Promise<Record<string, unknown>>;

export interface JobQueueOptions {
  db: Db;
  log: Logger;
  handlers: Partial<Record<JobName, JobHandler>>;
  concurrency?: number;
  /** Delay before retry n is 2^(n-1) times this (default 1 s). */
  retryDelayMs?: number;
  /** Errors of these classes fail the job without retrying. */
  isPermanent?: (err: unknown) => boolean;
  /** Called once a job has failed for good (after its last attempt). */
  onFailed?: (job: JobRow) => void;
  /** Dispatch through BullMQ on this Redis; without it jobs run in this process. */
  redis?: RedisOptions;
  /**
   * Whether this process takes jobs from the queue (default true). A coordinator with Redis can
   * leave all work to `coordinator jobs` processes.
   */
  process?: boolean;
  /** A running job whose heartbeat is older than this is re-queued (default 30 s; Redis mode). */
  staleAfterMs?: number;
}

const HEARTBEAT_MS = 5_000;
const SWEEP_MS = 5_000;

/**
 * Coordinator-side jobs. SQLite is the source of truth: a row is inserted `queued`, claimed
 * `running` by exactly one process (a conditional update), and finished `succeeded` or `failed`;
 * the queue only says who should look at which row. Two drivers:
 *
 * - in-process (the embedded default): an in-memory list of ids, run by this process;
 * - BullMQ (with `redis`): ids are added to a Redis queue and taken by any process with a
 *   BullMQ worker: the coordinator itself and `coordinator jobs` processes on the same database.
 *
 * Whatever a crash leaves behind is found in the database: {@link recover} re-queues rows left
 * `running` (at once in-process; in Redis mode once their heartbeat is stale, since another
 * process may still be working on them) and dispatches every `queued` row.
 *
 * An attempt is counted when its row is claimed, in the same statement, and no row is claimed at
 * its attempt limit: a job whose process died during its last attempt (a checkpoint that crashes
 * whoever validates it) is failed, never run again, whichever path finds it.
 */
export class JobQueue {
  private readonly pending: string[] = [];
  private readonly active = new Map<string, Promise<void>>();
  private readonly waiters = new Map<string, ((job: JobRow) => void)[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly concurrency: number;
  private readonly bull: BullmqDriver | null;
  private readonly owner = `${hostname()}:${process.pid}`;
  private sweepTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly options: JobQueueOptions) {
    this.concurrency = options.concurrency ?? 1;
    this.bull = options.redis
      ? new BullmqDriver(options.redis, options.log, {
          process: options.process !== false,
          concurrency: this.concurrency,
          run: (id) => this.execute(id),
        })
      : null;
  }

  /** 'bullmq' when jobs go through Redis, else 'in-process'. */
  get mode(): 'bullmq' | 'in-process' {
    return this.bull ? 'bullmq' : 'in-process';
  }

  /** Insert a job row and dispatch it. */
  enqueue(name: JobName, payload: Record<string, unknown>, opts: JobRowOptions = {}): JobRow {
    if (!this.bull && !this.options.handlers[name])
      throw new Error(`no processor registered for job ${name}`);
    const row = insertJob(this.options.db, name, payload, opts);
    this.dispatch(row.id);
    return row;
  }

  /** Hand a queued row to whichever process runs jobs (idempotent). */
  dispatch(id: string): void {
    if (this.stopped) return;
    if (this.bull) {
      const row = this.get(id);
      if (row?.status !== 'queued') return;
      const delay = row.runAfter ? Math.max(0, row.runAfter.getTime() - Date.now()) : 0;
      this.bull.add(row.name, id, row.attempts, delay);
      return;
    }
    this.schedule(id);
  }

  /** Dispatch every queued row that is due; returns how many. */
  dispatchQueued(): number {
    const now = new Date();
    const due = this.options.db
      .select({ id: jobs.id })
      .from(jobs)
      .where(and(eq(jobs.status, 'queued'), or(isNull(jobs.runAfter), lte(jobs.runAfter, now))))
      .orderBy(asc(jobs.createdAt))
      .all();
    for (const { id } of due) this.dispatch(id);
    return due.length;
  }

  /**
   * Re-queue what a crash left running, dispatch everything queued, and keep sweeping (retries
   * that come due, stale jobs of processes that died). Returns how many jobs were dispatched.
   */
  recover(): number {
    this.requeueStale(this.bull ? (this.options.staleAfterMs ?? 30_000) : 0);
    const n = this.dispatchQueued();
    if (!this.sweepTimer && !this.stopped) {
      this.sweepTimer = setInterval(() => {
        if (this.bull) this.requeueStale(this.options.staleAfterMs ?? 30_000);
        this.dispatchQueued();
      }, SWEEP_MS);
      this.sweepTimer.unref();
    }
    return n;
  }

  /** Start taking jobs from Redis (no-op in-process, where dispatch runs them). */
  async start(): Promise<void> {
    await this.bull?.start();
  }

  /**
   * Process one queued job in this process (the CLI uses it for the job it just queued), leaving
   * every other job to whichever process runs the queue.
   */
  processJob(id: string): Promise<JobRow> {
    if (this.bull) {
      void this.execute(id);
      return this.waitFor(id);
    }
    this.schedule(id);
    return this.waitFor(id);
  }

  get(id: string): JobRow | undefined {
    return this.options.db.select().from(jobs).where(eq(jobs.id, id)).get();
  }

  /** Resolve when the job has succeeded or failed for good (polls rows other processes write). */
  waitFor(id: string): Promise<JobRow> {
    const row = this.get(id);
    if (!row) return Promise.reject(new Error(`no job ${id}`));
    if (row.status === 'succeeded' || row.status === 'failed') return Promise.resolve(row);
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      list.push(resolve);
      this.waiters.set(id, list);
      if (this.bull) {
        const poll = setInterval(() => {
          const now = this.get(id);
          if (now && (now.status === 'succeeded' || now.status === 'failed')) {
            clearInterval(poll);
            this.timers.delete(poll);
            this.settle(id);
          }
        }, 250);
        this.timers.add(poll);
      }
    });
  }

  /** Stop taking jobs and wait for running ones; unfinished work stays queued in the database. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.bull?.stop();
    await Promise.allSettled(this.active.values());
  }

  private requeueStale(staleMs: number): void {
    const { db, log } = this.options;
    const cutoff = new Date(Date.now() - staleMs);
    const abandoned = and(
      eq(jobs.status, 'running'),
      or(isNull(jobs.heartbeatAt), lt(jobs.heartbeatAt, cutoff)),
    );
    const spent = db
      .select()
      .from(jobs)
      .where(and(abandoned, gte(jobs.attempts, jobs.maxAttempts)))
      .all();
    for (const row of spent)
      this.failForGood(
        row,
        `its process stopped during its last attempt (${row.attempts} of ${row.maxAttempts}); not run again`,
      );
    const stale = db
      .update(jobs)
      .set({ status: 'queued', claimedBy: null, runAfter: null })
      .where(and(abandoned, lt(jobs.attempts, jobs.maxAttempts)))
      .returning({ id: jobs.id, name: jobs.name, claimedBy: jobs.claimedBy })
      .all();
    for (const j of stale)
      log.warn({ job: j.id, jobName: j.name }, 're-queued a job whose process stopped');
  }

  /** Fail a job for good without running it (again); one transaction with its event. */
  private failForGood(row: JobRow, message: string): void {
    const { db, log } = this.options;
    const failed = db.transaction((tx) => {
      const updated = tx
        .update(jobs)
        .set({ status: 'failed', error: message, finishedAt: new Date(), claimedBy: null })
        .where(and(eq(jobs.id, row.id), inArray(jobs.status, ['queued', 'running'])))
        .returning()
        .get();
      if (!updated) return undefined;
      recordEvent(tx, EVENTS.jobFailed, {
        runId: row.runId,
        datasetId: row.datasetId,
        data: { jobId: row.id, name: row.name, error: message, attempts: row.attempts },
      });
      return updated;
    });
    if (!failed) return;
    log.error({ job: row.id, jobName: row.name, attempts: row.attempts }, `job failed: ${message}`);
    this.options.onFailed?.(failed);
    this.settle(row.id);
  }

  /** Dispatch `id` again after `ms`. */
  private later(id: string, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.dispatch(id);
    }, ms);
    this.timers.add(t);
  }

  private schedule(id: string): void {
    if (this.stopped || this.pending.includes(id) || this.active.has(id)) return;
    this.pending.push(id);
    setImmediate(() => this.pump());
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.concurrency && this.pending.length > 0) {
      const id = this.pending.shift()!;
      this.track(id, this.execute(id));
    }
  }

  private track(id: string, run: Promise<void>): void {
    const done = run.finally(() => {
      this.active.delete(id);
      this.pump();
    });
    this.active.set(id, done);
  }

  private settle(id: string): void {
    const row = this.get(id);
    if (row && (row.status === 'succeeded' || row.status === 'failed')) {
      for (const resolve of this.waiters.get(id) ?? []) resolve(row);
      this.waiters.delete(id);
    }
  }

  /** Claim the row and run its handler; a row another process claimed is left alone. */
  private async execute(id: string): Promise<void> {
    const { db, log } = this.options;
    const now = new Date();
    // Claim and count the attempt in one statement: a crash can never run an uncounted attempt.
    const claimed = db
      .update(jobs)
      .set({
        status: 'running',
        startedAt: now,
        heartbeatAt: now,
        claimedBy: this.owner,
        attempts: sql`${jobs.attempts} + 1`,
      })
      .where(
        and(
          eq(jobs.id, id),
          inArray(jobs.status, ['queued']),
          or(isNull(jobs.runAfter), lte(jobs.runAfter, now)),
          lt(jobs.attempts, jobs.maxAttempts),
        ),
      )
      .returning()
      .get();
    if (!claimed) {
      const row = this.get(id);
      if (row?.status === 'queued' && row.attempts >= row.maxAttempts) {
        this.failForGood(
          row,
          `${row.error ? `${row.error}; ` : ''}no attempt left (${row.attempts} of ${row.maxAttempts})`,
        );
        return;
      }
      // A retry timer can fire a moment before the wall clock reaches the row's runAfter (timers
      // run on a monotonic clock): wait out the rest instead of dropping the job.
      if (row?.status === 'queued' && row.runAfter && row.runAfter > now) {
        this.later(id, row.runAfter.getTime() - now.getTime());
      }
      return;
    }
    const handler = this.options.handlers[claimed.name];
    const attempt = claimed.attempts;
    const jobLog = log.child({ job: id, jobName: claimed.name, attempt });
    let lastWrite = 0;
    let latest: JobProgress | null = null;
    const flushProgress = () => {
      if (latest) db.update(jobs).set({ progress: latest }).where(eq(jobs.id, id)).run();
    };
    const heartbeat = setInterval(() => {
      db.update(jobs)
        .set({ heartbeatAt: new Date() })
        .where(and(eq(jobs.id, id), eq(jobs.status, 'running')))
        .run();
    }, HEARTBEAT_MS);
    heartbeat.unref();
    const ctx: JobContext = {
      jobId: id,
      attempt,
      log: jobLog,
      progress(stage, done, total) {
        latest = { stage, done, total };
        const t = Date.now();
        if (t - lastWrite > 250 || done >= total) {
          lastWrite = t;
          flushProgress();
        }
      },
    };
    jobLog.info('job started');
    try {
      if (!handler) throw new PermanentJobError(`no processor registered for job ${claimed.name}`);
      const result = await handler(ctx, claimed.payload);
      flushProgress();
      db.update(jobs)
        .set({ status: 'succeeded', result, error: null, finishedAt: new Date() })
        .where(eq(jobs.id, id))
        .run();
      jobLog.info('job succeeded');
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const permanent =
        err instanceof PermanentJobError || (this.options.isPermanent?.(err) ?? false);
      if (!permanent && attempt < claimed.maxAttempts && !this.stopped) {
        jobLog.warn({ err }, 'job failed; will retry');
        const delay = (this.options.retryDelayMs ?? 1000) * 2 ** (attempt - 1);
        db.update(jobs)
          .set({
            status: 'queued',
            error: message,
            claimedBy: null,
            runAfter: new Date(Date.now() + delay),
          })
          .where(eq(jobs.id, id))
          .run();
        this.later(id, delay);
        return;
      }
      jobLog.error({ err }, 'job failed');
      db.transaction((tx) => {
        tx.update(jobs)
          .set({ status: 'failed', error: message, finishedAt: new Date() })
          .where(eq(jobs.id, id))
          .run();
        recordEvent(tx, EVENTS.jobFailed, {
          runId: claimed.runId,
          datasetId: claimed.datasetId,
          data: { jobId: id, name: claimed.name, error: message, attempts: attempt },
        });
      });
      this.options.onFailed?.(this.get(id)!);
    } finally {
      clearInterval(heartbeat);
      this.settle(id);
      // A finished job may have queued follow-ups (lifecycle/pipeline.ts).
      if (!this.stopped) this.dispatchQueued();
    }
  }
}
