import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { JOBS_QUEUE, type RedisOptions, redisConnection } from '../redis.js';

interface DriverHooks {
  /** Take jobs in this process. */
  process: boolean;
  concurrency: number;
  /** Claim and run the job row `id` (a no-op when another process claimed it). */
  run(id: string): Promise<void>;
}

/**
 * Carries job ids through a BullMQ queue. The payload, attempts and result live in SQLite; a
 * BullMQ job is only "look at row X", with the attempt number in its id so a retry is a new
 * BullMQ job and a duplicate add is ignored.
 */
export class BullmqDriver {
  private readonly connection: Redis;
  private readonly queue: Queue;
  private worker: Worker | null = null;

  constructor(
    private readonly options: RedisOptions,
    private readonly log: Logger,
    private readonly hooks: DriverHooks,
  ) {
    this.connection = redisConnection(options);
    this.connection.on('error', (err) => log.warn({ err }, 'redis connection error'));
    this.queue = new Queue(JOBS_QUEUE, {
      connection: this.connection,
      prefix: options.prefix ?? 'archipelago',
    });
  }

  add(name: string, id: string, attempts: number, delayMs: number): void {
    this.queue
      .add(
        name,
        { id },
        {
          jobId: `${id}-${attempts}`,
          delay: delayMs,
          removeOnComplete: true,
          removeOnFail: true,
          attempts: 1,
        },
      )
      .catch((err) => this.log.error({ err, job: id }, 'could not add the job to Redis'));
  }

  async start(): Promise<void> {
    if (!this.hooks.process || this.worker) return;
    this.worker = new Worker(
      JOBS_QUEUE,
      async (job) => {
        await this.hooks.run(String((job.data as { id: string }).id));
      },
      {
        connection: redisConnection(this.options),
        prefix: this.options.prefix ?? 'archipelago',
        concurrency: this.hooks.concurrency,
        // Long jobs (router training) block the event loop between awaits; SQLite heartbeats,
        // not BullMQ's lock, decide whether a job is still alive.
        lockDuration: 120_000,
        maxStalledCount: 0,
      },
    );
    this.worker.on('error', (err) => this.log.warn({ err }, 'job worker error'));
    await this.worker.waitUntilReady();
  }

  async stop(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
    this.connection.disconnect();
  }
}
