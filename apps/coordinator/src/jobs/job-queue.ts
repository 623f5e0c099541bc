import { hostname } from 'node:os';
import type { JobName, JobProgress } from '@archipelago/protocol';
import { and, asc, eq, gte, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db, Tx } from '../db/database.js';
import { type JobRow, jobs } from '../db/schema/index.js';
import { PermanentJobError } from '../errors.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { insertJob, type JobRowOptions } from '../lifecycle/pipeline.js';
import type { RedisOptions } from '../redis.js';
import { BullmqDriver } from './bullmq-driver.js';
import { JobProcessor } from './job-processor.js';
import {
  type ApplyContext,
  type JobCompute,
  type JobContext,
  type JobHandler,
  type JobPhases,
  type JobProgressMessage,
  type JobResultMessage,
  phasesOf,
  StaleJobResult,
} from './phases.js';

export type { JobContext, JobHandler };
export { PermanentJobError };

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
   * With Redis: whether this process also computes jobs, as one more processor on the queue
   * (default true). A coordinator can leave all compute to `coordinator jobs` processes.
   */
  process?: boolean;
  /**
   * With Redis: a running job with no sign of life (its processor's lock, a progress report, its
   * result waiting) for this long is re-queued (default 30 s); also the processor's lock duration.
   */
  staleAfterMs?: number;
}

const HEARTBEAT_MS = 5_000;
const SWEEP_MS = 5_000;

/**
 * Coordinator-side jobs. SQLite is the source of truth and only this side opens it: a row is
 * inserted `queued`, claimed `running` by exactly one process (a conditional update that counts
 * the attempt), and finished `succeeded` or `failed`. Each job runs in three phases (phases.ts):
 * `prepare` (here, database to a JSON input), `compute` (object store only, anywhere) and `apply`
 * (here, the output written in one transaction with the job's success, only if that attempt is
 * still the current one). Two drivers:
 *
 * - in-process (the embedded default): an in-memory list of ids; all three phases run here;
 * - BullMQ (with `redis`): the claimed attempt's input goes on a Redis queue; any job processor
 *   (job-processor.ts: `coordinator jobs` processes anywhere, and this process unless `process` is
 *   false) computes it and posts the outcome on a results queue that coordinators consume.
 *
 * Whatever a crash leaves behind is found in the database: {@link recover} re-queues rows left
 * `running` (at once in-process; in Redis mode once they show no sign of life for `staleAfterMs`:
 * no processor's lock, progress report or waiting result) and dispatches every `queued` row.
 *
 * An attempt is counted when its row is claimed, in the same statement, and no row is claimed at
 * its attempt limit: a job whose process died during its last attempt (a checkpoint that crashes
 * whoever validates it) is failed, never run again, whichever path finds it. A result is applied
 * at most once, and only for the attempt the row is at: a late or duplicate one is ignored.
 */
export class JobQueue {
  private readonly pending: { id: string; local: boolean }[] = [];
  private readonly active = new Map<string, Promise<void>>();
  private readonly waiters = new Map<string, ((job: JobRow) => void)[]>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly concurrency: number;
  private readonly bull: BullmqDriver | null = null;
  private readonly processor: JobProcessor | null = null;
  /** Jobs this process holds itself (preparing or computing): their heartbeat is its own. */
  private readonly holding = new Set<string>();
  private readonly owner = `${hostname()}:${process.pid}`;
  private readonly staleAfterMs: number;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private stopped = false;

