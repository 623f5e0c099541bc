import type { Job, JobStatus } from '@archipelago/protocol';
import { desc, eq } from 'drizzle-orm';
import type { FastifyReply } from 'fastify';
import type { Db } from '../db/database.js';
import { type JobRow, jobs } from '../db/schema/index.js';
import { notFound } from '../errors.js';

export function toJob(row: JobRow): Job {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    attempts: row.attempts,
    progress: row.progress ?? null,
    result: row.result ?? null,
    error: row.error,
    createdAt: row.createdAt.toISOString(),
    startedAt: row.startedAt?.toISOString() ?? null,
    finishedAt: row.finishedAt?.toISOString() ?? null,
  };
}

export function getJob(db: Db, id: string): Job {
  const row = db.select().from(jobs).where(eq(jobs.id, id)).get();
  if (!row) throw notFound('job', id);
  return toJob(row);
}

/** Reply 202 Accepted with the queued job and where to poll it. */
export function acceptJob(reply: FastifyReply, job: JobRow) {
  const link = `/api/v1/jobs/${job.id}`;
  return reply
    .status(202)
    .header('location', link)
    .send({ job: toJob(job), links: { job: link } });
}

/** Jobs, newest first, optionally only those with one status. */
export function listJobs(
  db: Db,
  opts: { status?: JobStatus | undefined; limit?: number | undefined },
): Job[] {
  const query = db.select().from(jobs);
  const filtered = opts.status ? query.where(eq(jobs.status, opts.status)) : query;
  return filtered
    .orderBy(desc(jobs.createdAt))
    .limit(opts.limit ?? 100)
    .all()
    .map(toJob);
}
