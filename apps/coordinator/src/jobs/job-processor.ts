import { hostname } from 'node:os';
import type { JobName } from '@archipelago/protocol';
import { type Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { PermanentJobError } from '../errors.js';
import { JOB_RESULTS_QUEUE, JOBS_QUEUE, type RedisOptions, redisConnection } from '../redis.js';
import { bullJobId } from './bullmq-driver.js';
import type {
  JobCompute,
  JobContext,
  JobMessage,
  JobProgressMessage,
  JobResultMessage,
} from './phases.js';

export interface JobProcessorOptions {
  redis: RedisOptions;
  log: Logger;
  /** The compute phase of each job name this process runs. */
  computes: Partial<Record<JobName, JobCompute>>;
  concurrency?: number;
  /**
   * BullMQ lock of a job being computed (renewed at half of it): a processor that dies loses it
   * this long after its last renewal, and the coordinator re-queues the job (default 30 s).
   */
  lockMs?: number;
  /** Errors that retrying cannot fix (reported as permanent). */
  isPermanent?: (err: unknown) => boolean;
}

const PROGRESS_EVERY_MS = 250;

/**
 * A job processor: takes prepared attempts from the jobs queue, runs their compute (object store
 * only, no database) and posts each outcome on the results queue, where the coordinator applies
 * it. Runs in `coordinator jobs` processes on any machine with Redis and the object store, and in
 * a coordinator with `localJobs` (it is then just one more processor).
 */
export class JobProcessor {
  /** Who computed a result (the job row's `claimedBy` once applied). */
  readonly owner = `${hostname()}:${process.pid}`;
  private readonly connections: Redis[] = [];
  private readonly results: Queue;
  private worker: Worker | null = null;

  constructor(private readonly options: JobProcessorOptions) {
    this.results = new Queue(JOB_RESULTS_QUEUE, {
      connection: this.connection(),
      prefix: options.redis.prefix ?? 'archipelago',
    });
  }

  async start(): Promise<void> {
    if (this.worker) return;
    const lockMs = this.options.lockMs ?? 30_000;
    this.worker = new Worker(JOBS_QUEUE, (job) => this.process(job), {
      connection: this.connection(),
      prefix: this.options.redis.prefix ?? 'archipelago',
      concurrency: this.options.concurrency ?? 1,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      // A job whose processor died is not run again under the same attempt: BullMQ fails it and
      // the coordinator, seeing no sign of life, re-queues the row as a new, counted attempt.
      maxStalledCount: 0,
    });
    this.worker.on('error', (err) => this.options.log.warn({ err }, 'job worker error'));
    await this.worker.waitUntilReady();
  }

  /** Stop taking jobs; running ones finish (and post their results) first. */
  async stop(): Promise<void> {
    await this.worker?.close();
    await this.results.close();
    for (const c of this.connections.splice(0)) c.disconnect();
  }

  private connection(): Redis {
    const c = redisConnection(this.options.redis);
    c.on('error', (err) => this.options.log.warn({ err }, 'redis connection error'));
    this.connections.push(c);
    return c;
  }

  private async process(job: Job): Promise<void> {
    const { log } = this.options;
    const msg = job.data as Partial<JobMessage>;
    if (
      typeof msg?.id !== 'string' ||
      typeof msg.attempt !== 'number' ||
      typeof msg.name !== 'string' ||
      !msg.input ||
      typeof msg.input !== 'object'
    ) {
      log.error(
        { bullJob: job.id },
        'dropped a malformed job message (no id, attempt, name, input)',
      );
      return;
    }
    const { id, attempt, name } = msg;
    const jobLog = log.child({ job: id, jobName: name, attempt });
    let last = 0;
    let pending: JobProgressMessage | null = null;
    let latest: { stage: string; done: number; total: number } | undefined;
    const send = () => {
      if (!pending) return;
      const p = pending;
      pending = null;
      last = Date.now();
      job.updateProgress(p as unknown as object).catch((err) => jobLog.warn({ err }, 'progress'));
    };
    const ctx: JobContext = {
      jobId: id,
      attempt,
      log: jobLog,
      progress: (stage, done, total) => {
        latest = { stage, done, total };
        pending = { id, attempt, processor: this.owner, stage, done, total };
        if (Date.now() - last > PROGRESS_EVERY_MS || done >= total) send();
      },
    };
    const base = { id, attempt, name, processor: this.owner };
    let result: JobResultMessage;
    jobLog.info('job started');
    // At once: the row names this processor (and is heartbeated) before the first report.
    pending = { id, attempt, processor: this.owner, stage: 'started', done: 0, total: 1 };
    send();
    try {
      const compute = this.options.computes[name as JobName];
      if (!compute) throw new PermanentJobError(`no processor registered for job ${name}`);
      const output = await compute(ctx, msg.input);
      send();
      result = { ...base, ok: true, output };
      jobLog.info('job succeeded');
    } catch (err) {
      const e = err as Error & { code?: unknown };
      const permanent =
        err instanceof PermanentJobError || (this.options.isPermanent?.(err) ?? false);
      result = {
        ...base,
        ok: false,
        error: e instanceof Error ? e.message : String(err),
        ...(typeof e?.code === 'string' ? { code: e.code } : {}),
        permanent,
      };
      jobLog.warn({ err, permanent }, 'job failed');
    }
    if (latest) result.progress = latest;
    await this.results.add(name, result, {
      jobId: bullJobId(id, attempt),
      removeOnComplete: true,
      removeOnFail: true,
      attempts: 1,
    });
  }
}
