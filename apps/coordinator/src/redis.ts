import { Redis } from 'ioredis';

/** Queue names are constants; every process of a deployment must agree on them. */
export const JOBS_QUEUE = 'archipelago-jobs';
/** Job processors' results, read only by coordinators (jobs/bullmq-driver.ts). */
export const JOB_RESULTS_QUEUE = 'archipelago-job-results';
export const SAMPLING_QUEUE = 'archipelago-sampling';

export interface RedisOptions {
  url: string;
  /** Key prefix, to keep deployments (or test runs) sharing a Redis apart (default `archipelago`). */
  prefix?: string;
}

/** A Redis connection as BullMQ wants it (blocking commands never time out). */
export function redisConnection(options: RedisOptions): Redis {
  return new Redis(options.url, { maxRetriesPerRequest: null, lazyConnect: false });
}
