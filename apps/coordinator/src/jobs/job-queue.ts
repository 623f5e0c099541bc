import type { JobName, JobProgress } from '@archipelago/protocol';
import { and, eq, inArray } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { events, type JobRow, jobs } from '../db/schema/index.js';
import { newId } from '../ids.js';

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

/** An error that retrying cannot fix (bad input): the job fails at once. */
export class PermanentJobError extends Error {
  constructor(
    message: string,
    readonly code = 'job_failed',
  ) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

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
}

export interface EnqueueOptions {
  runId?: string;
  datasetId?: string;
  maxAttempts?: number;
}

/**
 * The in-process job queue: the embedded default when no Redis is configured. SQLite is the
 * source of truth; the in-memory list only orders the work. {@link recover} re-queues whatever a
 * crash left `running` and schedules everything `queued`.
 */
export class JobQueue {
  private readonly pending: string[] = [];
  private readonly active = new Map<string, Promise<void>>();
  private readonly waiters = new Map<string, ((job: JobRow) => void)[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly concurrency: number;
  private stopped = false;

  constructor(private readonly options: JobQueueOptions) {
    this.concurrency = options.concurrency ?? 1;
  }

  /** Insert a job row and schedule it. */
  enqueue(name: JobName, payload: Record<string, unknown>, opts: EnqueueOptions = {}): JobRow {
    if (!this.options.handlers[name]) throw new Error(`no processor registered for job ${name}`);
    const row = this.options.db
      .insert(jobs)
      .values({
        id: newId('job'),
        name,
        status: 'queued',
        payload,
        runId: opts.runId ?? null,
        datasetId: opts.datasetId ?? null,
        maxAttempts: opts.maxAttempts ?? 3,
      })
      .returning()
      .get();
    this.schedule(row.id);
    return row;
  }

  /** Re-queue jobs a crash left running and schedule every queued job; returns how many. */
  recover(): number {
    const { db } = this.options;
    db.update(jobs).set({ status: 'queued' }).where(eq(jobs.status, 'running')).run();
    const queued = db
      .select({ id: jobs.id })
      .from(jobs)
      .where(eq(jobs.status, 'queued'))
      .orderBy(jobs.createdAt)
      .all();
    for (const { id } of queued) this.schedule(id);
    return queued.length;
  }

  /**
   * Process one queued job in this process (the CLI uses it for the job it just queued), leaving
   * every other job to whichever process runs the queue.
   */
  processJob(id: string): Promise<JobRow> {
    this.schedule(id);
    return this.waitFor(id);
  }

  get(id: string): JobRow | undefined {
    return this.options.db.select().from(jobs).where(eq(jobs.id, id)).get();
  }

  /** Resolve when the job has succeeded or failed for good. */
  waitFor(id: string): Promise<JobRow> {
    const row = this.get(id);
    if (!row) return Promise.reject(new Error(`no job ${id}`));
    if (row.status === 'succeeded' || row.status === 'failed') return Promise.resolve(row);
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      list.push(resolve);
      this.waiters.set(id, list);
    });
  }

  /** Stop taking jobs and wait for running ones; unfinished work stays queued in the database. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled(this.active.values());
  }

  private schedule(id: string): void {
    if (this.stopped || this.pending.includes(id) || this.active.has(id)) return;
    this.pending.push(id);
    setImmediate(() => this.pump());
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.concurrency && this.pending.length > 0) {
      const id = this.pending.shift()!;
      const run = this.execute(id).finally(() => {
        this.active.delete(id);
        this.pump();
      });
      this.active.set(id, run);
    }
  }

  private async execute(id: string): Promise<void> {
    const { db, log } = this.options;
    const claimed = db
      .update(jobs)
      .set({ status: 'running', startedAt: new Date() })
      .where(and(eq(jobs.id, id), inArray(jobs.status, ['queued'])))
      .returning()
      .get();
    if (!claimed) return;
    const attempt = claimed.attempts + 1;
    db.update(jobs).set({ attempts: attempt }).where(eq(jobs.id, id)).run();
    const handler = this.options.handlers[claimed.name]!;
    const jobLog = log.child({ job: id, jobName: claimed.name, attempt });
    let lastWrite = 0;
    let latest: JobProgress | null = null;
    const flushProgress = () => {
      if (latest) db.update(jobs).set({ progress: latest }).where(eq(jobs.id, id)).run();
    };
    const ctx: JobContext = {
      jobId: id,
      attempt,
      log: jobLog,
      progress(stage, done, total) {
        latest = { stage, done, total };
        const now = Date.now();
        if (now - lastWrite > 250 || done >= total) {
          lastWrite = now;
          flushProgress();
        }
      },
    };
    jobLog.info('job started');
    try {
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
        db.update(jobs).set({ status: 'queued', error: message }).where(eq(jobs.id, id)).run();
        const delay = (this.options.retryDelayMs ?? 1000) * 2 ** (attempt - 1);
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.schedule(id);
        }, delay);
        this.timers.add(t);
        return;
      }
      jobLog.error({ err }, 'job failed');
      db.transaction((tx) => {
        tx.update(jobs)
          .set({ status: 'failed', error: message, finishedAt: new Date() })
          .where(eq(jobs.id, id))
          .run();
        tx.insert(events)
          .values({
            type: 'job.failed',
            runId: claimed.runId,
            datasetId: claimed.datasetId,
            data: { jobId: id, name: claimed.name, error: message, attempts: attempt },
          })
          .run();
      });
      this.options.onFailed?.(this.get(id)!);
    } finally {
      const row = this.get(id);
      if (row && (row.status === 'succeeded' || row.status === 'failed')) {
        for (const resolve of this.waiters.get(id) ?? []) resolve(row);
        this.waiters.delete(id);
      }
    }
  }
}