  constructor(private readonly options: JobQueueOptions) {
    this.concurrency = options.concurrency ?? 1;
    this.staleAfterMs = options.staleAfterMs ?? 30_000;
    if (options.redis) {
      this.bull = new BullmqDriver(options.redis, options.log, {
        applyResult: (msg) => this.applyResult(msg),
        progress: (msg) => this.onProgress(msg),
      });
      if (options.process !== false) {
        const computes: Partial<Record<JobName, JobCompute>> = {};
        for (const [name, handler] of Object.entries(options.handlers))
          computes[name as JobName] = phasesOf(handler)!.compute;
        this.processor = new JobProcessor({
          redis: options.redis,
          log: options.log,
          computes,
          concurrency: this.concurrency,
          lockMs: this.staleAfterMs,
          ...(options.isPermanent ? { isPermanent: options.isPermanent } : {}),
        });
      }
    }
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

  /**
   * Claim a queued row and start it (idempotent): in-process it runs here; with Redis it is
   * prepared here and handed to the processors.
   */
  dispatch(id: string): void {
    if (this.stopped) return;
    this.schedule(id, false);
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
    if (!this.bull) this.requeueStale(0);
    const n = this.dispatchQueued();
    // With Redis, a running row is stale only once Redis shows no sign of life for it.
    if (this.bull) void this.sweep();
    if (!this.sweepTimer && !this.stopped) {
      const every = this.bull ? Math.min(SWEEP_MS, Math.max(100, this.staleAfterMs / 2)) : SWEEP_MS;
      this.sweepTimer = setInterval(() => void this.sweep(), every);
      this.sweepTimer.unref();
    }
    return n;
  }

  /** With Redis: start consuming results (and computing, as a processor, unless told not to). */
  async start(): Promise<void> {
    await this.bull?.start();
    await this.processor?.start();
  }

  /**
   * Process one queued job in this process (the CLI uses it for the job it just queued), leaving
   * every other job to whichever process runs the queue.
   */
  processJob(id: string): Promise<JobRow> {
    if (this.bull) {
      void this.execute(id, true);
      return this.waitFor(id);
    }
    this.schedule(id, true);
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
    // The processor first: what it is computing finishes and its result is posted (and applied
    // by whichever coordinator consumes results next).
    await this.processor?.stop();
    await this.bull?.stop();
    await Promise.allSettled(this.active.values());
  }

  private async sweep(): Promise<void> {
    if (this.sweeping || this.stopped) return;
    this.sweeping = true;
    try {
      if (this.bull) {
        await this.refreshLiveness();
        this.requeueStale(this.staleAfterMs);
      }
      this.dispatchQueued();
    } catch (err) {
      this.options.log.warn({ err }, 'job sweep failed');
    } finally {
      this.sweeping = false;
    }
  }

  /** Heartbeat the running rows whose attempt shows a sign of life in Redis. */
  private async refreshLiveness(): Promise<void> {
    const { db } = this.options;
    const running = db
      .select({ id: jobs.id, attempts: jobs.attempts })
      .from(jobs)
      .where(eq(jobs.status, 'running'))
      .all();
    for (const r of running) {
      if (this.holding.has(r.id) || this.stopped) continue;
      if (!(await this.bull!.alive(r.id, r.attempts))) continue;
      db.update(jobs)
        .set({ heartbeatAt: new Date() })
        .where(and(eq(jobs.id, r.id), eq(jobs.status, 'running'), eq(jobs.attempts, r.attempts)))
        .run();
    }
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
    for (const row of spent) {
      if (this.holding.has(row.id)) continue;
      this.failForGood(
        row,
        `its process stopped during its last attempt (${row.attempts} of ${row.maxAttempts}); not run again`,
      );
    }
    const stale = db
      .update(jobs)
      .set({ status: 'queued', claimedBy: null, runAfter: null })
      .where(and(abandoned, lt(jobs.attempts, jobs.maxAttempts)))
      .returning({ id: jobs.id, name: jobs.name, attempts: jobs.attempts })
      .all();
    for (const j of stale)
      log.warn(
        { job: j.id, jobName: j.name, attempt: j.attempts },
        're-queued a job whose process stopped',
      );
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

  private schedule(id: string, local: boolean): void {
    if (this.stopped || this.pending.some((p) => p.id === id) || this.active.has(id)) return;
    this.pending.push({ id, local });
    setImmediate(() => this.pump());
  }

  private pump(): void {
    while (!this.stopped && this.active.size < this.concurrency && this.pending.length > 0) {
      const { id, local } = this.pending.shift()!;
      this.track(id, this.execute(id, local));
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

  /** Claim the row and count the attempt in one statement; undefined when it is not claimable. */
  private claim(id: string): JobRow | undefined {
    const { db } = this.options;
    const now = new Date();
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
    if (claimed) return claimed;
    const row = this.get(id);
    if (row?.status === 'queued' && row.attempts >= row.maxAttempts) {
      this.failForGood(
        row,
        `${row.error ? `${row.error}; ` : ''}no attempt left (${row.attempts} of ${row.maxAttempts})`,
      );
      return undefined;
    }
    // A retry timer can fire a moment before the wall clock reaches the row's runAfter (timers
    // run on a monotonic clock): wait out the rest instead of dropping the job.
    if (row?.status === 'queued' && row.runAfter && row.runAfter > now) {
      this.later(id, row.runAfter.getTime() - now.getTime());
    }
    return undefined;
  }

  /**
   * Claim the row and prepare it; then compute and apply it here (in-process, `local`, or a job
   * whose input is on this machine's disk) or hand it to the processors through Redis.
   */
  private async execute(id: string, local: boolean): Promise<void> {
    const { db, log } = this.options;
    const claimed = this.claim(id);
    if (!claimed) return;
    const handler: JobPhases | undefined = phasesOf(this.options.handlers[claimed.name]);
    const attempt = claimed.attempts;
    const jobLog = log.child({ job: id, jobName: claimed.name, attempt });
    let lastWrite = 0;
    let latest: JobProgress | null = null;
    const flushProgress = () => {
      if (latest)
        db.update(jobs)
          .set({ progress: latest })
          .where(and(eq(jobs.id, id), eq(jobs.attempts, attempt)))
          .run();
    };
    this.holding.add(id);
    const heartbeat = setInterval(() => {
      db.update(jobs)
        .set({ heartbeatAt: new Date() })
        .where(and(eq(jobs.id, id), eq(jobs.status, 'running'), eq(jobs.attempts, attempt)))
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
    try {
      if (!handler && !this.bull)
        throw new PermanentJobError(`no processor registered for job ${claimed.name}`);
      const remote = this.bull !== null && !local;
      const prepared = handler?.prepare
        ? await handler.prepare({ ...ctx, row: claimed, remote }, claimed.payload)
        : { input: claimed.payload };
      if ('result' in prepared) {
        flushProgress();
        this.commit(claimed, undefined, (tx) => {
          prepared.write?.(tx);
          return prepared.result;
        });
        jobLog.info('job succeeded (nothing to compute)');
        return;
      }
      if (this.bull && remote) {
        try {
          await this.bull.add({ id, attempt, name: claimed.name, input: prepared.input });
        } catch (err) {
          this.unclaim(claimed, jobLog, err);
          return;
        }
        jobLog.debug('job handed to the processors');
        return;
      }
      if (!handler) throw new PermanentJobError(`no processor registered for job ${claimed.name}`);
      jobLog.info('job started');
      const output = await handler.compute(ctx, prepared.input);
      flushProgress();
      await this.finish(claimed, handler, output, jobLog, undefined);
    } catch (err) {
      if (err instanceof StaleJobResult) {
        jobLog.warn(err.message);
        return;
      }
      this.failAttemptWith(claimed, err, jobLog);
    } finally {
      clearInterval(heartbeat);
      this.holding.delete(id);
      this.settle(id);
      // A finished job may have queued follow-ups (lifecycle/pipeline.ts).
      if (!this.stopped) this.dispatchQueued();
    }
  }

  /**
   * Redis refused the attempt (it is down, say): no processor can have it, so it is given back
   * uncounted (a Redis that is down does not use up a job's attempts) and tried again later. Had
   * the add reached Redis after all, the next claim makes the same attempt number, whose BullMQ id
   * is the one already there.
   */
  private unclaim(row: JobRow, jobLog: Logger, err: unknown): void {
    const delay = this.options.retryDelayMs ?? 1000;
    const back = this.options.db
      .update(jobs)
      .set({
        status: 'queued',
        attempts: sql`${jobs.attempts} - 1`,
        claimedBy: null,
        runAfter: new Date(Date.now() + delay),
      })
      .where(and(eq(jobs.id, row.id), eq(jobs.status, 'running'), eq(jobs.attempts, row.attempts)))
      .returning({ id: jobs.id })
      .get();
    jobLog.warn({ err }, 'could not hand the job to Redis; will try again');
    if (back) this.later(row.id, delay);
  }

  /**
   * Apply an output: the handler's `apply` (or the output as the result), committed with the
   * job's success; a failure to apply is a failed attempt.
   */
  private async finish(
    row: JobRow,
    handler: JobPhases | undefined,
    output: Record<string, unknown>,
    jobLog: Logger,
    processor: string | undefined,
    progress?: JobProgress,
  ): Promise<void> {
    let committed = false;
    const ctx: ApplyContext = {
      jobId: row.id,
      attempt: row.attempts,
      log: jobLog,
      row,
      commit: (fn) => {
        if (committed) throw new Error(`the apply of job ${row.name} committed twice`);
        const result = this.commit(row, processor, fn, progress);
        committed = true;
        return result;
      },
    };
    try {
      if (handler?.apply) await handler.apply(ctx, output);
      else ctx.commit(() => output);
      if (!committed) throw new Error(`the apply of job ${row.name} did not commit`);
      jobLog.info(processor ? { processor } : {}, 'job succeeded');
    } catch (err) {
      if (err instanceof StaleJobResult) {
        jobLog.warn(err.message);
        return;
      }
      if (committed) {
        // Recorded; what failed is work after the commit (it logs its own trouble).
        jobLog.warn({ err }, 'job succeeded; work after its commit failed');
        return;
      }
      this.failAttemptWith(row, err, jobLog);
    }
  }

  /**
   * `fn`'s writes and the job's success in one transaction, only while `row`'s attempt is the
   * current one (else {@link StaleJobResult}, nothing written).
   */
  private commit(
    row: JobRow,
    processor: string | undefined,
    fn: (tx: Tx) => Record<string, unknown>,
    progress?: JobProgress,
  ): Record<string, unknown> {
    return this.options.db.transaction((tx) => {
      const cur = tx.select().from(jobs).where(eq(jobs.id, row.id)).get();
      if (cur?.status !== 'running' || cur.attempts !== row.attempts) {
        throw new StaleJobResult(
          row.id,
          row.attempts,
          cur ? `the job is ${cur.status} at attempt ${cur.attempts}` : 'the job is gone',
        );
      }
      const result = fn(tx);
      tx.update(jobs)
        .set({
          status: 'succeeded',
          result,
          error: null,
          finishedAt: new Date(),
          ...(processor ? { claimedBy: processor } : {}),
          ...(progress ? { progress } : {}),
        })
        .where(eq(jobs.id, row.id))
        .run();
      return result;
    });
  }

  /** A failed attempt: retried after its backoff, or failed for good (only if still current). */
  /** {@link failAttempt} for a thrown error: permanent by its class (isPermanent). */
  private failAttemptWith(row: JobRow, err: unknown, jobLog: Logger): void {
    const permanent =
      err instanceof PermanentJobError || (this.options.isPermanent?.(err) ?? false);
    this.failAttempt(row, err instanceof Error ? err.message : String(err), permanent, jobLog, err);
  }

  private failAttempt(
    row: JobRow,
    message: string,
    permanent: boolean,
    jobLog: Logger,
    err: unknown,
  ): void {
    const { db } = this.options;
    const attempt = row.attempts;
    const current = and(
      eq(jobs.id, row.id),
      eq(jobs.status, 'running'),
      eq(jobs.attempts, attempt),
    );
    if (!permanent && attempt < row.maxAttempts && !this.stopped) {
      const delay = (this.options.retryDelayMs ?? 1000) * 2 ** (attempt - 1);
      const requeued = db
        .update(jobs)
        .set({
          status: 'queued',
          error: message,
          claimedBy: null,
          runAfter: new Date(Date.now() + delay),
        })
        .where(current)
        .returning({ id: jobs.id })
        .get();
      if (!requeued) {
        jobLog.warn('ignored the failure of an attempt that is no longer current');
        return;
      }
      jobLog.warn({ err: err ?? message }, 'job failed; will retry');
      this.later(row.id, delay);
      return;
    }
    const failed = db.transaction((tx) => {
      const updated = tx
        .update(jobs)
        .set({ status: 'failed', error: message, finishedAt: new Date() })
        .where(current)
        .returning()
        .get();
      if (!updated) return undefined;
      recordEvent(tx, EVENTS.jobFailed, {
        runId: row.runId,
        datasetId: row.datasetId,
        data: { jobId: row.id, name: row.name, error: message, attempts: attempt },
      });
      return updated;
    });
    if (!failed) {
      jobLog.warn('ignored the failure of an attempt that is no longer current');
      return;
    }
    jobLog.error({ err: err ?? message }, 'job failed');
    this.options.onFailed?.(failed);
  }

  /** A processor's outcome (Redis mode): applied if it is for the row's current attempt. */
  private async applyResult(msg: JobResultMessage): Promise<void> {
    const { log } = this.options;
    if (
      !msg ||
      typeof msg.id !== 'string' ||
      typeof msg.attempt !== 'number' ||
      typeof msg.ok !== 'boolean' ||
      typeof msg.processor !== 'string'
    ) {
      log.error({ msg }, 'dropped a malformed job result');
      return;
    }
    const row = this.get(msg.id);
    if (row?.status !== 'running' || row.attempts !== msg.attempt) {
      log.warn(
        {
          job: msg.id,
          attempt: msg.attempt,
          processor: msg.processor,
          status: row?.status ?? null,
          currentAttempt: row?.attempts ?? null,
        },
        'ignored a stale job result',
      );
      return;
    }
    const jobLog = log.child({ job: row.id, jobName: row.name, attempt: row.attempts });
    try {
      if (msg.ok) {
        const output =
          msg.output && typeof msg.output === 'object'
            ? msg.output
            : ({} as Record<string, unknown>);
        const progress =
          msg.progress && typeof msg.progress.stage === 'string'
            ? {
                stage: msg.progress.stage,
                done: Number(msg.progress.done),
                total: Number(msg.progress.total),
              }
            : undefined;
        await this.finish(
          row,
          phasesOf(this.options.handlers[row.name]),
          output,
          jobLog,
          msg.processor,
          progress,
        );
      } else {
        this.failAttempt(row, String(msg.error), msg.permanent === true, jobLog, undefined);
      }
    } finally {
      this.settle(row.id);
      if (!this.stopped) this.dispatchQueued();
    }
  }

  /** A processor's progress report: the row's progress, heartbeat and processor. */
  private onProgress(msg: JobProgressMessage): void {
    if (
      typeof msg.attempt !== 'number' ||
      typeof msg.stage !== 'string' ||
      typeof msg.done !== 'number' ||
      typeof msg.total !== 'number' ||
      typeof msg.processor !== 'string'
    )
      return;
    this.options.db
      .update(jobs)
      .set({
        progress: { stage: msg.stage, done: msg.done, total: msg.total },
        heartbeatAt: new Date(),
        claimedBy: msg.processor,
      })
      .where(and(eq(jobs.id, msg.id), eq(jobs.status, 'running'), eq(jobs.attempts, msg.attempt)))
      .run();
  }
}
