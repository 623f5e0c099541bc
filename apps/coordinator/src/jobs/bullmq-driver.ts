import { Queue, QueueEvents, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { JOB_RESULTS_QUEUE, JOBS_QUEUE, type RedisOptions, redisConnection } from '../redis.js';
import type { JobMessage, JobProgressMessage, JobResultMessage } from './phases.js';

interface DriverHooks {
  /** Apply a processor's result (the coordinator's half; idempotent). */
  applyResult(msg: JobResultMessage): Promise<void>;
  /** A processor's progress report. */
  progress(msg: JobProgressMessage): void;
}

/** BullMQ's id of attempt `attempt` of job row `id`: a retry is a new BullMQ job, a duplicate add a no-op. */
export const bullJobId = (id: string, attempt: number) => `${id}-${attempt}`;

/**
 * The coordinator's side of the Redis queues. It adds a BullMQ job per claimed attempt, carrying
 * the prepared input, to the jobs queue that job processors (job-processor.ts) take from; it
 * consumes the results queue, which only coordinators read (a result waits there through a
 * coordinator restart), and listens to progress events (live only: a lost one costs nothing).
 */
export class BullmqDriver {
  private readonly connection: Redis;
  private readonly queue: Queue;
  private readonly results: Queue;
  private readonly prefix: string;
  private resultWorker: Worker | null = null;
  private events: QueueEvents | null = null;
  private readonly extra: Redis[] = [];

  constructor(
    private readonly options: RedisOptions,
    private readonly log: Logger,
    private readonly hooks: DriverHooks,
  ) {
    this.prefix = options.prefix ?? 'archipelago';
    this.connection = redisConnection(options);
    this.connection.on('error', (err) => log.warn({ err }, 'redis connection error'));
    this.queue = new Queue(JOBS_QUEUE, { connection: this.connection, prefix: this.prefix });
    this.results = new Queue(JOB_RESULTS_QUEUE, {
      connection: this.connection,
      prefix: this.prefix,
    });
  }

  /** Hand an attempt to the processors. */
  async add(msg: JobMessage): Promise<void> {
    await this.queue.add(msg.name, msg, {
      jobId: bullJobId(msg.id, msg.attempt),
      removeOnComplete: true,
      removeOnFail: true,
      attempts: 1,
    });
  }

  /**
   * Whether attempt `attempt` of job `id` shows a sign of life in Redis: waiting for a processor,
   * held by one whose lock is fresh, or finished with its result waiting to be applied. A processor
   * that died leaves its job active with an expired lock (or failed as stalled): no sign of life.
   */
  async alive(id: string, attempt: number): Promise<boolean> {
    const jobId = bullJobId(id, attempt);
    // The job first, then its result: a processor posts the result before its job completes.
    const state = await this.queue.getJobState(jobId);
    if (state === 'active') {
      const lock = await this.connection.exists(`${this.prefix}:${JOBS_QUEUE}:${jobId}:lock`);
      if (lock === 1) return true;
    } else if (
      state === 'waiting' ||
      state === 'delayed' ||
      state === 'prioritized' ||
      state === 'waiting-children'
    ) {
      return true;
    }
    return (await this.results.getJobState(jobId)) !== 'unknown';
  }

  /** Start consuming results and progress events. */
  async start(): Promise<void> {
    if (this.resultWorker) return;
    this.resultWorker = new Worker(
      JOB_RESULTS_QUEUE,
      async (job) => {
        await this.hooks.applyResult(job.data as JobResultMessage);
      },
      {
        connection: this.own(),
        prefix: this.prefix,
        concurrency: 1,
        // A coordinator that dies while applying leaves the result active; the next one's
        // stalled check hands it back, and applying is idempotent.
        maxStalledCount: 5,
      },
    );
    this.resultWorker.on('error', (err) => this.log.warn({ err }, 'job result worker error'));
    this.events = new QueueEvents(JOBS_QUEUE, {
      connection: this.own(),
      prefix: this.prefix,
    });
    this.events.on('progress', ({ data }) => {
      if (data && typeof data === 'object' && typeof (data as JobProgressMessage).id === 'string')
        this.hooks.progress(data as JobProgressMessage);
    });
    this.events.on('error', (err) => this.log.warn({ err }, 'job events error'));
    await Promise.all([this.resultWorker.waitUntilReady(), this.events.waitUntilReady()]);
  }

  async stop(): Promise<void> {
    await this.resultWorker?.close();
    await this.events?.close();
    await this.queue.close();
    await this.results.close();
    this.connection.disconnect();
    for (const c of this.extra.splice(0)) c.disconnect();
  }

  /** A connection of its own for a blocking reader (closed by stop). */
  private own(): Redis {
    const c = redisConnection(this.options);
    c.on('error', (err) => this.log.warn({ err }, 'redis connection error'));
    this.extra.push(c);
    return c;
  }
}
